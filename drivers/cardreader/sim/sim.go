// Package sim is an in-process simulated card reader: a cardreader.Driver
// whose card is a cardreader.CardHandler inserted and removed by the caller.
// It behaves like the pcsc backend (events, exclusive sessions, removal
// during a session, timeouts) without pcscd, for unit tests and the demo.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kiosk/drivers/cardreader"
)

// Reader is one simulated reader. The zero value is not usable; call New.
type Reader struct {
	name string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	handler cardreader.CardHandler // nil = slot empty
	atr     []byte
	removed chan struct{} // closed when the current card is removed
	session *card         // open exclusive session, if any
	subs    map[*subscriber]struct{}

	// inflight counts handler calls abandoned by a timed-out Transmit; they
	// end when the handler returns. Wait lets tests prove nothing leaks.
	inflight sync.WaitGroup
}

var _ cardreader.Driver = (*Reader)(nil)

// ErrAlreadyPresent is returned by Insert when the slot holds a card.
var ErrAlreadyPresent = errors.New("sim: a card is already inserted")

// New returns an empty simulated reader called readerName.
func New(readerName string, logger *slog.Logger) *Reader {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reader{
		name: readerName,
		log:  logger.With("reader", readerName),
		now:  time.Now,
		subs: make(map[*subscriber]struct{}),
	}
}

// subscriber is one Run call: events are queued under Reader.mu and
// delivered by Run's goroutine so Insert/Remove never wait for emit.
type subscriber struct {
	queue  []cardreader.Event
	notify chan struct{} // cap 1
}

func (r *Reader) publishLocked(ev cardreader.Event) {
	for s := range r.subs {
		s.queue = append(s.queue, ev)
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// Insert puts a card into the slot (power-on: h.Reset is called) and emits CardInserted.
func (r *Reader) Insert(h cardreader.CardHandler) error {
	if h == nil {
		return errors.New("sim: Insert(nil)")
	}
	atr := h.ATR()
	h.Reset()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handler != nil {
		return ErrAlreadyPresent
	}
	r.handler, r.atr, r.removed = h, append([]byte(nil), atr...), make(chan struct{})
	r.log.Debug("card inserted")
	r.publishLocked(cardreader.Event{Kind: cardreader.CardInserted, Reader: r.name, ATR: r.atr, Time: r.now()})
	return nil
}

// Remove pulls the card: an open session fails with ErrCardRemoved, also
// a Transmit in progress. It emits CardRemoved. Without a card: ErrNoCard.
func (r *Reader) Remove() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handler == nil {
		return cardreader.ErrNoCard
	}
	close(r.removed)
	r.handler, r.atr, r.removed, r.session = nil, nil, nil, nil
	r.log.Debug("card removed")
	r.publishLocked(cardreader.Event{Kind: cardreader.CardRemoved, Reader: r.name, Time: r.now()})
	return nil
}

// Present reports whether a card is inserted.
func (r *Reader) Present() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handler != nil
}

// Run implements cardreader.Driver. It first reports the current state
// (ReaderAdded, then CardInserted if a card is present), then every change,
// until ctx ends; it returns ctx.Err(). Several Run calls may be active.
func (r *Reader) Run(ctx context.Context, emit func(cardreader.Event)) error {
	s := &subscriber{notify: make(chan struct{}, 1)}
	r.mu.Lock()
	now := r.now()
	s.queue = append(s.queue, cardreader.Event{Kind: cardreader.ReaderAdded, Reader: r.name, Time: now})
	if r.handler != nil {
		s.queue = append(s.queue, cardreader.Event{Kind: cardreader.CardInserted, Reader: r.name, ATR: r.atr, Time: now})
	}
	s.notify <- struct{}{}
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.subs, s)
		r.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.notify:
		}
		r.mu.Lock()
		batch := s.queue
		s.queue = nil
		r.mu.Unlock()
		for _, ev := range batch {
			emit(ev)
		}
	}
}

