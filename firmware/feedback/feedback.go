// Package feedback drives the kiosk's lights, buzzer and IR illuminator
// from the session's steps, and turns the enclosure's tamper switch and
// the staff's maintenance switch into the kiosk's service state.
//
// One Controller owns every output: callers report what happened
// (Session, WrongPassword, Input, SetMaintenance) and Run plays the
// matching patterns on the GPIO lines. LEDs never rely on colour alone:
// each state also has its own rhythm (breathing, steady, fast blink).
package feedback

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"kiosk/drivers/gpio"
	"kiosk/firmware/session"
)

// Outputs is what the controller drives; gpio.Driver satisfies it.
type Outputs interface {
	Set(role gpio.Role, active bool) error
}

// Options configure a Controller.
type Options struct {
	// Outputs may be nil (no GPIO): the state is still tracked. A Set that
	// fails is retried; a role that is not wired (gpio.ErrUnknownRole) is
	// left alone.
	Outputs Outputs
	// OnService is called with the service reason each time it changes
	// ("tamper", "maintenance", or "" back in service); typically
	// session.Machine.SetOutOfService.
	OnService func(reason string)
	// Publish raises events (must not block): "kiosk.service",
	// "alarm.tamper", "kiosk.wake".
	Publish func(kind string, data any)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Service reasons, in precedence order.
const (
	ReasonTamper = "tamper"
	// ReasonService: the fleet took the kiosk out of service (a
	// service_off job); it holds across restarts until service_on.
	ReasonService     = "service"
	ReasonMaintenance = "maintenance"
)

// ErrTamperActive is returned by ResetTamper while the enclosure is open.
var ErrTamperActive = errors.New("feedback: tamper input still active")

// Outputs the controller owns, in the order they are driven.
var outputs = [...]gpio.Role{gpio.LEDGreen, gpio.LEDRed, gpio.LEDAmber, gpio.Buzzer, gpio.IR}

// The patterns. Every state differs by rhythm as well as colour.
var (
	off         = Pattern{Name: "off"}
	idleBreath  = Blink("idle", time.Second, time.Second)
	working     = Steady("working", true)
	success     = Steady("success", true)
	failure     = Steady("failure", true)
	takeCard    = Blink("take_card", 250*time.Millisecond, 250*time.Millisecond)
	tamperBlink = Blink("out_of_service", 250*time.Millisecond, 250*time.Millisecond)
	maintenance = Steady("maintenance", true)
	irOn        = Steady("camera", true)

	beepSuccess   = Beeps("success", 2, 100*time.Millisecond, 80*time.Millisecond)
	beepFailure   = Beeps("failure", 1, 700*time.Millisecond, 0)
	beepAttention = Beeps("attention", 3, 120*time.Millisecond, 120*time.Millisecond)
	beepAlarm     = Beeps("alarm", 10, 300*time.Millisecond, 200*time.Millisecond)
)

// Service is the kiosk's service state, as published in "kiosk.service".
type Service struct {
	OutOfService bool   `json:"out_of_service"`
	Reason       string `json:"reason,omitempty"`
	Tamper       bool   `json:"tamper"` // the input's current level
}

type track struct {
	p     Pattern
	start time.Time
}

// Controller maps kiosk state to outputs. Create with New, run with Run.
type Controller struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}

	mu          sync.Mutex
	tracks      map[gpio.Role]track
	state       session.State
	approved    bool
	tamperIn    bool // input level
	tamperLatch bool // stays until staff reset it with the enclosure shut
	maint       bool
	held        bool // out of service by the fleet (persisted by the caller)
	reason      string
}

// New returns a controller in the idle state.
func New(opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{opts: opts, log: log, wake: make(chan struct{}, 1), tracks: map[gpio.Role]track{}, state: session.Idle}
	c.mu.Lock()
	c.updateLEDsLocked()
	c.mu.Unlock()
	return c
}

