package feedback

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"kiosk/drivers/gpio"
	"kiosk/firmware/session"
)

func TestPatternAt(t *testing.T) {
	ms := time.Millisecond
	blink := Blink("b", 100*ms, 300*ms)
	beeps := Beeps("x", 2, 100*ms, 50*ms)
	tests := []struct {
		p       Pattern
		at      time.Duration
		on      bool
		holdFor time.Duration
	}{
		{Pattern{}, 0, false, 0},
		{Steady("s", true), 0, true, 0},
		{Steady("s", true), time.Hour, true, 0},
		{blink, 0, true, 100 * ms},
		{blink, 99 * ms, true, 1 * ms},
		{blink, 100 * ms, false, 300 * ms},
		{blink, 450 * ms, true, 50 * ms}, // second cycle
		{beeps, 120 * ms, false, 30 * ms},
		{beeps, 150 * ms, true, 100 * ms},
		{beeps, 250 * ms, false, 0}, // played: off for good
		{Pattern{Steps: []Step{{true, 100 * ms}, {false, 0}}}, 50 * ms, true, 50 * ms},
		{Pattern{Steps: []Step{{true, 100 * ms}, {false, 0}}}, 150 * ms, false, 0},
	}
	for i, tt := range tests {
		on, hold := tt.p.At(tt.at)
		if on != tt.on || hold != tt.holdFor {
			t.Errorf("%d: %s.At(%v) = %v, %v; want %v, %v", i, tt.p.Name, tt.at, on, hold, tt.on, tt.holdFor)
		}
	}
}

// recorder is the simulated board with every write logged.
type recorder struct {
	*gpio.Sim
	mu     sync.Mutex
	writes []write
}

type write struct {
	role gpio.Role
	on   bool
	at   time.Time
}

func (r *recorder) Set(role gpio.Role, on bool) error {
	if err := r.Sim.Set(role, on); err != nil {
		return err
	}
	r.mu.Lock()
	r.writes = append(r.writes, write{role, on, time.Now()})
	r.mu.Unlock()
	return nil
}

func (r *recorder) since(role gpio.Role, t0 time.Time) []write {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []write
	for _, w := range r.writes {
		if w.role == role && !w.at.Before(t0) {
			out = append(out, w)
		}
	}
	return out
}

type harness struct {
	c      *Controller
	pins   *recorder
	mu     sync.Mutex
	svc    []string
	events []string
	done   chan error
	cancel context.CancelFunc
}

