package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// InputEvent reports a debounced input change (or the initial state).
type InputEvent struct {
	Role   Role
	Active bool
	// Time is when the line reached this level (the last edge of a bounce
	// burst), not when the debounce window expired.
	Time time.Time
}

// PinState is one line's logical state.
type PinState struct {
	Role   Role   `json:"role"`
	Line   string `json:"line"`
	Output bool   `json:"output"`
	Active bool   `json:"active"`
}

// Status summarises driver health: "ok", "degraded" (some line faulty but
// the driver works, e.g. an input fell back to polling) or "down" (closed).
type Status struct {
	State  string     `json:"state"`
	Detail string     `json:"detail,omitempty"`
	Pins   []PinState `json:"pins"`
}

// Status.State values.
const (
	StateOK       = "ok"
	StateDegraded = "degraded"
	StateDown     = "down"
)

// Driver is what the daemon uses; *Board (and so *Sim) implements it.
type Driver interface {
	// Set drives an output to a logical level.
	Set(role Role, active bool) error
	// Active returns the current logical level of an input or output.
	Active(role Role) (bool, error)
	// Run watches the inputs until ctx ends, emitting the initial state of
	// each input once and then every debounced change.
	Run(ctx context.Context, emit func(InputEvent)) error
	States() []PinState
	Status() Status
	// Close stops Run, drives outputs inactive and releases the lines.
	Close() error
}

var _ Driver = (*Board)(nil)

// timing holds the watcher's intervals; tests shrink them.
type timing struct {
	idle       time.Duration // WaitForEdge timeout with nothing pending: bounds stop latency
	poll       time.Duration // sampling period of lines without working edge detection
	probe      time.Duration // how often a polled line re-tries edge detection
	probeWait  time.Duration // WaitForEdge timeout used by that probe
	minDetect  time.Duration // shorter waits are not used to judge an early return
	maxFailure int           // consecutive early returns before falling back to polling
}

func defaultTiming() timing {
	return timing{
		idle:       100 * time.Millisecond,
		poll:       10 * time.Millisecond,
		probe:      5 * time.Second,
		probeWait:  20 * time.Millisecond,
		minDetect:  4 * time.Millisecond,
		maxFailure: 3,
	}
}

// line is one configured role. Immutable fields first; the rest is guarded
// by Board.mu.
type line struct {
	role      Role
	name      string
	pin       gpio.PinIO
	activeLow bool
	output    bool
	noEdge    bool // edge detection could not be configured; poll from the start

	active bool   // outputs: last commanded; inputs: last reported by Run
	fault  string // non-empty while the line is degraded
}

// level converts a logical level to the electrical one.
func (l *line) level(active bool) gpio.Level { return gpio.Level(active != l.activeLow) }

// read samples the line's logical level.
func (l *line) read() bool { return bool(l.pin.Read()) != l.activeLow }

// Board implements Driver over any set of periph pins, real or fake.
type Board struct {
	log      *slog.Logger
	debounce time.Duration
	t        timing
	lines    map[Role]*line
	order    []*line // Roles() order

	mu       sync.Mutex
	closed   bool
	running  bool
	stop     chan struct{} // closed by Close to end Run
	runDone  chan struct{} // closed when the current Run has returned
	onRun    func()        // called under mu as Run starts (Sim drains stale edges)
	emitMu   sync.Mutex    // serialises emit calls across watchers
	closeErr error
}

// NewBoard configures pins per cfg: outputs are driven inactive, inputs get
// their pull and both-edge detection (falling back to polling, with Status
// degraded, if the line cannot do edges). Every role in cfg.Pins must have a
// pin and vice versa.
func NewBoard(pins map[Role]gpio.PinIO, cfg Config, logger *slog.Logger) (*Board, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	for r := range pins {
		if _, ok := cfg.Pins[r]; !ok {
			errs = append(errs, fmt.Errorf("role %q: pin given but not configured", r))
		}
	}
	b := &Board{
		log:      logger,
		debounce: cfg.debounce(),
		t:        defaultTiming(),
		lines:    map[Role]*line{},
		stop:     make(chan struct{}),
	}
	for _, r := range Roles() {
		pc, ok := cfg.Pins[r]
		if !ok {
			continue
		}
		p := pins[r]
		if p == nil {
			errs = append(errs, fmt.Errorf("role %q: no pin for line %q", r, pc.Line))
			continue
		}
		l := &line{role: r, name: strings.TrimSpace(pc.Line), pin: p, activeLow: pc.ActiveLow, output: r.IsOutput()}
		if err := b.setup(l, pc); err != nil {
			errs = append(errs, fmt.Errorf("role %q (line %q): %w", r, l.name, err))
			continue
		}
		b.lines[r] = l
		b.order = append(b.order, l)
	}
	if len(errs) > 0 {
		b.release()
		return nil, errors.Join(errs...)
	}
	return b, nil
}

// setup puts one line in its configured mode.
func (b *Board) setup(l *line, pc PinConfig) error {
	if l.output {
		if err := l.pin.Out(l.level(false)); err != nil {
			return fmt.Errorf("configure output: %w", err)
		}
		return nil
	}
	pull, err := parsePull(pc.Pull)
	if err != nil {
		return err
	}
	if err := l.pin.In(pull, gpio.BothEdges); err != nil {
		// Some lines (or chips without IRQs) cannot report edges; polling
		// still gives a working, if slower and costlier, input.
		if err2 := l.pin.In(pull, gpio.NoEdge); err2 != nil {
			return fmt.Errorf("configure input: %w", errors.Join(err, err2))
		}
		l.noEdge = true
		l.fault = fmt.Sprintf("edge detection unavailable (%v); polling", err)
		b.log.Warn("gpio input without edge detection, polling", "role", l.role, "line", l.name, "err", err)
	}
	l.active = l.read()
	return nil
}