// Session reports the session's step; approved matters for Result and
// RemoveCard.
func (c *Controller) Session(st session.State, approved bool) {
	c.mu.Lock()
	prev := c.state
	c.state, c.approved = st, approved
	c.updateLEDsLocked()
	if st != prev {
		switch st {
		case session.AwaitCard:
			c.playLocked(gpio.Buzzer, beepAttention)
		case session.Result:
			if approved {
				c.playLocked(gpio.Buzzer, beepSuccess)
			} else {
				c.playLocked(gpio.Buzzer, beepFailure)
			}
		case session.RemoveCard:
			c.playLocked(gpio.Buzzer, beepAttention)
		}
	}
	c.mu.Unlock()
	c.kick()
}

// WrongPassword sounds the attention pattern (the screen shows the
// attempts left).
func (c *Controller) WrongPassword() {
	c.mu.Lock()
	c.playLocked(gpio.Buzzer, beepAttention)
	c.mu.Unlock()
	c.kick()
}

// Input reports a GPIO input level (initial or changed).
func (c *Controller) Input(role gpio.Role, active bool) {
	switch role {
	case gpio.Presence:
		if active {
			c.publish("kiosk.wake", map[string]bool{"present": true})
		}
	case gpio.Tamper:
		c.mu.Lock()
		changed := c.tamperIn != active
		c.tamperIn = active
		if active {
			c.tamperLatch = true
			if changed {
				c.playLocked(gpio.Buzzer, beepAlarm)
			}
		}
		c.mu.Unlock()
		if changed {
			if active {
				c.log.Warn("tamper: enclosure opened, kiosk out of service")
			} else {
				c.log.Info("tamper input cleared; staff reset needed to return to service")
			}
			c.publish("alarm.tamper", map[string]bool{"active": active})
		}
		c.serviceChanged()
	}
}

// Latch sets the tamper latch without an input change: a latch that was
// persisted before a restart.
func (c *Controller) Latch() {
	c.mu.Lock()
	c.tamperLatch = true
	c.mu.Unlock()
	c.serviceChanged()
}

// SetMaintenance takes the kiosk out of service for staff work (or back).
func (c *Controller) SetMaintenance(on bool) {
	c.mu.Lock()
	c.maint = on
	c.mu.Unlock()
	c.serviceChanged()
}

// SetService takes the kiosk out of service for the fleet (out) or ends
// that hold. Staff maintenance does not lift it.
func (c *Controller) SetService(out bool) {
	c.mu.Lock()
	c.held = out
	c.mu.Unlock()
	c.serviceChanged()
}

// ResetTamper clears the tamper latch once the enclosure is shut again.
func (c *Controller) ResetTamper() error {
	c.mu.Lock()
	if c.tamperIn {
		c.mu.Unlock()
		return ErrTamperActive
	}
	c.tamperLatch = false
	c.mu.Unlock()
	c.serviceChanged()
	return nil
}

// Service returns the service state.
func (c *Controller) Service() Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Service{OutOfService: c.reason != "", Reason: c.reason, Tamper: c.tamperIn}
}

// Patterns returns the name of the pattern each output plays now ("off"
// for none), for tests and the staff screen.
func (c *Controller) Patterns() map[gpio.Role]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[gpio.Role]string{}
	now := c.opts.Now()
	for _, r := range outputs {
		t := c.tracks[r]
		name := t.p.Name
		// A one-shot pattern that has finished plays nothing.
		if on, hold := t.p.At(now.Sub(t.start)); name == "" || !t.p.Loop && !on && hold == 0 {
			name = "off"
		}
		out[r] = name
	}
	return out
}

func (c *Controller) serviceChanged() {
	c.mu.Lock()
	reason := ""
	switch {
	case c.tamperLatch:
		reason = ReasonTamper
	case c.held:
		reason = ReasonService
	case c.maint:
		reason = ReasonMaintenance
	}
	changed := reason != c.reason
	c.reason = reason
	c.updateLEDsLocked()
	svc := Service{OutOfService: reason != "", Reason: reason, Tamper: c.tamperIn}
	c.mu.Unlock()
	c.kick()
	if !changed {
		return
	}
	if c.opts.OnService != nil {
		c.opts.OnService(reason)
	}
	c.publish("kiosk.service", svc)
}

