package face

import (
	"time"

	"gocv.io/x/gocv"
)

// The match phase: good frames of the tracked face are embedded and
// compared with the chip photo, and the matched face's passive liveness is
// measured, before the smile phase may start.

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
	pose, err := m.HeadPose(img, det.Raw)
	if err != nil {
		return false, err
	}
	if code := g.pose(pose); code != "" {
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
	tpl, err := m.Embed(img, l)
	if err != nil {
		return false, err
	}
	sim := Cosine(r.ref, tpl)
	tpl.Wipe()
	r.bestSim = max(r.bestSim, sim)
	r.sims = append(r.sims, sim)
	r.ratios = append(r.ratios, l.MouthRatio())
	if sim >= cfg.MatchThreshold {
		r.matchSims = append(r.matchSims, sim)
		if len(r.live) < cfg.LivenessFrames {
			p, err := m.Liveness(img, det.Raw)
			if err != nil {
				return false, err
			}
			r.live = append(r.live, p)
		}
	}
	res := &r.d.Result
	if len(r.matchSims) < cfg.MatchFrames || len(r.live) < cfg.LivenessFrames {
		if len(r.sims) >= cfg.MismatchFrames && len(r.matchSims) < cfg.MatchFrames {
			res.Reason = ReasonMismatch
			res.Similarity = median(r.sims)
			return true, nil
		}
		return false, nil
	}
	// Match and liveness decided on this track.
	res.Matched = true
	res.Similarity = median(r.matchSims)
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

// startSmile enters the smile phase. The neutral baseline is this
// person's mouth ratio over the last good frames up to the match.
func (r *run) startSmile(at time.Time) {
	b := r.ratios[max(0, len(r.ratios)-r.cfg.BaselineFrames):]
	r.baseline = median(b)
	r.matchBaseline = r.baseline
	r.phase, r.phaseStart = phaseSmile, at
	r.consec = 0
	r.epoch++
	r.emit("smile", GuideSmile)
}

// rematch leaves the smile phase for the match phase: the face in the
// track is no longer known to be the matched, live person, so everything
// learnt about it is forgotten and it must match again.
func (r *run) rematch(at time.Time) {
	r.sims, r.matchSims, r.live, r.ratios = nil, nil, nil, nil
	r.consec = 0
	r.epoch++ // an expression result in flight no longer counts
	r.phase, r.phaseStart = phaseMatch, at
	res := &r.d.Result
	res.Matched, res.Live, res.Similarity, res.Liveness = false, false, 0, 0
	r.d.Rematches++
	r.emit("match", GuideHoldStill)
}

// embedProbe embeds the face with landmarks l in a camera frame, as it is
// compared with the chip photo.
func (r *run) embedProbe(img gocv.Mat, l *Landmarks) (*Template, error) {
	return r.v.m.Embed(img, l)
}