func newHarness(t *testing.T, cfg gpio.Config) *harness {
	t.Helper()
	sim, err := gpio.NewSim(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	h := &harness{pins: &recorder{Sim: sim}, done: make(chan error, 1)}
	h.c = New(Options{
		Outputs:   h.pins,
		OnService: func(r string) { h.mu.Lock(); h.svc = append(h.svc, r); h.mu.Unlock() },
		Publish: func(kind string, data any) {
			h.mu.Lock()
			h.events = append(h.events, fmt.Sprintf("%s %v", kind, data))
			h.mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.c.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// waitLevel waits until the simulated line shows the level.
func (h *harness) waitLevel(t *testing.T, role gpio.Role, want bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := h.pins.Active(role)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed %v, want %v", role, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEachSessionStateHasItsPattern(t *testing.T) {
	h := newHarness(t, gpio.Config{})
	type want struct{ green, red, amber, buzzer, ir string }
	tests := []struct {
		state    session.State
		approved bool
		want     want
	}{
		{session.Idle, false, want{"off", "off", "idle", "off", "off"}},
		{session.AwaitCard, false, want{"off", "off", "working", "attention", "off"}},
		{session.AwaitPassword, false, want{"off", "off", "working", "attention", "off"}},
		{session.ReadingChip, false, want{"off", "off", "working", "attention", "off"}},
		{session.FaceMatch, false, want{"off", "off", "working", "attention", "camera"}},
		{session.Smile, false, want{"off", "off", "working", "attention", "camera"}},
		{session.Authorizing, false, want{"off", "off", "working", "attention", "off"}},
		{session.Result, true, want{"success", "off", "off", "success", "off"}},
		{session.RemoveCard, true, want{"success", "off", "take_card", "attention", "off"}},
		{session.Result, false, want{"off", "failure", "off", "failure", "off"}},
		{session.RemoveCard, false, want{"off", "failure", "take_card", "attention", "off"}},
		{session.Idle, false, want{"off", "off", "idle", "attention", "off"}},
	}
	for _, tt := range tests {
		t0 := time.Now()
		h.c.Session(tt.state, tt.approved)
		p := h.c.Patterns()
		got := want{p[gpio.LEDGreen], p[gpio.LEDRed], p[gpio.LEDAmber], p[gpio.Buzzer], p[gpio.IR]}
		if got != tt.want {
			t.Fatalf("%s (approved %v): patterns %+v, want %+v", tt.state, tt.approved, got, tt.want)
		}
		// The lines follow: steady patterns are on, blinks start on.
		h.waitLevel(t, gpio.LEDGreen, tt.want.green != "off")
		h.waitLevel(t, gpio.LEDRed, tt.want.red != "off")
		h.waitLevel(t, gpio.IR, tt.want.ir != "off")
		if tt.want.amber == "working" {
			h.waitLevel(t, gpio.LEDAmber, true)
		}
		if tt.want.amber == "off" {
			h.waitLevel(t, gpio.LEDAmber, false)
		}
		if tt.state == session.Result {
			// The buzzer pattern is played on the line: success is two
			// short beeps, failure one long one.
			beeps, long := 2, false
			if !tt.approved {
				beeps, long = 1, true
			}
			time.Sleep(900 * time.Millisecond)
			var ons int
			var onAt time.Time
			for _, w := range h.pins.since(gpio.Buzzer, t0) {
				if w.on {
					ons++
					onAt = w.at
				} else if !onAt.IsZero() {
					d := w.at.Sub(onAt)
					if long && d < 600*time.Millisecond || !long && (d < 80*time.Millisecond || d > 250*time.Millisecond) {
						t.Errorf("%s approved=%v: beep lasted %v", tt.state, tt.approved, d)
					}
				}
			}
			if ons != beeps {
				t.Logf("writes %+v", h.pins.since(gpio.Buzzer, t0))
				t.Errorf("%s approved=%v: %d beeps, want %d", tt.state, tt.approved, ons, beeps)
			}
			h.waitLevel(t, gpio.Buzzer, false)
		}
	}
}

// Idle "breathes": the amber LED blinks slowly (on and off each second).
func TestIdleBreathing(t *testing.T) {
	h := newHarness(t, gpio.Config{})
	t0 := time.Now()
	time.Sleep(2300 * time.Millisecond)
	ws := h.pins.since(gpio.LEDAmber, t0.Add(-time.Second))
	var seq []bool
	for _, w := range ws {
		seq = append(seq, w.on)
	}
	if len(seq) < 3 || !seq[0] || seq[1] || !seq[2] {
		t.Fatalf("amber writes %v, want on, off, on…", seq)
	}
	if d := ws[1].at.Sub(ws[0].at); d < 900*time.Millisecond || d > 1200*time.Millisecond {
		t.Fatalf("breathing half-period %v, want ~1s", d)
	}
}

func TestTamperTakesKioskOutOfService(t *testing.T) {
	h := newHarness(t, gpio.Config{})
	h.c.Session(session.AwaitPassword, false)
	h.c.Input(gpio.Tamper, false) // initial level
	if s := h.c.Service(); s.OutOfService {
		t.Fatalf("out of service before tamper: %+v", s)
	}
	h.c.Input(gpio.Tamper, true)
	if s := h.c.Service(); !s.OutOfService || s.Reason != ReasonTamper || !s.Tamper {
		t.Fatalf("after tamper: %+v", s)
	}
	p := h.c.Patterns()
	if p[gpio.LEDRed] != "out_of_service" || p[gpio.LEDAmber] != "off" || p[gpio.Buzzer] != "alarm" {
		t.Fatalf("tamper patterns %v", p)
	}
	h.waitLevel(t, gpio.LEDRed, true)
	h.waitLevel(t, gpio.LEDRed, false) // blinking
	h.waitLevel(t, gpio.LEDAmber, false)

	// Closing the enclosure is not enough: staff must reset.
	h.c.Input(gpio.Tamper, false)
	if s := h.c.Service(); s.Reason != ReasonTamper {
		t.Fatalf("tamper latch lost: %+v", s)
	}
	h.c.Input(gpio.Tamper, true)
	if err := h.c.ResetTamper(); err != ErrTamperActive {
		t.Fatalf("reset while open: %v", err)
	}
	h.c.Input(gpio.Tamper, false)
	h.c.SetMaintenance(true)
	if err := h.c.ResetTamper(); err != nil {
		t.Fatal(err)
	}
	if s := h.c.Service(); s.Reason != ReasonMaintenance {
		t.Fatalf("after reset, in maintenance: %+v", s)
	}
	h.c.SetMaintenance(false)
	if s := h.c.Service(); s.OutOfService {
		t.Fatalf("back in service: %+v", s)
	}
	if p := h.c.Patterns(); p[gpio.LEDAmber] != "working" || p[gpio.LEDRed] != "off" {
		t.Fatalf("session lights not restored: %v", p)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if want := []string{"tamper", "maintenance", ""}; fmt.Sprint(h.svc) != fmt.Sprint(want) {
		t.Fatalf("OnService calls %q, want %q", h.svc, want)
	}
	alarms := 0
	for _, e := range h.events {
		if e == "alarm.tamper map[active:true]" {
			alarms++
		}
	}
	if alarms != 2 {
		t.Fatalf("alarm events %q", h.events)
	}
}

// The fleet's hold ranks between tamper and maintenance: maintenance
// neither hides nor lifts it, a tamper latch wins over it.
func TestFleetHold(t *testing.T) {
	h := newHarness(t, gpio.Config{})
	h.c.SetMaintenance(true)
	h.c.SetService(true)
	if s := h.c.Service(); s.Reason != ReasonService {
		t.Fatalf("held in maintenance: %+v", s)
	}
	h.c.SetMaintenance(false)
	if s := h.c.Service(); s.Reason != ReasonService {
		t.Fatalf("maintenance off lifted the hold: %+v", s)
	}
	if p := h.c.Patterns(); p[gpio.LEDRed] != "maintenance" || p[gpio.LEDAmber] != "off" {
		t.Fatalf("held patterns %v", p)
	}
	h.c.Input(gpio.Tamper, true)
	if s := h.c.Service(); s.Reason != ReasonTamper {
		t.Fatalf("tamper while held: %+v", s)
	}
	h.c.Input(gpio.Tamper, false)
	if err := h.c.ResetTamper(); err != nil {
		t.Fatal(err)
	}
	if s := h.c.Service(); s.Reason != ReasonService {
		t.Fatalf("after the reset: %+v", s)
	}
	h.c.SetService(false)
	if s := h.c.Service(); s.OutOfService {
		t.Fatalf("hold lifted: %+v", s)
	}
}

func TestPresenceWakesScreen(t *testing.T) {
	h := newHarness(t, gpio.Config{})
	h.c.Input(gpio.Presence, true)
	h.c.Input(gpio.Presence, false)
	h.mu.Lock()
	defer h.mu.Unlock()
	if fmt.Sprint(h.events) != "[kiosk.wake map[present:true]]" {
		t.Fatalf("events %q", h.events)
	}
}

// Outputs that are not wired are skipped; the others still work. Run
// stops with its context and leaves every output off.
func TestUnwiredOutputsAndStop(t *testing.T) {
	h := newHarness(t, gpio.Config{Pins: map[gpio.Role]gpio.PinConfig{
		gpio.LEDGreen: {Line: "G"}, gpio.LEDAmber: {Line: "A"},
	}})
	h.c.Session(session.FaceMatch, false)
	h.waitLevel(t, gpio.LEDAmber, true)
	h.c.Session(session.Result, true)
	h.waitLevel(t, gpio.LEDGreen, true)
	h.stop(t)
	for _, r := range []gpio.Role{gpio.LEDGreen, gpio.LEDAmber} {
		if on, _ := h.pins.Active(r); on {
			t.Fatalf("%s left on after Run", r)
		}
	}
}

// Without GPIO the controller still tracks the service state.
func TestNoOutputs(t *testing.T) {
	c := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	c.Input(gpio.Tamper, true)
	if !c.Service().OutOfService {
		t.Fatal("tamper ignored without outputs")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not stop")
	}
}