func (b *Board) lookup(role Role) (*line, error) {
	l, ok := b.lines[role]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRole, role)
	}
	return l, nil
}

// Set drives an output role to a logical level.
func (b *Board) Set(role Role, active bool) error {
	l, err := b.lookup(role)
	if err != nil {
		return err
	}
	if !l.output {
		return fmt.Errorf("%w: %q", ErrNotOutput, role)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if err := l.pin.Out(l.level(active)); err != nil {
		l.fault = fmt.Sprintf("write failed: %v", err)
		return fmt.Errorf("gpio: set %s (line %q): %w", role, l.name, err)
	}
	l.fault = ""
	l.active = active
	return nil
}

// Active returns a role's logical level. For outputs it is the last level
// set (reading an output line back is not reliable on every driver). For
// inputs it is the debounced level while Run is active, otherwise a fresh
// sample of the line.
func (b *Board) Active(role Role) (bool, error) {
	l, err := b.lookup(role)
	if err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, ErrClosed
	}
	return b.activeLocked(l), nil
}

func (b *Board) activeLocked(l *line) bool {
	if l.output || b.running {
		return l.active
	}
	return l.read()
}

// States returns every configured line's logical state in Roles() order.
func (b *Board) States() []PinState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statesLocked()
}

func (b *Board) statesLocked() []PinState {
	out := make([]PinState, 0, len(b.order))
	for _, l := range b.order {
		a := l.active
		if !b.closed {
			a = b.activeLocked(l)
		}
		out = append(out, PinState{Role: l.role, Line: l.name, Output: l.output, Active: a})
	}
	return out
}

// Status reports health and pin states.
func (b *Board) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Status{State: StateOK, Pins: b.statesLocked()}
	if b.closed {
		st.State, st.Detail = StateDown, "closed"
		return st
	}
	var faults []string
	for _, l := range b.order {
		if l.fault != "" {
			faults = append(faults, fmt.Sprintf("%s (%s): %s", l.role, l.name, l.fault))
		}
	}
	if len(faults) > 0 {
		st.State, st.Detail = StateDegraded, strings.Join(faults, "; ")
	}
	return st
}

func (b *Board) setFault(l *line, fault string) {
	b.mu.Lock()
	changed := l.fault != fault
	l.fault = fault
	b.mu.Unlock()
	if changed {
		if fault == "" {
			b.log.Info("gpio line recovered", "role", l.role, "line", l.name)
		} else {
			b.log.Warn("gpio line degraded", "role", l.role, "line", l.name, "fault", fault)
		}
	}
}

// Run watches all inputs until ctx ends (returns ctx.Err()) or Close is
// called (returns ErrClosed). It first emits each input's current state, then
// debounced changes. emit is never called concurrently; it should return
// quickly since a slow emit delays that input's next event. Only one Run may
// be active at a time. emit must not call Close (Close waits for Run).
func (b *Board) Run(ctx context.Context, emit func(InputEvent)) error {
	if emit == nil {
		emit = func(InputEvent) {}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if b.running {
		b.mu.Unlock()
		return ErrRunning
	}
	if b.onRun != nil {
		b.onRun()
	}
	b.running = true
	done := make(chan struct{})
	b.runDone = done
	var inputs []*line
	for _, l := range b.order {
		if !l.output {
			l.active = l.read()
			inputs = append(inputs, l)
		}
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.running = false
		b.mu.Unlock()
		close(done)
	}()

	now := time.Now()
	for _, l := range inputs {
		b.mu.Lock()
		a := l.active
		b.mu.Unlock()
		b.emit(emit, InputEvent{Role: l.role, Active: a, Time: now})
	}

	var wg sync.WaitGroup
	for _, l := range inputs {
		wg.Go(func() { b.watch(ctx, l, emit) })
	}
	wg.Wait()
	select {
	case <-b.stop:
		return ErrClosed
	default:
		return ctx.Err()
	}
}

func (b *Board) emit(fn func(InputEvent), ev InputEvent) {
	b.emitMu.Lock()
	defer b.emitMu.Unlock()
	fn(ev)
}

// Close stops Run (waiting up to one idle WaitForEdge timeout, 100ms, for
// the watchers), drives every output to its inactive level and releases the
// lines. It is idempotent.
func (b *Board) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.closeErr
	}
	b.closed = true
	close(b.stop)
	done := b.runDone
	b.mu.Unlock()
	if done != nil {
		<-done // watchers must be gone before lines are released
	}
	var errs []error
	b.mu.Lock()
	for _, l := range b.order {
		if !l.output {
			continue
		}
		if err := l.pin.Out(l.level(false)); err != nil {
			errs = append(errs, fmt.Errorf("gpio: reset %s (line %q): %w", l.role, l.name, err))
			continue
		}
		l.active = false
	}
	b.mu.Unlock()
	errs = append(errs, b.release())
	b.closeErr = errors.Join(errs...)
	return b.closeErr
}

// release closes whatever per-line resources the backend holds (file
// descriptors for gpioioctl lines; nothing for fakes).
func (b *Board) release() error {
	var errs []error
	for _, l := range b.order {
		var p any = l.pin
		for {
			rp, ok := p.(gpio.RealPin)
			if !ok {
				break
			}
			p = rp.Real()
		}
		switch c := p.(type) {
		case interface{ Close() error }:
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("gpio: release %s: %w", l.role, err))
			}
		case interface{ Close() }:
			c.Close()
		}
	}
	return errors.Join(errs...)
}
