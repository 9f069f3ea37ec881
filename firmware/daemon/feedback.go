package daemon

import (
	"context"
	"errors"
	"time"

	"kiosk/drivers/gpio"
	"kiosk/firmware/event"
	"kiosk/firmware/feedback"
	"kiosk/firmware/session"
)

// gpioOutputs drives whichever GPIO backend is open; until runGPIO has
// opened one, writes fail and the controller retries them.
type gpioOutputs struct{ d *Daemon }

func (o gpioOutputs) Set(role gpio.Role, active bool) error {
	o.d.gpioMu.Lock()
	g := o.d.gpio
	o.d.gpioMu.Unlock()
	if g == nil {
		if o.d.cfg.GPIO.Backend == "none" {
			return gpio.ErrUnknownRole // nothing wired at all
		}
		return errNoGPIO
	}
	return g.Set(role, active)
}

// runFeedback follows the event bus with the lights, buzzer and IR
// illuminator, and owns the service state (tamper, the fleet's hold,
// maintenance): it is
// the one writer of session.Machine.SetOutOfService.
func (d *Daemon) runFeedback(ctx context.Context) error {
	sub := d.bus.Subscribe(ctx, 256)
	defer sub.Close()
	u := d.findUI()
	opts := feedback.Options{
		Outputs: gpioOutputs{d},
		Publish: func(kind string, data any) {
			d.bus.Publish(event.Event{Source: "feedback", Kind: kind, Data: data})
		},
		Logger: d.log.With("component", "feedback"),
	}
	if d.session != nil {
		opts.OnService = d.session.SetOutOfService
	}
	c := feedback.New(opts)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stop(); <-done }()

	if d.session != nil {
		st := d.session.Status()
		c.Session(st.State, st.Outcome != nil && st.Outcome.Approved)
	}
	// A latch from before the restart (or power cut) holds; a wipe it
	// did not finish is finished now.
	if st := d.latched(); st.Latched {
		c.Latch()
		if !st.Wiped {
			d.onTamper(ctx)
		}
	}
	// The fleet's out-of-service hold survives restarts.
	if d.session != nil {
		h, err := d.serviceHold()
		if err != nil {
			d.log.Error("fleet service hold", "err", err)
		}
		if h.OutOfService {
			c.SetService(true)
		}
	}
	// The inputs' first levels may have been published before this
	// subscription: read them once GPIO is open.
	var poll <-chan time.Time
	if d.cfg.GPIO.Backend != "none" {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		poll = t.C
	}
	syncService := func() {
		if u != nil {
			u.setService(c.Service())
		}
	}
	syncService()
	for {
		var e event.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-poll:
			tamper, err := d.gpioActive(gpio.Tamper)
			if errors.Is(err, errNoGPIO) {
				continue
			}
			poll = nil
			if err == nil {
				c.Input(gpio.Tamper, tamper)
				if tamper {
					d.onTamper(ctx)
				}
			}
			syncService()
			continue
		case e, ok = <-sub.C:
			if !ok {
				return nil
			}
		}
		if u != nil {
			u.record(e)
		}
		switch v := e.Data.(type) {
		case session.Status:
			c.Session(v.State, v.Outcome != nil && v.Outcome.Approved)
		case gpioEvent:
			c.Input(gpio.Role(v.Role), v.Active)
			if gpio.Role(v.Role) == gpio.Tamper && v.Active {
				d.onTamper(ctx)
			}
		case staffAction:
			switch v.Action {
			case "maintenance":
				c.SetMaintenance(v.On)
			case "service": // the fleet's service_off (On) / service_on
				c.SetService(v.On)
			case "reset_tamper":
				if c.Service().Tamper {
					d.log.Warn("tamper reset refused", "err", feedback.ErrTamperActive)
					break
				}
				if err := d.completeTamperReset(ctx); err != nil {
					d.log.Warn("tamper reset refused", "err", err)
					break
				}
				if err := c.ResetTamper(); err != nil {
					d.log.Warn("tamper reset refused", "err", err)
				}
			}
		}
		if e.Kind == "session.wrong_password" {
			c.WrongPassword()
		}
		syncService()
	}
}
