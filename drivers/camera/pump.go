package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
)

// States reported in Status.State.
const (
	StateOK       = "ok"       // frames are flowing
	StateDegraded = "degraded" // open, but frames have stopped for a while (or not started yet)
	StateDown     = "down"     // not capturing: open failed, source failed, ended or stopped
)

const (
	fpsWindow      = 2 * time.Second
	watchEvery     = 100 * time.Millisecond
	minStall       = time.Second
	defaultReopen0 = 250 * time.Millisecond
	defaultReopen1 = 5 * time.Second
)

// PumpOptions configures a Pump; zero values take defaults.
type PumpOptions struct {
	Logger *slog.Logger // nil discards
	// ReopenMin and ReopenMax bound the backoff between reopen attempts
	// (default 250 ms doubling to 5 s, each with ±20 % jitter).
	ReopenMin, ReopenMax time.Duration
	// OnState is called, in order, whenever State or Detail changes. It
	// runs on the pump's goroutines and must not block.
	OnState func(Status)
}

// Status is a snapshot of a pump.
type Status struct {
	State   string  `json:"state"`            // "ok", "degraded", "down"
	Detail  string  `json:"detail,omitempty"` // why, when not ok
	Source  string  `json:"source"`
	FPS     float64 `json:"fps"`     // measured over the last 2 s
	Frames  uint64  `json:"frames"`  // frames captured
	Drops   uint64  `json:"drops"`   // frames replaced before any consumer took them
	Reopens uint64  `json:"reopens"` // successful opens after the first
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	// LastFrame is when the latest frame was captured (zero if none).
	LastFrame time.Time `json:"last_frame,omitzero"`
}

// Pump owns a Source and a capture goroutine. It keeps only the latest
// frame: capture never waits for consumers, and frames nobody took are
// counted as drops. On failure it closes the source and reopens it with
// capped exponential backoff, for as long as Run's context lives.
type Pump struct {
	src      Source
	log      *slog.Logger
	min, max time.Duration
	onState  func(Status)
	started  atomic.Bool

	cbMu sync.Mutex // held while changing state and calling OnState, to keep callbacks in order

	mu        sync.Mutex
	latest    gocv.Mat // valid while hasLatest
	hasLatest bool
	taken     bool // latest was handed to a consumer
	seq       uint64
	lastTime  time.Time
	width     int
	height    int
	frames    uint64
	drops     uint64
	reopens   uint64
	state     string
	detail    string
	describe  string
	times     []time.Time   // capture times within the fps window, oldest first
	gap       time.Duration // smoothed interval between frames, sets the stall timeout
	notify    chan struct{} // closed and replaced when a frame arrives or the pump ends
	ended     error         // ErrEndOfStream or ErrClosed once no more frames will come
}

// NewPump returns a pump for src; call Run to start it. The pump owns src
// from now on: Run opens and closes it.
func NewPump(src Source, opts PumpOptions) *Pump {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lo, hi := opts.ReopenMin, opts.ReopenMax
	if lo <= 0 {
		lo = defaultReopen0
	}
	if hi <= 0 {
		hi = defaultReopen1
	}
	if hi < lo {
		hi = lo
	}
	return &Pump{
		src: src, log: log, min: lo, max: hi, onState: opts.OnState,
		state: StateDown, detail: "not started", describe: src.Describe(),
		notify: make(chan struct{}),
	}
}

// Run captures until ctx ends, then closes the source and releases every
// frame it holds; it returns nil then. A non-looping file that ends leaves
// the pump "down" with its last frame available until ctx ends. Run may be
// called only once.
func (p *Pump) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("camera: Pump.Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	p.mu.Lock()
	p.latest = gocv.NewMat()
	p.mu.Unlock()
	buf := gocv.NewMat()

	var wg sync.WaitGroup
	wg.Go(func() { p.watch(ctx) })
	p.capture(ctx, &buf)
	cancel()
	wg.Wait()

	_ = buf.Close()
	p.mu.Lock()
	_ = p.latest.Close()
	p.hasLatest = false
	p.ended = ErrClosed // no frame is held any more, whatever the reason
	close(p.notify)
	p.notify = make(chan struct{})
	p.mu.Unlock()
	p.setState(StateDown, "stopped")
	return nil
}

// capture is the open/read/reopen loop.
func (p *Pump) capture(ctx context.Context, buf *gocv.Mat) {
	backoff := p.min
	opened := false
	attempt := 0
	for ctx.Err() == nil {
		if !opened {
			p.setState(StateDown, "opening")
		}
		err := p.src.Open(ctx)
		if ctx.Err() != nil {
			if err == nil {
				_ = p.src.Close()
			}
			return
		}
		if err != nil {
			attempt++
			d := p.jitter(backoff)
			p.setState(StateDown, fmt.Sprintf("open failed (attempt %d): %v; retrying in %v", attempt, err, d.Round(time.Millisecond)))
			p.log.Warn("camera: open failed", "source", p.describe, "attempt", attempt, "err", err, "retry_in", d)
			if !sleep(ctx, d) {
				return
			}
			backoff = min(backoff*2, p.max)
			continue
		}
		p.mu.Lock()
		if opened {
			p.reopens++
		}
		p.describe = p.src.Describe()
		p.mu.Unlock()
		if opened {
			p.log.Info("camera: reopened", "source", p.describe, "after_attempts", attempt)
		} else {
			p.log.Info("camera: opened", "source", p.describe)
		}
		opened = true
		p.setState(StateDegraded, "opened, waiting for the first frame")

		got, err := p.readLoop(ctx, buf)
		_ = p.src.Close()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrEndOfStream) {
			p.mu.Lock()
			p.ended = ErrEndOfStream
			close(p.notify)
			p.notify = make(chan struct{})
			p.mu.Unlock()
			p.setState(StateDown, "end of stream")
			p.log.Info("camera: end of stream", "source", p.describe)
			<-ctx.Done()
			return
		}
		if got {
			// It worked for a while: a fresh failure starts the backoff over.
			backoff, attempt = p.min, 0
		}
		d := p.jitter(backoff)
		p.setState(StateDown, fmt.Sprintf("source failed: %v; reopening in %v", err, d.Round(time.Millisecond)))
		p.log.Warn("camera: source failed", "source", p.describe, "err", err, "reopen_in", d)
		if !sleep(ctx, d) {
			return
		}
		backoff = min(backoff*2, p.max)
	}
}