// Status implements cardreader.Driver.
func (r *Reader) Status() cardreader.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := cardreader.ReaderState{Name: r.name, CardPresent: r.handler != nil}
	if rs.CardPresent {
		rs.ATR = append([]byte(nil), r.atr...)
	}
	return cardreader.Status{State: cardreader.StateOK, Detail: "simulated reader", Readers: []cardreader.ReaderState{rs}, Service: true}
}

// Connect implements cardreader.Driver with an exclusive session.
func (r *Reader) Connect(ctx context.Context, reader string) (cardreader.Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim connect: %w", err)
	}
	if reader != "" && reader != r.name {
		return nil, fmt.Errorf("sim connect %q: %w", reader, cardreader.ErrNoReader)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handler == nil {
		return nil, fmt.Errorf("sim connect %q: %w", r.name, cardreader.ErrNoCard)
	}
	if r.session != nil {
		return nil, fmt.Errorf("sim connect %q: %w", r.name, cardreader.ErrReaderBusy)
	}
	c := &card{r: r, h: r.handler, atr: append([]byte(nil), r.atr...), removed: r.removed}
	r.session = c
	return c, nil
}

// Wait blocks until handler calls abandoned by timed-out Transmits have returned.
func (r *Reader) Wait() { r.inflight.Wait() }

type card struct {
	r       *Reader
	h       cardreader.CardHandler
	atr     []byte
	removed <-chan struct{}

	xmit   sync.Mutex // one APDU at a time, like a real reader
	mu     sync.Mutex
	closed bool
	dead   error // non-nil once the session cannot be used any more
}

func (c *card) ATR() []byte    { return append([]byte(nil), c.atr...) }
func (c *card) Reader() string { return c.r.name }

func (c *card) state() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return cardreader.ErrClosed
	}
	if c.dead != nil {
		return c.dead
	}
	select {
	case <-c.removed:
		return cardreader.ErrCardRemoved
	default:
	}
	return nil
}

func (c *card) kill(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead == nil {
		c.dead = err
	}
}

// Transmit implements cardreader.Card.
func (c *card) Transmit(ctx context.Context, capdu []byte) ([]byte, error) {
	c.xmit.Lock()
	defer c.xmit.Unlock()
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("sim transmit: %w", err)
	}
	if err := cardreader.ValidateCommand(capdu); err != nil {
		return nil, fmt.Errorf("sim transmit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim transmit: %w: %w", cardreader.ErrTimeout, err)
	}
	res := make(chan []byte, 1)
	cmd := append([]byte(nil), capdu...)
	c.r.inflight.Add(1)
	go func() {
		defer c.r.inflight.Done()
		res <- safeProcess(c.h, cmd)
	}()
	select {
	case rapdu := <-res:
		// A removal racing with the answer wins: a real card pulled mid-APDU gives no answer.
		if err := c.state(); err != nil {
			return nil, fmt.Errorf("sim transmit: %w", err)
		}
		if len(rapdu) < 2 {
			return nil, fmt.Errorf("sim transmit: %d-byte response: %w", len(rapdu), cardreader.ErrShortResponse)
		}
		return rapdu, nil
	case <-c.removed:
		return nil, fmt.Errorf("sim transmit: %w", cardreader.ErrCardRemoved)
	case <-ctx.Done():
		// The card state after an unanswered APDU is unknown: the session is dead.
		c.kill(fmt.Errorf("session aborted after timeout: %w", cardreader.ErrClosed))
		return nil, fmt.Errorf("sim transmit: %w: %w", cardreader.ErrTimeout, ctx.Err())
	}
}

func safeProcess(h cardreader.CardHandler, capdu []byte) (rapdu []byte) {
	defer func() {
		if recover() != nil {
			rapdu = []byte{0x6F, 0x00}
		}
	}()
	return h.Process(capdu)
}

// Close implements cardreader.Card. It is idempotent.
func (c *card) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.r.mu.Lock()
	if c.r.session == c {
		c.r.session = nil
	}
	c.r.mu.Unlock()
	return nil
}
