package session

import (
	"errors"
	"time"
)

// Time extensions for the steps the shopper paces (insert the card, type
// the code; the face step in facetime.go): before such a step times out the screen offers more time,
// up to Policy.TimeExtensions times per step (EN 301 549 §11.2.2.2.1 /
// WCAG 2.1 SC 2.2.1 "Timing adjustable": warn before the time runs out
// and extend it with a simple action; WCAG asks for at least ten
// extensions, the bank configures how many, see docs/accessibility.md).

// TimeOffer is the screen's offer of more time in the current step.
type TimeOffer struct {
	Step State `json:"step"`
	// Until is when the step times out unless the shopper takes more time.
	Until time.Time `json:"until"`
	// Left is how many more extensions the shopper may still take.
	Left int `json:"left"`
}

// ErrNoOffer: more time was asked while none was offered.
var ErrNoOffer = errors.New("session: no offer of more time now")

// MoreTime takes the offer of more time (from the screen or the keypad).
func (m *Machine) MoreTime() error {
	m.mu.Lock()
	offered := m.status.MoreTime != nil
	m.mu.Unlock()
	if !offered {
		return ErrNoOffer
	}
	select {
	case m.extend <- struct{}{}:
	default: // one is already pending
	}
	return nil
}

// stepClock is the timeout of one shopper-paced step with its offers.
type stepClock struct {
	s       *session
	step    State
	timeout time.Duration
	left    int
	end     *time.Timer
	warn    *time.Timer
	until   time.Time
}

func (s *session) clock(step State, timeout time.Duration) *stepClock {
	p := s.p
	c := &stepClock{s: s, step: step, timeout: timeout, left: p.TimeExtensions}
	// Drop an extension asked for in an earlier step.
	select {
	case <-s.m.extend:
	default:
	}
	c.end = time.NewTimer(timeout)
	c.until = s.m.opts.Now().Add(timeout)
	c.warn = time.NewTimer(c.warnIn())
	return c
}

func (c *stepClock) warnIn() time.Duration {
	w := c.timeout - c.s.p.MoreTimeWarning
	if w < 0 {
		w = 0
	}
	return w
}

// offer tells the screen (and speech) the step is about to time out.
func (c *stepClock) offer() {
	if c.left <= 0 {
		return
	}
	o := TimeOffer{Step: c.step, Until: c.until, Left: c.left}
	c.s.m.mu.Lock()
	c.s.m.status.MoreTime = &o
	c.s.m.mu.Unlock()
	c.s.m.publish("session.more_time", o)
}

// extend restarts the step's time when an offer stands.
func (c *stepClock) extend() {
	c.s.m.mu.Lock()
	offered := c.s.m.status.MoreTime != nil
	c.s.m.status.MoreTime = nil
	c.s.m.mu.Unlock()
	if !offered || c.left <= 0 {
		return
	}
	c.left--
	c.end.Reset(c.timeout)
	c.warn.Reset(c.warnIn())
	c.until = c.s.m.opts.Now().Add(c.timeout)
	c.s.m.publish("session.time_extended", TimeOffer{Step: c.step, Until: c.until, Left: c.left})
}

func (c *stepClock) stop() {
	c.end.Stop()
	c.warn.Stop()
	c.s.m.mu.Lock()
	c.s.m.status.MoreTime = nil
	c.s.m.mu.Unlock()
}
