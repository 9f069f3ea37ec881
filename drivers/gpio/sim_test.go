package gpio

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// recorder collects emitted events.
type recorder struct{ ch chan InputEvent }

func newRecorder() *recorder          { return &recorder{ch: make(chan InputEvent, 256)} }
func (r *recorder) emit(e InputEvent) { r.ch <- e }

func (r *recorder) next(t *testing.T, within time.Duration) InputEvent {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return InputEvent{}
	}
}

// drain returns whatever is queued right now.
func (r *recorder) drain() []InputEvent {
	var out []InputEvent
	for {
		select {
		case e := <-r.ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

// startRun runs d.Run in a goroutine; stop cancels it and returns Run's error.
func startRun(t *testing.T, d Driver, rec *recorder) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, rec.emit) }()
	return func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

func kioskConfig(debounce time.Duration) Config {
	return Config{Debounce: debounce, Pins: map[Role]PinConfig{
		LEDGreen:      {Line: "G5"},
		LEDRed:        {Line: "G6", ActiveLow: true},
		Lock:          {Line: "G12", ActiveLow: true},
		Presence:      {Line: "G22", Pull: "down"},
		Tamper:        {Line: "G17", Pull: "up"}, // NC switch to GND: shut = low
		ServiceButton: {Line: "G27", ActiveLow: true, Pull: "up"},
	}}
}

func TestSimDefaultMapping(t *testing.T) {
	s, err := NewSim(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := s.States()
	if len(st) != len(Roles()) {
		t.Fatalf("States() has %d pins, want %d", len(st), len(Roles()))
	}
	for i, r := range Roles() {
		want := "SIM_" + strings.ToUpper(string(r))
		if st[i].Role != r || st[i].Line != want || st[i].Output != r.IsOutput() || st[i].Active {
			t.Errorf("States()[%d] = %+v, want role %s line %s inactive", i, st[i], r, want)
		}
	}
	if got := s.Status(); got.State != StateOK {
		t.Errorf("Status = %+v, want ok", got)
	}
}

func TestSimOutputs(t *testing.T) {
	s, err := NewSim(kioskConfig(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Open drove outputs inactive; for ActiveLow that is electrically high.
	if s.fakes[LEDGreen].Read() != gpio.Low || s.fakes[LEDRed].Read() != gpio.High || s.fakes[Lock].Read() != gpio.High {
		t.Fatal("outputs not at inactive level after open")
	}
	for _, tc := range []struct {
		role   Role
		active bool
		level  gpio.Level
	}{
		{LEDGreen, true, gpio.High}, {LEDRed, true, gpio.Low}, {Lock, true, gpio.Low},
		{LEDGreen, false, gpio.Low}, {LEDRed, false, gpio.High},
	} {
		if err := s.Set(tc.role, tc.active); err != nil {
			t.Fatalf("Set(%s, %v): %v", tc.role, tc.active, err)
		}
		if got, err := s.Active(tc.role); err != nil || got != tc.active {
			t.Errorf("Active(%s) = %v, %v; want %v", tc.role, got, err, tc.active)
		}
		if lv := s.fakes[tc.role].Read(); lv != tc.level {
			t.Errorf("%s electrical level = %v, want %v", tc.role, lv, tc.level)
		}
	}
	states := map[Role]PinState{}
	for _, ps := range s.States() {
		states[ps.Role] = ps
	}
	if !states[Lock].Active || states[LEDGreen].Active || !states[Lock].Output || states[Tamper].Output {
		t.Errorf("States() = %+v", s.States())
	}
	if err := s.Set(Tamper, true); !errors.Is(err, ErrNotOutput) {
		t.Errorf("Set(tamper) = %v, want ErrNotOutput", err)
	}
	if err := s.Set(Buzzer, true); !errors.Is(err, ErrUnknownRole) { // not mapped in this config
		t.Errorf("Set(buzzer) = %v, want ErrUnknownRole", err)
	}
	if _, err := s.Active("bogus"); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("Active(bogus) = %v, want ErrUnknownRole", err)
	}
	if err := s.SetInput(Lock, true); !errors.Is(err, ErrNotInput) {
		t.Errorf("SetInput(lock) = %v, want ErrNotInput", err)
	}
}

func TestSimInputsAndActiveLow(t *testing.T) {
	s, err := NewSim(kioskConfig(NoDebounce), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A pull-up with nothing driving it reads high (tamper loop open), as on
	// real hardware; close the loop like the installed NC switch does.
	if a, _ := s.Active(Tamper); !a {
		t.Fatal("open tamper loop with pull-up should read active")
	}
	if err := s.SetInput(Tamper, false); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	stop := startRun(t, s, rec)
	init := map[Role]bool{}
	for range 3 {
		e := rec.next(t, time.Second)
		init[e.Role] = e.Active
	}
	if len(init) != 3 || init[Presence] || init[Tamper] || init[ServiceButton] {
		t.Fatalf("initial events = %v, want 3 inputs all inactive", init)
	}

	steps := []struct {
		role   Role
		active bool
		level  gpio.Level
	}{
		{ServiceButton, true, gpio.Low}, // pressed pulls the line low
		{ServiceButton, false, gpio.High},
		{Tamper, true, gpio.High}, // loop opened
		{Presence, true, gpio.High},
	}
	for _, st := range steps {
		before := time.Now()
		if err := s.SetInput(st.role, st.active); err != nil {
			t.Fatal(err)
		}
		if lv := s.fakes[st.role].Read(); lv != st.level {
			t.Errorf("%s electrical = %v, want %v", st.role, lv, st.level)
		}
		e := rec.next(t, time.Second)
		if e.Role != st.role || e.Active != st.active || e.Time.Before(before) {
			t.Errorf("event = %+v, want %s active=%v at/after %v", e, st.role, st.active, before)
		}
		if a, _ := s.Active(st.role); a != st.active {
			t.Errorf("Active(%s) = %v, want %v", st.role, a, st.active)
		}
	}
	// Same level again: an edge without a change is not an event.
	if err := s.SetInput(Presence, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if extra := rec.drain(); len(extra) != 0 {
		t.Errorf("unexpected events %+v", extra)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// TestDebounce uses a synctest bubble so the debounce timing is exact.
func TestDebounce(t *testing.T) {
	const db = 20 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		s, err := NewSim(Config{Debounce: db, Pins: map[Role]PinConfig{Presence: {Line: "P"}, ServiceButton: {Line: "B", ActiveLow: true, Pull: "up"}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx, rec.emit) }()
		synctest.Wait()
		if got := rec.drain(); len(got) != 2 {
			t.Fatalf("initial events = %+v, want 2", got)
		}

		// A burst inside the window: one event, final level, one window after the last edge.
		if err := s.Bounce(ServiceButton, true, 5, 2*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		lastEdge := time.Now()
		time.Sleep(db - time.Millisecond)
		synctest.Wait()
		if got := rec.drain(); len(got) != 0 {
			t.Fatalf("event before the debounce window ended: %+v", got)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		got := rec.drain()
		if len(got) != 1 || got[0].Role != ServiceButton || !got[0].Active || !got[0].Time.Equal(lastEdge) {
			t.Fatalf("after burst got %+v, want one active service_button event at %v", got, lastEdge)
		}

		// A glitch that returns to the previous level: no event.
		if err := s.Bounce(ServiceButton, true, 4, time.Millisecond); err != nil { // ends active = unchanged
			t.Fatal(err)
		}
		if err := s.Bounce(Presence, false, 2, 3*time.Millisecond); err != nil { // up then back down
			t.Fatal(err)
		}
		time.Sleep(5 * db)
		synctest.Wait()
		if got := rec.drain(); len(got) != 0 {
			t.Fatalf("glitch produced events %+v", got)
		}

		// Edges further apart than the window are separate events.
		if err := s.Bounce(Presence, true, 3, 2*db); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * db)
		synctest.Wait()
		got = rec.drain()
		want := []bool{true, false, true}
		if len(got) != len(want) {
			t.Fatalf("slow toggles gave %+v, want %v", got, want)
		}
		for i := range want {
			if got[i].Role != Presence || got[i].Active != want[i] {
				t.Errorf("event %d = %+v, want presence %v", i, got[i], want[i])
			}
		}

		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		// synctest.Test fails if any goroutine of the bubble is still alive.
	})
}

func TestRunStopsOnCancelNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := NewSim(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	stop := startRun(t, s, rec)
	for range 3 {
		rec.next(t, time.Second)
	}
	if err := s.Run(context.Background(), rec.emit); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	start := time.Now()
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Run took %v to stop", d)
	}
	// Run may be started again after it returned.
	stop = startRun(t, s, rec)
	rec.next(t, time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("second Run = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseDrivesOutputsInactive(t *testing.T) {
	s, err := NewSim(kioskConfig(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Role{LEDGreen, LEDRed, Lock} {
		if err := s.Set(r, true); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, rec.emit) }()
	rec.next(t, time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Run after Close = %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not stop Run")
	}
	want := map[Role]gpio.Level{LEDGreen: gpio.Low, LEDRed: gpio.High, Lock: gpio.High}
	for r, lv := range want {
		if got := s.fakes[r].Read(); got != lv {
			t.Errorf("%s after Close = %v, want %v (inactive)", r, got, lv)
		}
	}
	for _, ps := range s.States() {
		if ps.Output && ps.Active {
			t.Errorf("%s still active after Close", ps.Role)
		}
	}
	if st := s.Status(); st.State != StateDown {
		t.Errorf("Status after Close = %+v", st)
	}
	if err := s.Set(LEDGreen, true); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close = %v", err)
	}
	if err := s.Run(ctx, rec.emit); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// flakyPin is a fake whose edge detection can be broken, like a gpioioctl
// line whose WaitForEdge fails (it returns false at once).
type flakyPin struct {
	*gpiotest.Pin
	broken   atomic.Bool
	noEdges  bool // In(…, edges) fails, as on a chip without IRQ support
	closed   atomic.Bool
	outError error
}

func (p *flakyPin) WaitForEdge(d time.Duration) bool {
	if p.broken.Load() {
		return false
	}
	return p.Pin.WaitForEdge(d)
}

func (p *flakyPin) In(pull gpio.Pull, e gpio.Edge) error {
	if p.noEdges && e != gpio.NoEdge {
		return errors.New("edge detection not supported")
	}
	return p.Pin.In(pull, e)
}

func (p *flakyPin) Out(l gpio.Level) error {
	if p.outError != nil {
		return p.outError
	}
	return p.Pin.Out(l)
}

func (p *flakyPin) Close() error { p.closed.Store(true); return nil }

func newFlaky(name string) *flakyPin {
	return &flakyPin{Pin: &gpiotest.Pin{N: name, EdgesChan: make(chan gpio.Level, 16)}}
}

// setLevel changes a fake's level and queues the edge.
func setLevel(p *flakyPin, lv gpio.Level) {
	p.Lock()
	p.L = lv
	p.Unlock()
	select {
	case p.EdgesChan <- lv:
	default:
	}
}

func TestEdgeFailureDegradesAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pin := newFlaky("T")
		b, err := NewBoard(map[Role]gpio.PinIO{Tamper: pin}, Config{Debounce: NoDebounce, Pins: map[Role]PinConfig{Tamper: {Line: "T"}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.t.probe = 200 * time.Millisecond
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- b.Run(ctx, rec.emit) }()
		synctest.Wait()
		rec.drain()

		pin.broken.Store(true)
		time.Sleep(150 * time.Millisecond) // let the idle wait end and the failures pile up
		synctest.Wait()
		st := b.Status()
		if st.State != StateDegraded || !strings.Contains(st.Detail, "tamper") || !strings.Contains(st.Detail, "polling") {
			t.Fatalf("Status = %+v, want degraded naming tamper and polling", st)
		}
		// Polling still reports changes.
		pin.Lock()
		pin.L = gpio.High
		pin.Unlock()
		time.Sleep(3 * b.t.poll)
		synctest.Wait()
		if got := rec.drain(); len(got) != 1 || !got[0].Active {
			t.Fatalf("polled change gave %+v, want one active event", got)
		}

		pin.broken.Store(false)
		time.Sleep(2 * b.t.probe)
		synctest.Wait()
		if st := b.Status(); st.State != StateOK {
			t.Fatalf("Status after repair = %+v, want ok", st)
		}
		setLevel(pin, gpio.Low)
		synctest.Wait()
		if got := rec.drain(); len(got) != 1 || got[0].Active {
			t.Fatalf("edge after recovery gave %+v", got)
		}
		cancel()
		<-errc
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if !pin.closed.Load() {
			t.Error("Close did not release the line")
		}
	})
}

func TestNoEdgeSupportPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pin := newFlaky("B")
		pin.noEdges = true
		b, err := NewBoard(map[Role]gpio.PinIO{ServiceButton: pin}, Config{Pins: map[Role]PinConfig{ServiceButton: {Line: "B", ActiveLow: true, Pull: "up"}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st := b.Status(); st.State != StateDegraded || !strings.Contains(st.Detail, "edge detection unavailable") {
			t.Fatalf("Status = %+v", st)
		}
		if a, _ := b.Active(ServiceButton); a {
			t.Fatal("pulled-up active-low button reads pressed")
		}
		rec := newRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- b.Run(ctx, rec.emit) }()
		synctest.Wait()
		rec.drain()
		pin.Lock()
		pin.L = gpio.Low // pressed
		pin.Unlock()
		time.Sleep(DefaultDebounce + 3*b.t.poll)
		synctest.Wait()
		if got := rec.drain(); len(got) != 1 || !got[0].Active || got[0].Role != ServiceButton {
			t.Fatalf("got %+v, want one press", got)
		}
		cancel()
		<-errc
		b.Close()
	})
}

func TestNewBoardErrors(t *testing.T) {
	cfg := Config{Pins: map[Role]PinConfig{Lock: {Line: "L"}}}
	if _, err := NewBoard(map[Role]gpio.PinIO{}, cfg, nil); err == nil || !strings.Contains(err.Error(), `role "lock"`) {
		t.Errorf("missing pin: %v", err)
	}
	if _, err := NewBoard(map[Role]gpio.PinIO{Lock: newFlaky("L"), Tamper: newFlaky("T")}, cfg, nil); err == nil || !strings.Contains(err.Error(), `role "tamper"`) {
		t.Errorf("unconfigured pin: %v", err)
	}
	bad := newFlaky("L")
	bad.outError = errors.New("EBUSY")
	if _, err := NewBoard(map[Role]gpio.PinIO{Lock: bad}, cfg, nil); err == nil || !strings.Contains(err.Error(), "EBUSY") || !strings.Contains(err.Error(), `role "lock"`) {
		t.Errorf("failing output: %v", err)
	}
	// Input without an edge channel: gpiotest refuses edge detection but
	// accepts NoEdge, so the line falls back to polling instead of failing.
	if _, err := NewBoard(map[Role]gpio.PinIO{Tamper: &gpiotest.Pin{N: "T"}}, Config{Pins: map[Role]PinConfig{Tamper: {Line: "T"}}}, nil); err != nil {
		t.Errorf("edge-less input: %v", err)
	}
}

func TestSetFailureDegrades(t *testing.T) {
	pin := newFlaky("L")
	b, err := NewBoard(map[Role]gpio.PinIO{Lock: pin}, Config{Pins: map[Role]PinConfig{Lock: {Line: "L"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pin.outError = errors.New("EIO")
	if err := b.Set(Lock, true); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("Set = %v", err)
	}
	if a, _ := b.Active(Lock); a {
		t.Error("failed Set changed the logical state")
	}
	if st := b.Status(); st.State != StateDegraded || !strings.Contains(st.Detail, "lock") {
		t.Errorf("Status = %+v", st)
	}
	pin.outError = nil
	if err := b.Set(Lock, true); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.State != StateOK {
		t.Errorf("Status after good Set = %+v", st)
	}
}
