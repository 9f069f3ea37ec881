package face

import (
	"time"

	"gocv.io/x/gocv"
)

// The match phase: good frames of the tracked face are embedded, their
// unit embeddings averaged into one live template, and that template is
// compared once with the chip photo; the face's passive liveness is
// measured on the same frames. Averaging several frames cancels much of
// the noise of any one (blur, expression, lighting) where a vote over
// frame-by-frame decisions only counts it.

// matchFrame handles a frame of the match phase that passed the geometry
// and pixel gates: the eye and pose gates, then matching and liveness.
func (r *run) matchFrame(fv *view) (bool, error) {
	cfg, m := r.cfg, r.v.m
	f, det, l, img := fv.f, fv.det, fv.l, fv.f.Mat
	g := cfg.Gates
	le, re, err := m.EyesOpen(fv.grey, fv.box.Min, l)
	if err != nil {
		return false, err
	}
	if code := g.eyes(le, re, l.EyeAspect()); code != "" {
		return r.reject(fv, code)
	}
	if code := g.pose(l.LandmarkPose()); code != "" {
		return r.reject(fv, code)
	}
	// A good frame.
	fv.place(true)
	r.d.Quality.Good++
	if r.d.GoodAt.IsZero() {
		r.d.GoodAt, r.goodWall = f.Time, r.recv
	}
	r.interEye = append(r.interEye, l.InterEye())
	r.sharp = append(r.sharp, fv.stats.Sharpness)
	r.mean = append(r.mean, fv.stats.Mean)
	r.emit("match", GuideHoldStill)
	tpl, err := r.embedProbe(img, l)
	if err != nil {
		return false, err
	}
	sim := Cosine(r.ref.Template, tpl)
	r.bestSim = max(r.bestSim, sim)
	r.sims = append(r.sims, sim)
	r.live = append(r.live, 0)
	r.fused.add(tpl)
	tpl.Wipe()
	t0 := time.Now()
	p, err := m.Liveness(img, det.Raw)
	r.liveTook += time.Since(t0)
	if err != nil {
		return false, err
	}
	r.live[len(r.live)-1] = p
	if sim >= cfg.MatchThreshold && p >= cfg.LivenessThreshold {
		// This face is the holder's and live on its own: the next frame
		// may find it from these landmarks (follow.go). Any other outcome
		// makes the next frame run the detector.
		r.follow.keep(l)
	}
	r.ratios = append(r.ratios, l.MouthRatio())
	if r.fused.n < cfg.MatchFrames {
		return false, nil
	}
	// Decide once, on the live template of MatchFrames good frames.
	live, err := r.fused.template()
	r.fused.reset()
	if err != nil {
		return false, err
	}
	fsim := Cosine(r.ref.Template, live)
	live.Wipe()
	res := &r.d.Result
	r.d.FusedSimilarity = fsim
	r.d.FusedFrames = len(r.sims)
	// The record keeps the median over every good frame, so the policy's
	// re-check of it is a check of its own, not of the frames that passed.
	res.Similarity = median(r.sims)
	if fsim < cfg.MatchThreshold {
		res.Reason = ReasonMismatch
		return true, nil
	}
	res.Matched = true
	res.Liveness = median(r.live)
	res.Live = res.Liveness >= cfg.LivenessThreshold
	r.d.MatchedAt = f.Time
	r.d.FramesToMatch = r.d.Quality.Frames
	r.d.MatchLatencyMS = ms(time.Since(r.goodWall))
	r.d.MatchMS = ms(f.Time.Sub(r.d.GoodAt))
	r.capture(img, "match")
	if !res.Live {
		res.Reason = ReasonNotLive
		return true, nil
	}
	r.startSmile(f.Time)
	return false, nil
}

// fusion accumulates unit embeddings into one live template.
type fusion struct {
	sum [Dim]float64
	n   int
}

func (u *fusion) add(t *Template) {
	for i, x := range t.v {
		u.sum[i] += float64(x)
	}
	u.n++
}

// template returns the normalised mean of the embeddings added.
func (u *fusion) template() (*Template, error) {
	v := make([]float32, Dim)
	for i, x := range u.sum {
		v[i] = float32(x)
	}
	defer clear(v)
	return NewTemplate(v)
}

func (u *fusion) reset() { *u = fusion{} }

// startSmile enters the smile phase. The neutral baseline is this
// person's mouth ratio over the last good frames up to the match.
func (r *run) startSmile(at time.Time) {
	b := r.ratios[max(0, len(r.ratios)-r.cfg.BaselineFrames):]
	r.baseline = median(b)
	r.matchBaseline = r.baseline
	r.phase, r.phaseStart = phaseSmile, at
	r.follow.reset()
	r.consec = 0
	r.epoch++
	r.emit("smile", GuideSmile)
}

// rematch leaves the smile phase for the match phase: the face in the
// track is no longer known to be the matched, live person, so everything
// learnt about it is forgotten and it must match again.
func (r *run) rematch(at time.Time) {
	r.sims, r.live, r.ratios = nil, nil, nil
	// A timeout from here reports what this face reached, not the holder's
	// frames before it.
	r.bestSim = 0
	r.fused.reset()
	r.motion.reset()
	r.follow.reset()
	r.consec = 0
	r.epoch++ // an expression result in flight no longer counts
	r.phase, r.phaseStart = phaseMatch, at
	res := &r.d.Result
	res.Matched, res.Live, res.Similarity, res.Liveness = false, false, 0, 0
	r.d.Rematches++
	r.emit("match", GuideHoldStill)
}

// embedProbe embeds the face with landmarks l in a camera frame, as it is
// compared with the chip photo (grey when the chip photo is grey).
func (r *run) embedProbe(img gocv.Mat, l *Landmarks) (*Template, error) {
	return r.v.m.EmbedProbe(img, l, r.ref)
}
