package pcsc_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/vpcd"
)

// vcard is a Go card plugged into a vpcd slot. Stop pulls it.
type vcard struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// insert connects h to the vpcd slot at addr. With reinsert, the card dials
// again whenever the reader drops it (e.g. pcscd restarted), like a card that
// stays in a reader across a service restart.
func insert(t testing.TB, addr string, h cardreader.CardHandler, reinsert bool) *vcard {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &vcard{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			c.err = vpcd.Serve(ctx, addr, h, nil)
			if !reinsert || ctx.Err() != nil {
				return
			}
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *vcard) stop() {
	c.cancel()
	<-c.done
}

// events collects what Run emits.
type events struct {
	ch     chan cardreader.Event
	cancel context.CancelFunc
	done   chan error
}

func run(t testing.TB, d *pcsc.Driver) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &events{ch: make(chan cardreader.Event, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- d.Run(ctx, func(ev cardreader.Event) { e.ch <- ev }) }()
	t.Cleanup(func() { e.stop(t) })
	return e
}

var stopOnce sync.Map

func (e *events) stop(t testing.TB) {
	if _, loaded := stopOnce.LoadOrStore(e, true); loaded {
		return
	}
	e.cancel()
	select {
	case err := <-e.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Run did not return within 5s of cancel")
	}
}

// wait returns the first event matching kind and reader ("" = any), failing
// after timeout. Events before it are returned too, for order checks.
func (e *events) wait(t testing.TB, kind cardreader.EventKind, reader string, timeout time.Duration) (cardreader.Event, []cardreader.Event) {
	t.Helper()
	var seen []cardreader.Event
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-e.ch:
			seen = append(seen, ev)
			if ev.Kind == kind && (reader == "" || ev.Reader == reader) {
				return ev, seen
			}
		case <-deadline:
			t.Fatalf("no %v for %q within %v; saw %v", kind, reader, timeout, kinds(seen))
		}
	}
}

func kinds(evs []cardreader.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Kind.String()+"("+ev.Reader+")")
	}
	return out
}

// checkGoroutines fails if the goroutine count does not return to base.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutine leak: %d running, %d before\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stallCard wraps a handler: INS 0x77 blocks until release is closed, INS
// 0x71 answers with a single byte (a broken card), everything else passes.
type stallCard struct {
	cardreader.CardHandler
	release chan struct{}
	entered chan struct{}
}

func newStallCard(h cardreader.CardHandler) *stallCard {
	return &stallCard{CardHandler: h, release: make(chan struct{}), entered: make(chan struct{}, 16)}
}

func (s *stallCard) Process(capdu []byte) []byte {
	if len(capdu) >= 4 {
		switch capdu[1] {
		case 0x77:
			s.entered <- struct{}{}
			<-s.release
			return []byte{0x90, 0x00}
		case 0x71:
			return []byte{0x90}
		}
	}
	return s.CardHandler.Process(capdu)
}
