package face

import (
	"slices"
)

// The consent phase: the matched person smiles to confirm. Every frame
// the smile decision uses is first checked to still show the matched,
// live person (embedding against the chip photo, passive liveness), and
// no second face of comparable size may be in view: otherwise a photo or
// a screen could pass the match and then be lowered to reveal someone
// else's smile, which would inherit the track and consent.

// The smile-phase baseline may fall to a steadier, lower mouth ratio: a
// window counts as steady when its spread is within baselineSteady of its
// median, and the baseline never falls more than baselineMaxDrop below
// the one taken at the match (a smile widens the mouth by about 10-25 %).
const (
	baselineSteady  = 0.06
	baselineMaxDrop = 0.25
)

// secondFace reports whether a face other than the tracked one, with at
// least ratio times its box area, is in view.
func secondFace(faces []Detection, idx int, ratio float64) bool {
	a := faces[idx].Box.Dx() * faces[idx].Box.Dy()
	for i, f := range faces {
		if i != idx && float64(f.Box.Dx()*f.Box.Dy()) >= ratio*float64(a) {
			return true
		}
	}
	return false
}

// smileFrame handles a frame of the matched track in the smile phase that
// passed the geometry and pixel gates (a smile may narrow the eyes, so the
// eye gate does not apply). It checks identity and liveness, then hands
// the frame to the expression worker when the worker is free and the rate
// allows.
func (r *run) smileFrame(fv *view) (bool, error) {
	cfg, m, s := r.cfg, r.v.m, &r.d.Smile
	f, l := fv.f, fv.l
	if secondFace(fv.faces, fv.idx, cfg.SecondFaceArea) {
		// Whose smile it is would be ambiguous: the count starts again
		// once the other face has left.
		s.SecondFace++
		r.consec = 0
		r.epoch++
		return r.reject(fv, GuideOnePerson)
	}
	tpl, err := r.embedProbe(f.Mat, l)
	if err != nil {
		return false, err
	}
	sim := Cosine(r.ref.Template, tpl)
	tpl.Wipe()
	s.IdentityChecks++
	if sim < cfg.MatchThreshold {
		s.IdentityFailures++
		fv.place(false)
		r.rematch(f.Time)
		return false, nil
	}
	p, err := m.Liveness(f.Mat, fv.det.Raw)
	if err != nil {
		return false, err
	}
	if p < cfg.LivenessThreshold {
		s.LivenessFailures++
		fv.place(false)
		r.rematch(f.Time)
		return false, nil
	}
	fv.place(true)
	r.emit("smile", GuideSmile)
	r.ratios = append(r.ratios, l.MouthRatio())
	if n := cfg.BaselineFrames; len(r.ratios) >= n {
		// Only a face at rest lowers the baseline (a talking mouth is not
		// steady), and never by more than a smile widens one: otherwise
		// pursed lips would make an ordinary mouth count as a smile.
		w := r.ratios[len(r.ratios)-n:]
		if med := median(w); med > 0 && (slices.Max(w)-slices.Min(w))/med <= baselineSteady {
			r.baseline = max(min(r.baseline, med), r.matchBaseline*(1-baselineMaxDrop))
		}
		if len(r.ratios) > 4*n {
			r.ratios = slices.Delete(r.ratios, 0, len(r.ratios)-n) // keep the window, not the history
		}
	}
	if r.inflight || (!r.lastSubmit.IsZero() && f.Time.Sub(r.lastSubmit).Seconds() < 1/cfg.ExpressionHz) {
		return false, nil
	}
	blob, err := ExpressionBlob(f.Mat, fv.det.Raw)
	if err != nil {
		return false, err
	}
	r.inflight, r.lastSubmit = true, f.Time
	r.jobs <- exprJob{blob: blob, ratio: l.MouthRatio(), at: f.Time, epoch: r.epoch}
	if cfg.SyncExpression || s.Evaluations == 0 {
		// The first evaluation waits for its result, so that a short clip
		// (or a quick smile) is not cut off before any verdict.
		if err := r.collect(true); err != nil {
			return false, err
		}
	}
	if r.d.Result.Consent {
		r.capture(f.Mat, "consent")
		return true, nil
	}
	return false, nil
}

// collect takes the expression worker's result, if any (waiting for it
// when wait is set), and applies the consent rule.
func (r *run) collect(wait bool) error {
	if !r.inflight {
		return nil
	}
	var res exprResult
	if wait {
		res = <-r.results
	} else {
		select {
		case res = <-r.results:
		default:
			return nil
		}
	}
	r.inflight = false
	if res.err != nil {
		return res.err
	}
	if res.epoch != r.epoch || r.phase != phaseSmile {
		// From a face since lost, a frame before an identity, liveness
		// or second-face failure, or the previous smile phase.
		return nil
	}
	s := &r.d.Smile
	s.Evaluations++
	s.MaxHappy = max(s.MaxHappy, res.happy)
	rise := 0.0
	if r.baseline > 0 {
		rise = res.ratio/r.baseline - 1
	}
	s.MaxRise = max(s.MaxRise, rise)
	if res.happy >= r.cfg.SmileThreshold && rise >= r.cfg.MouthRise {
		r.consec++
	} else {
		r.consec = 0
	}
	s.Consecutive = max(s.Consecutive, r.consec)
	if r.consec >= r.cfg.SmileFrames {
		// The smile is met; it consents only on a face that has moved as
		// no flat picture can (motion.go). Until then the step waits.
		r.d.Motion, r.d.MotionFrames = r.motion.value(), r.motion.frames()
		if r.d.Motion < r.cfg.LivenessMotion {
			r.stillSmile = true
			return nil
		}
		r.d.Result.Consent = true
		r.d.Result.ConsentAt = res.at
		r.d.ConsentMS = ms(res.at.Sub(r.phaseStart))
		r.d.Result.Reason = ""
	}
	return nil
}
