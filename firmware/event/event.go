// Package event is kioskd's single event stream. Drivers, the session and
// the hub client publish on one Bus; the screen, GPIO feedback and the hub
// subscribe to it. Publishing never blocks: a subscriber that falls behind
// loses events, and the loss is counted so it shows up in health.
package event

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one thing that happened on the kiosk.
type Event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Source string    `json:"source"` // "camera", "cardreader", "gpio", "hub", "session", ...
	Kind   string    `json:"kind"`   // dotted, e.g. "card.inserted", "gpio.input"
	// Data is a value owned by the publishing package (for example a
	// cardreader.Event). It must never hold biometric data or secrets.
	Data any `json:"data,omitempty"`
}

// Bus fans events out to subscribers. The zero value is not usable; use New.
type Bus struct {
	mu     sync.Mutex
	seq    uint64
	subs   map[*Subscription]struct{}
	now    func() time.Time
	closed bool
}

// New returns an empty bus. now may be nil (time.Now).
func New(now func() time.Time) *Bus {
	if now == nil {
		now = time.Now
	}
	return &Bus{subs: make(map[*Subscription]struct{}), now: now}
}

// Subscription receives events on C until it is closed.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	bus     *Bus
	dropped atomic.Uint64
	once    sync.Once
}

// Dropped reports how many events this subscriber missed because its
// buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close detaches the subscription and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		if _, ok := s.bus.subs[s]; ok {
			delete(s.bus.subs, s)
			close(s.c)
		}
		s.bus.mu.Unlock()
	})
}

// Subscribe returns a subscription with the given buffer size (at least 1).
// The subscription closes when ctx ends or Close is called.
func (b *Bus) Subscribe(ctx context.Context, buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, bus: b}
	b.mu.Lock()
	if b.closed {
		close(c)
		b.mu.Unlock()
		return s
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, s.Close)
		_ = stop
	}
	return s
}

// Publish stamps e with a sequence number and time (when unset) and hands
// it to every subscriber without blocking.
func (b *Bus) Publish(e Event) Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return e
	}
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
	return e
}

// Close closes every subscription; later publishes are ignored.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.c)
	}
}
