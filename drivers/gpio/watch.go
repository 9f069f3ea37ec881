package gpio

import (
	"context"
	"fmt"
	"time"
)

// watcher is the per-input state of Run; owned by one goroutine.
type watcher struct {
	b    *Board
	l    *line
	emit func(InputEvent)

	stable   bool      // last reported logical level
	seen     bool      // last observed logical level
	pending  bool      // a change is waiting out the debounce window
	since    time.Time // when seen was first observed (last edge)
	deadline time.Time // end of the debounce window

	edges     bool // edge detection believed to work
	failures  int  // consecutive early WaitForEdge returns
	nextProbe time.Time
}

// watch runs one input until ctx ends or the board closes.
func (b *Board) watch(ctx context.Context, l *line, emit func(InputEvent)) {
	b.mu.Lock()
	w := &watcher{b: b, l: l, emit: emit, stable: l.active, seen: l.active, edges: !l.noEdge}
	b.mu.Unlock()
	if !w.edges {
		w.nextProbe = time.Now().Add(b.t.probe)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.stop:
			return
		default:
		}
		wait := b.t.idle
		if w.pending {
			wait = time.Until(w.deadline)
			if wait <= 0 {
				w.settle()
				continue
			}
		}
		if w.edges {
			w.waitEdge(wait)
		} else {
			w.pollOnce(ctx, min(wait, b.t.poll))
		}
	}
}

// waitEdge blocks for at most wait for an edge. periph's WaitForEdge gives
// only a bool, so a driver error (gpioioctl logs it and returns false at
// once) is recognised by returning well before the timeout; several in a
// row switch the line to polling.
func (w *watcher) waitEdge(wait time.Duration) {
	t := w.b.t
	start := time.Now()
	got := w.l.pin.WaitForEdge(wait)
	now := time.Now()
	if got {
		w.failures = 0
		w.observe(now)
		return
	}
	if wait >= t.minDetect && now.Sub(start) < wait/2 {
		w.failures++
		if w.failures >= t.maxFailure {
			w.edges = false
			w.nextProbe = now.Add(t.probe)
			w.b.setFault(w.l, fmt.Sprintf("edge detection failing (WaitForEdge returned early %d times); polling every %v", w.failures, t.poll))
		}
	} else {
		w.failures = 0
	}
	// Safety net for missed edges (e.g. kernel event buffer overflow).
	if !w.pending && w.l.read() != w.seen {
		w.observe(now)
	}
}

// pollOnce sleeps d, samples the line, and now and then probes whether edge
// detection works again.
func (w *watcher) pollOnce(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	select {
	case <-ctx.Done():
		tm.Stop()
		return
	case <-w.b.stop:
		tm.Stop()
		return
	case <-tm.C:
	}
	now := time.Now()
	if w.l.read() != w.seen {
		w.observe(now)
	}
	if w.l.noEdge || now.Before(w.nextProbe) {
		return
	}
	w.nextProbe = now.Add(w.b.t.probe)
	t := w.b.t
	start := time.Now()
	got := w.l.pin.WaitForEdge(t.probeWait)
	if got || time.Since(start) >= t.probeWait/2 {
		w.edges, w.failures = true, 0
		w.b.setFault(w.l, "")
		if got {
			w.observe(time.Now())
		}
	}
}

// observe records that the line may have changed at time at.
func (w *watcher) observe(at time.Time) {
	v := w.l.read()
	if v != w.seen {
		w.seen, w.since = v, at
	}
	if w.b.debounce <= 0 {
		if w.seen != w.stable {
			w.report()
		}
		return
	}
	// Every edge restarts the window: the level must stay put for the whole
	// debounce time.
	w.pending = true
	w.deadline = at.Add(w.b.debounce)
}

// settle ends a debounce window: report if the line really changed.
func (w *watcher) settle() {
	w.pending = false
	if v := w.l.read(); v != w.seen {
		// Changed without an edge we saw: the level was not stable after all.
		w.observe(time.Now())
		return
	}
	if w.seen == w.stable {
		w.b.log.Debug("gpio glitch ignored", "role", w.l.role, "line", w.l.name)
		return
	}
	w.report()
}

func (w *watcher) report() {
	w.stable = w.seen
	w.b.mu.Lock()
	w.l.active = w.stable
	w.b.mu.Unlock()
	w.b.log.Debug("gpio input", "role", w.l.role, "active", w.stable)
	w.b.emit(w.emit, InputEvent{Role: w.l.role, Active: w.stable, Time: w.since})
}
