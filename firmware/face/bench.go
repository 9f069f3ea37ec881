package face

import (
	"bufio"
	"context"
	"fmt"
	"image"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gocv.io/x/gocv"
	"kiosk/drivers/camera"
)

// BenchResult is what `kioskctl face bench` reports.
type BenchResult struct {
	Frames int `json:"frames"` // distinct frames used
	Width  int `json:"width"`
	Height int `json:"height"`
	// MedianMS per stage: detect, landmarks_align, embed, liveness,
	// expression, pose, eyes, pipeline (detect + landmarks + align +
	// embed on every frame), and match_frame and match_frame_no_liveness:
	// a match-phase frame as the Verifier spends it, the detector on 1
	// frame in DetectEvery and the others followed from the last
	// landmarks (MatchPhaseFrames).
	MedianMS map[string]float64 `json:"median_ms"`
	// SustainedFPS is the Verifier's frame rate in the smile phase, with
	// the expression model running beside the frame loop; ExpressionHz is
	// how often that model ran.
	SustainedFPS float64 `json:"sustained_fps"`
	ExpressionHz float64 `json:"expression_hz"`
	// MatchMS is the Verifier's wall time from receiving the first good
	// frame to the match and liveness decision, frames arriving as fast as
	// it takes them.
	MatchMS float64 `json:"match_ms"`
	// RSS in MiB: after the models were loaded (before the bench frames)
	// and the process's peak.
	ModelsRSSMiB float64 `json:"models_rss_mib"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
}

// ProcStatusMiB reads a field such as "VmHWM" or "VmRSS" from
// /proc/self/status, in MiB (0 when unavailable).
func ProcStatusMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0
		}
		return kb / 1024
	}
	return 0
}

// LoadBenchFrames reads up to n frames of a video (every step-th) and
// resizes them to w×h; the caller closes them.
func LoadBenchFrames(ctx context.Context, path string, n, step, w, h int) ([]gocv.Mat, error) {
	src, err := camera.NewSource(camera.Spec{Kind: camera.KindFile, Path: path})
	if err != nil {
		return nil, err
	}
	if err := src.Open(ctx); err != nil {
		return nil, err
	}
	defer src.Close()
	var out []gocv.Mat
	buf := gocv.NewMat()
	defer buf.Close()
	for i := 0; len(out) < n; i++ {
		if err := src.Read(&buf); err != nil {
			break
		}
		if i%max(step, 1) != 0 {
			continue
		}
		m := gocv.NewMat()
		gocv.Resize(buf, &m, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench frames: no frame in %s", path)
	}
	return out, nil
}

// memFrames serves frames from memory in a loop, stamped with the wall
// clock like a live camera, as fast as they are asked for.
type memFrames struct {
	frames []gocv.Mat
	seq    uint64
}

func (s *memFrames) Next(ctx context.Context, _ uint64) (*camera.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f := s.frames[int(s.seq)%len(s.frames)]
	s.seq++
	return &camera.Frame{Seq: s.seq, Time: time.Now(), Mat: f.Clone()}, nil
}

// medianTime runs f n times and returns the median in milliseconds.
func medianTime(n int, f func() error) (float64, error) {
	ts := make([]float64, 0, n)
	for range n {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ts = append(ts, float64(time.Since(t0).Microseconds())/1000)
	}
	slices.Sort(ts)
	return ts[len(ts)/2], nil
}

// MatchPhaseTimes are the match-phase frames of MatchPhaseFrames.
type MatchPhaseTimes struct {
	Took     []float64 // each frame's time in the Verifier, ms
	NoLive   []float64 // the same without the liveness model, ms
	Detected int       // frames the detector ran on (the others were followed)
}

// MatchPhaseFrames runs sessions face steps of a Verifier with cfg over
// src against reference, each ending right after the match decision, and
// times every frame the Verifier processed in the match phase, inside its
// own frame path. Each step must match.
func MatchPhaseFrames(ctx context.Context, m *Models, src FrameSource, reference []byte, cfg Config, sessions int) (MatchPhaseTimes, error) {
	var t MatchPhaseTimes
	cfg.SmileTimeout = time.Nanosecond // end right after the match
	for range sessions {
		v, err := NewVerifier(m, src, cfg)
		if err != nil {
			return t, err
		}
		v.trace = func(f frameTrace) {
			if f.phase != phaseMatch {
				return
			}
			t.Took = append(t.Took, ms(f.took))
			t.NoLive = append(t.NoLive, ms(f.took-f.liveness))
			if !f.followed {
				t.Detected++
			}
		}
		d, err := v.VerifyDecision(ctx, reference, nil)
		if err != nil {
			return t, err
		}
		if !d.Result.Matched {
			return t, fmt.Errorf("match-phase frames: the reference did not match the frames (%s)", d.Result.Reason)
		}
	}
	return t, nil
}

// RunBench measures each stage on frames (BGR, all holding one person's
// face, whose photo reference is), then runs a Verifier over them for
// sustain (smile phase, consent made unreachable) to measure the sustained
// frame rate. m must hold AllModels.
func RunBench(ctx context.Context, m *Models, frames []gocv.Mat, reference []byte, sustain time.Duration) (BenchResult, error) {
	res := BenchResult{Frames: len(frames), MedianMS: map[string]float64{}}
	if len(frames) == 0 {
		return res, fmt.Errorf("bench: no frames")
	}
	res.Width, res.Height = frames[0].Cols(), frames[0].Rows()
	type faceOf struct {
		det Detection
		l   *Landmarks
	}
	var faces []faceOf
	var imgs []gocv.Mat
	for _, f := range frames {
		a, err := m.Analyze(f)
		if err != nil {
			continue
		}
		a.Template.Wipe()
		faces = append(faces, faceOf{a.Faces[a.Primary], a.Landmarks})
		imgs = append(imgs, f)
	}
	if len(faces) == 0 {
		return res, fmt.Errorf("bench: no face in the frames: %w", ErrNoFace)
	}
	const reps = 3
	n := reps * len(imgs)
	i := 0
	next := func() (gocv.Mat, faceOf) { k := i % len(imgs); i++; return imgs[k], faces[k] }
	aligned := gocv.NewMat()
	defer aligned.Close()
	stages := []struct {
		name string
		f    func() error
	}{
		{"detect", func() error { img, _ := next(); _, err := m.Detect(img); return err }},
		{"landmarks_align", func() error {
			img, fc := next()
			l, err := m.Landmarks(img, fc.det.Box)
			if err != nil {
				return err
			}
			return Align(img, l.Five(), &aligned)
		}},
		{"embed", func() error {
			img, fc := next()
			if err := Align(img, fc.l.Five(), &aligned); err != nil {
				return err
			}
			t, err := m.EmbedAligned(aligned)
			t.Wipe()
			return err
		}},
		{"liveness", func() error { img, fc := next(); _, err := m.Liveness(img, fc.det.Raw); return err }},
		{"expression", func() error { img, fc := next(); _, err := m.Expression(img, fc.det.Raw); return err }},
		{"pose", func() error { _, fc := next(); _ = fc.l.LandmarkPose(); return nil }},
		{"eyes", func() error {
			img, fc := next()
			grey := gocv.NewMat()
			defer grey.Close()
			gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
			_, _, err := m.EyesOpen(grey, image.Point{}, fc.l)
			return err
		}},
		{"pipeline", func() error {
			img, _ := next()
			a, err := m.Analyze(img)
			if err == nil {
				a.Template.Wipe()
			}
			return err
		}},
	}
	for _, s := range stages {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		ms, err := medianTime(n, s.f)
		if err != nil {
			return res, fmt.Errorf("bench %s: %w", s.name, err)
		}
		res.MedianMS[s.name] = ms
	}
	// Match-phase frames through the Verifier, as the kiosk spends them.
	mt, err := MatchPhaseFrames(ctx, m, &memFrames{frames: imgs}, reference, DefaultConfig(), 12)
	if err != nil {
		return res, err
	}
	res.MedianMS["match_frame"], res.MedianMS["match_frame_no_liveness"] = median(mt.Took), median(mt.NoLive)
	// The whole Verifier, frames as fast as it takes them: time to match,
	// then the smile phase with a consent threshold nobody can reach.
	cfg := DefaultConfig()
	cfg.SmileThreshold = 2
	cfg.SmileTimeout = sustain
	v, err := NewVerifier(m, &memFrames{frames: imgs}, cfg)
	if err != nil {
		return res, err
	}
	d, err := v.VerifyDecision(ctx, reference, nil)
	if err != nil {
		return res, err
	}
	if !d.Result.Matched || d.MatchedAt.IsZero() {
		return res, fmt.Errorf("bench: the reference did not match the frames (%s)", d.Result.Reason)
	}
	res.MatchMS = d.MatchLatencyMS
	if smile := d.Finished.Sub(d.MatchedAt).Seconds(); smile > 0 {
		res.SustainedFPS = float64(d.Quality.Frames-d.FramesToMatch) / smile
		res.ExpressionHz = float64(d.Smile.Evaluations) / smile
	}
	res.PeakRSSMiB = ProcStatusMiB("VmHWM")
	return res, nil
}