// readLoop reads until an error; got reports whether any frame came.
func (p *Pump) readLoop(ctx context.Context, buf *gocv.Mat) (got bool, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return got, err
		}
		if err := p.src.Read(buf); err != nil {
			return got, err
		}
		if buf.Empty() { // a Source must not do this, but a nil frame is no frame
			return got, fmt.Errorf("%s: %w", p.describe, ErrNoFrame)
		}
		got = true
		if p.publish(buf, time.Now()) {
			p.setState(StateOK, "")
		}
	}
}

// publish swaps buf with the latest frame: zero copies, and the old frame's
// memory is reused by the next read. It reports whether state must turn ok.
func (p *Pump) publish(buf *gocv.Mat, now time.Time) (needOK bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hasLatest && !p.taken {
		p.drops++
	}
	if p.hasLatest {
		g := now.Sub(p.lastTime)
		if p.gap == 0 {
			p.gap = g
		} else {
			p.gap += (g - p.gap) / 8
		}
	}
	p.latest, *buf = *buf, p.latest
	p.hasLatest, p.taken = true, false
	p.seq++
	p.frames++
	p.lastTime = now
	p.width, p.height = p.latest.Cols(), p.latest.Rows()
	p.times = append(p.times, now)
	p.pruneTimes(now)
	close(p.notify)
	p.notify = make(chan struct{})
	return p.state != StateOK
}

func (p *Pump) pruneTimes(now time.Time) {
	i := 0
	for i < len(p.times) && now.Sub(p.times[i]) > fpsWindow {
		i++
	}
	p.times = p.times[i:]
}

// watch turns a silent "ok" source into "degraded": a blocked read (a stuck
// device or pipeline) cannot report itself.
func (p *Pump) watch(ctx context.Context) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.cbMu.Lock()
			p.mu.Lock()
			stall := max(minStall, 4*p.gap)
			var snap Status
			changed := false
			if p.state == StateOK && now.Sub(p.lastTime) > stall {
				p.state = StateDegraded
				p.detail = fmt.Sprintf("no frame for %v", now.Sub(p.lastTime).Round(100*time.Millisecond))
				snap, changed = p.statusLocked(now), true
			}
			p.mu.Unlock()
			if changed {
				p.log.Warn("camera: stalled", "source", snap.Source, "detail", snap.Detail)
				if p.onState != nil {
					p.onState(snap)
				}
			}
			p.cbMu.Unlock()
		}
	}
}

func (p *Pump) setState(state, detail string) {
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	p.mu.Lock()
	if p.state == state && p.detail == detail {
		p.mu.Unlock()
		return
	}
	p.state, p.detail = state, detail
	snap := p.statusLocked(time.Now())
	p.mu.Unlock()
	if p.onState != nil {
		p.onState(snap)
	}
}

func (p *Pump) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Next waits for a frame with Seq > afterSeq and returns a copy owned by
// the caller. Pass 0 for any frame, then the last Seq seen. It fails with
// ctx's error, ErrEndOfStream once a non-looping file ended and its last
// frame was taken, or ErrClosed once Run has returned.
func (p *Pump) Next(ctx context.Context, afterSeq uint64) (*Frame, error) {
	for {
		p.mu.Lock()
		if p.hasLatest && p.seq > afterSeq {
			f := p.takeLocked()
			p.mu.Unlock()
			return f, nil
		}
		if p.ended != nil {
			err := p.ended
			p.mu.Unlock()
			return nil, err
		}
		ch := p.notify
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Latest returns a copy of the latest frame, if the pump holds one.
func (p *Pump) Latest() (*Frame, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.hasLatest {
		return nil, false
	}
	return p.takeLocked(), true
}

func (p *Pump) takeLocked() *Frame {
	p.taken = true
	return &Frame{Seq: p.seq, Time: p.lastTime, Mat: p.latest.Clone()}
}

// Status returns a snapshot; FPS is measured over the last 2 seconds.
func (p *Pump) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statusLocked(time.Now())
}

func (p *Pump) statusLocked(now time.Time) Status {
	p.pruneTimes(now)
	var fps float64
	if n := len(p.times); n >= 2 {
		if span := p.times[n-1].Sub(p.times[0]); span > 0 {
			fps = float64(n-1) / span.Seconds()
		}
	}
	return Status{
		State: p.state, Detail: p.detail, Source: p.describe, FPS: fps,
		Frames: p.frames, Drops: p.drops, Reopens: p.reopens,
		Width: p.width, Height: p.height, LastFrame: p.lastTime,
	}
}