// updateLEDsLocked sets the LED and IR patterns for the current state.
func (c *Controller) updateLEDsLocked() {
	green, red, amber, ir := off, off, off, off
	switch c.state {
	case session.Idle:
		amber = idleBreath
	case session.AwaitCard, session.AwaitPassword, session.ReadingChip, session.Authorizing:
		amber = working
	case session.FaceMatch, session.Smile:
		amber, ir = working, irOn
	case session.Result, session.RemoveCard:
		if c.approved {
			green = success
		} else {
			red = failure
		}
		if c.state == session.RemoveCard {
			amber = takeCard
		}
	}
	switch c.reason {
	case ReasonTamper:
		green, red, amber = off, tamperBlink, off
	case ReasonMaintenance, ReasonService:
		green, red, amber = off, maintenance, off
	}
	c.setLocked(gpio.LEDGreen, green)
	c.setLocked(gpio.LEDRed, red)
	c.setLocked(gpio.LEDAmber, amber)
	c.setLocked(gpio.IR, ir)
}

// setLocked changes a role's pattern, keeping the phase of one already
// playing (so a repeated state does not restart a blink).
func (c *Controller) setLocked(role gpio.Role, p Pattern) {
	if cur, ok := c.tracks[role]; ok && cur.p.Name == p.Name {
		return
	}
	c.tracks[role] = track{p: p, start: c.opts.Now()}
}

// playLocked starts a one-shot pattern from its beginning. If the line is
// on (another beep still playing), a short gap first keeps the new
// pattern's first beep distinct.
func (c *Controller) playLocked(role gpio.Role, p Pattern) {
	now := c.opts.Now()
	if cur, ok := c.tracks[role]; ok {
		if on, _ := cur.p.At(now.Sub(cur.start)); on {
			p.Steps = append([]Step{{false, gapBeforeReplay}}, p.Steps...)
		}
	}
	c.tracks[role] = track{p: p, start: now}
}

// gapBeforeReplay separates a new beep pattern from one cut short.
const gapBeforeReplay = 60 * time.Millisecond

func (c *Controller) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Controller) publish(kind string, data any) {
	if c.opts.Publish != nil {
		c.opts.Publish(kind, data)
	}
}

// retryEvery is how soon a failed output write is tried again.
const retryEvery = 250 * time.Millisecond

// Run plays the patterns until ctx ends, then switches every output off.
func (c *Controller) Run(ctx context.Context) error {
	applied := map[gpio.Role]bool{}
	unwired := map[gpio.Role]bool{}
	failing := map[gpio.Role]bool{} // logged once until the line works again
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := c.opts.Now()
		tracks := maps.Clone(c.tracks)
		c.mu.Unlock()
		var next time.Duration
		soonest := func(d time.Duration) {
			if d > 0 && (next == 0 || d < next) {
				next = d
			}
		}
		for _, r := range outputs {
			if unwired[r] || c.opts.Outputs == nil {
				continue
			}
			t := tracks[r]
			on, hold := t.p.At(now.Sub(t.start))
			soonest(hold)
			if lv, ok := applied[r]; ok && lv == on {
				continue
			}
			if err := c.opts.Outputs.Set(r, on); err != nil {
				delete(applied, r)
				if errors.Is(err, gpio.ErrUnknownRole) {
					unwired[r] = true
					c.log.Debug("output not wired; skipped", "role", r)
					continue
				}
				if !failing[r] {
					failing[r] = true
					c.log.Debug("output write failed; retrying", "role", r, "err", err)
				}
				soonest(retryEvery)
				continue
			}
			if failing[r] {
				delete(failing, r)
				c.log.Debug("output write works again", "role", r)
			}
			applied[r] = on
		}
		if next == 0 {
			next = time.Hour
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			if c.opts.Outputs != nil {
				for _, r := range outputs {
					if !unwired[r] {
						_ = c.opts.Outputs.Set(r, false)
					}
				}
			}
			return nil
		case <-c.wake:
		case <-timer.C:
		}
	}
}
