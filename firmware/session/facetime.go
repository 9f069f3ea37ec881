package session

import (
	"context"
	"time"
)

// The face step's time (WCAG 2.1 SC 2.2.1 "Timing adjustable", EN 301 549
// §11.2.2.2.1), like the card and code steps' (moretime.go): before it
// runs out the shopper is offered more time, up to Policy.TimeExtensions
// times in the step. Its end is the earlier of two clocks: the session's
// policy.face_timeout and the face verifier's own phase limits (match,
// then smile, on the camera's clock), which the verifier reports in
// FaceProgress.Until. Taking more time restarts the session's clock and
// asks the verifier to give its current phase its whole time again; what
// the verifier decides on does not change (the match is decided on its
// frames as before, every smile frame is checked again against the chip
// photo and for liveness, a lost face must match again), and the offer
// is counted in and bound to this session: a new session starts with no
// extension.

// FaceExtender is a Face whose running step can be given more time. more
// receives one value each time the shopper takes the offer; the verifier
// gives the phase it is in its whole time again from its next frame and
// reports the new end in FaceProgress.Until.
type FaceExtender interface {
	VerifyExtendable(ctx context.Context, reference []byte, progress func(FaceProgress), more <-chan struct{}) (FaceResult, error)
}

// faceLead is how long before the face step's end the offer comes:
// Policy.MoreTimeWarning, or half of a shorter span (a 10 s smile phase
// is offered more time 5 s in, not at its start).
func faceLead(warning, span time.Duration) time.Duration {
	return max(0, min(warning, span/2))
}

// runFace runs the face step (match, liveness, the smile) under its time,
// with offers of more time; card removal or a cancel aborts it.
func (s *session) runFace(ctx context.Context, ref []byte) (FaceResult, error) {
	m, p := s.m, s.p
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Drop an extension asked for in an earlier step.
	select {
	case <-m.extend:
	default:
	}
	// The verifier's latest end, latest wins (one sender: its goroutine).
	ends := make(chan time.Time, 1)
	more := make(chan struct{}, 1)
	smiling := false
	progress := func(fp FaceProgress) {
		if !fp.Until.IsZero() {
			select {
			case <-ends:
			default:
			}
			ends <- fp.Until
		}
		m.mu.Lock()
		// The screen shows the step's end: the earlier clock.
		if end := m.faceEnd; !end.IsZero() && (fp.Until.IsZero() || end.Before(fp.Until)) {
			fp.Until = end
		}
		m.mu.Unlock()
		if fp.Stage == "smile" && !smiling {
			smiling = true
			// A new phase with its own time: an offer from the match
			// phase no longer stands. The state and its progress change
			// together, so a screen loaded at that moment never sees the
			// smile step without its end.
			m.set(Smile, func(st *Status) { st.MoreTime = nil; st.Progress = &fp })
		} else {
			m.mu.Lock()
			m.status.Progress = &fp
			m.mu.Unlock()
		}
		m.publish("session.progress", fp)
	}
	type result struct {
		v   FaceResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if ext, ok := m.opts.Face.(FaceExtender); ok {
			r.v, r.err = ext.VerifyExtendable(fctx, ref, progress, more)
		} else {
			r.v, r.err = m.opts.Face.Verify(fctx, ref, progress)
		}
		done <- r
	}()

	now := m.opts.Now()
	sessEnd := now.Add(p.FaceTimeout)
	var verEnd time.Time // unknown until the verifier reports it
	verLead := time.Duration(0)
	setEnd := func(t time.Time) {
		m.mu.Lock()
		m.faceEnd = t
		m.mu.Unlock()
	}
	setEnd(sessEnd)
	defer func() {
		m.mu.Lock()
		m.faceEnd = time.Time{}
		m.status.MoreTime = nil
		m.mu.Unlock()
	}()
	left := p.TimeExtensions
	sessLead := faceLead(p.MoreTimeWarning, p.FaceTimeout)
	end := time.NewTimer(p.FaceTimeout)
	defer end.Stop()
	warn := time.NewTimer(time.Hour)
	defer warn.Stop()
	// effective is the step's end and how long before it the offer comes.
	effective := func() (time.Time, time.Duration) {
		if !verEnd.IsZero() && verEnd.Before(sessEnd) {
			return verEnd, verLead
		}
		return sessEnd, sessLead
	}
	offered := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.status.MoreTime != nil
	}
	rearm := func() {
		e, lead := effective()
		in := e.Add(-lead).Sub(m.opts.Now())
		if in > 0 && offered() {
			// The end moved away (a new phase): the offer is withdrawn
			// and comes again before the new end.
			m.mu.Lock()
			m.status.MoreTime = nil
			m.mu.Unlock()
			m.publish("session.more_time_withdrawn", TimeOffer{Step: m.Status().State, Until: e, Left: left})
		}
		warn.Reset(max(0, in))
	}
	rearm()

	var ab error
	timedOut := false
	ctxDone := ctx.Done()
	for {
		select {
		case r := <-done:
			if ab != nil {
				return FaceResult{}, ab
			}
			if r.err != nil && timedOut && ctx.Err() == nil {
				return FaceResult{}, &abort{"timeout"}
			}
			return r.v, r.err
		case t := <-ends:
			if !t.Equal(verEnd) {
				// A new end: its phase began (or was extended) about now.
				verEnd, verLead = t, faceLead(p.MoreTimeWarning, t.Sub(m.opts.Now()))
				rearm()
			}
		case <-warn.C:
			if left > 0 && !offered() && !timedOut && ab == nil {
				e, _ := effective()
				o := TimeOffer{Step: m.Status().State, Until: e, Left: left}
				m.mu.Lock()
				m.status.MoreTime = &o
				m.mu.Unlock()
				m.publish("session.more_time", o)
			}
		case <-m.extend:
			if !offered() || left <= 0 || timedOut || ab != nil {
				continue
			}
			left--
			m.mu.Lock()
			m.status.MoreTime = nil
			m.mu.Unlock()
			sessEnd = m.opts.Now().Add(p.FaceTimeout)
			end.Reset(p.FaceTimeout)
			setEnd(sessEnd)
			if _, ok := m.opts.Face.(FaceExtender); ok {
				// The verifier reports its new end with its next frame.
				verEnd = time.Time{}
				select {
				case more <- struct{}{}:
				default:
				}
			}
			e, _ := effective()
			rearm()
			m.publish("session.time_extended", TimeOffer{Step: m.Status().State, Until: e, Left: left})
		case <-end.C:
			if !timedOut && ab == nil {
				timedOut = true
				cancel()
			}
		case present := <-m.card:
			if !present && !m.cardIn() && ab == nil {
				ab = &abort{"card_removed"}
				cancel()
			}
		case code := <-m.cancel:
			if ab == nil {
				ab = &abort{cancelCode(code)}
				cancel()
			}
		case <-ctxDone:
			ctxDone = nil // fctx derives from ctx: the verifier is stopping
			if ab == nil {
				ab = &abort{"shutdown"}
			}
		}
	}
}
