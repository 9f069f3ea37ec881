// Package pcsc is the real card reader backend: PC/SC through pcsc-lite
// (pcscd) with github.com/ebfe/scard.
//
// Concurrency model. pcsc-lite serialises all calls on one SCARDCONTEXT and
// holds that lock for the whole of a blocking SCardGetStatusChange, so Run
// uses a context of its own and every Card gets a private context too: a
// stalled APDU never freezes event monitoring, and monitoring never delays
// an APDU.
//
// Timeouts. SCardTransmit cannot be cancelled (SCardCancel only ends
// SCardGetStatusChange, and SCardDisconnect would wait for the same context
// lock). Transmit therefore runs the call in a goroutine owned by the Card;
// when the caller's deadline passes it returns ErrTimeout at once and marks
// the session dead. The goroutine finishes when the reader driver gives up
// or the card answers, then disconnects with SCARD_RESET_CARD (the card's
// state is unknown) and releases the context. Driver.Wait waits for such
// abandoned calls.
package pcsc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ebfe/scard"

	"kiosk/internal/backoff"

	"kiosk/drivers/cardreader"
)

// pnpReader is the pseudo reader whose state changes when readers are
// added or removed (PC/SC Part 5 / pcsc-lite "\\?PnP?\Notification").
const pnpReader = `\\?PnP?\Notification`

// Options configures a Driver. Zero values get the defaults noted.
type Options struct {
	Logger *slog.Logger
	// ReaderFilter keeps only readers whose name contains it ("" = all).
	ReaderFilter string
	// TransmitTimeout bounds one APDU exchange when the caller's context has
	// a later (or no) deadline. Default 30 s: long enough for on-card RSA key
	// generation, short enough to detect a hung reader.
	TransmitTimeout time.Duration
	// PollBackoffMin/Max bound the exponential backoff (with jitter) between
	// attempts to reach pcscd after it went away. Defaults 100 ms and 5 s.
	PollBackoffMin, PollBackoffMax time.Duration
	// ResetOnClose makes Card.Close reset the card (SCARD_RESET_CARD) instead
	// of leaving it powered with its selected application and security state.
	ResetOnClose bool
}

// Driver implements cardreader.Driver over PC/SC.
type Driver struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	running bool
	service bool
	detail  string
	readers map[string]*reader

	inflight sync.WaitGroup // abandoned Connect/Transmit calls, see package doc
}

type reader struct {
	present bool
	atr     []byte
	counter uint32 // pcsc-lite event counter (upper 16 bits of the state)
}

var _ cardreader.Driver = (*Driver)(nil)

// New returns a Driver; it does nothing until Run or Connect is called.
func New(opts Options) *Driver {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TransmitTimeout <= 0 {
		opts.TransmitTimeout = 30 * time.Second
	}
	if opts.PollBackoffMin <= 0 {
		opts.PollBackoffMin = 100 * time.Millisecond
	}
	if opts.PollBackoffMax < opts.PollBackoffMin {
		opts.PollBackoffMax = max(5*time.Second, opts.PollBackoffMin)
	}
	return &Driver{opts: opts, log: opts.Logger, readers: make(map[string]*reader), detail: "not running"}
}

// Wait blocks until every PC/SC call abandoned after a timeout has returned
// and its session has been torn down. For orderly shutdown and tests.
func (d *Driver) Wait() { d.inflight.Wait() }

// Status implements cardreader.Driver.
func (d *Driver) Status() cardreader.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := cardreader.Status{Service: d.service, Detail: d.detail}
	names := make([]string, 0, len(d.readers))
	for n := range d.readers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := d.readers[n]
		rs := cardreader.ReaderState{Name: n, CardPresent: r.present}
		if r.present {
			rs.ATR = slices.Clone(r.atr)
		}
		st.Readers = append(st.Readers, rs)
	}
	switch {
	case !d.running || !d.service:
		st.State = cardreader.StateDown
	case len(names) == 0:
		st.State = cardreader.StateDegraded
	default:
		st.State = cardreader.StateOK
	}
	return st
}

func (d *Driver) setService(up bool, detail string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.service, d.detail = up, detail
}

func (d *Driver) match(name string) bool {
	return name != pnpReader && strings.Contains(name, d.opts.ReaderFilter)
}

// Run implements cardreader.Driver. Only one Run may be active at a time.
func (d *Driver) Run(ctx context.Context, emit func(cardreader.Event)) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("pcsc: Run is already active")
	}
	d.running = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running, d.service, d.detail = false, false, "not running"
		clear(d.readers)
		d.mu.Unlock()
	}()

	wait := d.opts.PollBackoffMin
	up, everTried := false, false
	for {
		sc, err := scard.EstablishContext()
		if err != nil {
			if up || !everTried {
				d.serviceDown(emit, fmt.Errorf("establish PC/SC context: %w", err))
				up = false
			}
			everTried = true
			if !backoff.Sleep(ctx, backoff.Jitter(wait)) {
				return ctx.Err()
			}
			wait = min(wait*2, d.opts.PollBackoffMax)
			continue
		}
		everTried, up = true, true
		wait = d.opts.PollBackoffMin
		d.setService(true, "PC/SC service up")
		d.log.Info("PC/SC service up")
		emit(cardreader.Event{Kind: cardreader.ServiceUp, Time: time.Now()})

		err = d.watch(ctx, sc, emit)
		if rerr := sc.Release(); rerr != nil {
			d.log.Debug("release PC/SC context", "err", rerr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// pcscd went away (or the context broke): report, then re-establish.
		d.serviceDown(emit, err)
		up = false
		if !backoff.Sleep(ctx, backoff.Jitter(wait)) {
			return ctx.Err()
		}
	}
}

// serviceDown reports the loss of the service and, since nothing is known
// about readers and cards any more, their removal.
func (d *Driver) serviceDown(emit func(cardreader.Event), err error) {
	d.log.Warn("PC/SC service unavailable", "err", err)
	now := time.Now()
	d.setService(false, err.Error())
	emit(cardreader.Event{Kind: cardreader.ServiceDown, Time: now, Err: err.Error()})
	d.mu.Lock()
	names := make([]string, 0, len(d.readers))
	for n := range d.readers {
		names = append(names, n)
	}
	d.mu.Unlock()
	slices.Sort(names)
	for _, n := range names {
		d.dropReader(n, emit, now)
	}
}

func (d *Driver) dropReader(name string, emit func(cardreader.Event), now time.Time) {
	d.mu.Lock()
	r, ok := d.readers[name]
	delete(d.readers, name)
	d.mu.Unlock()
	if !ok {
		return
	}
	if r.present {
		emit(cardreader.Event{Kind: cardreader.CardRemoved, Reader: name, Time: now})
	}
	d.log.Info("reader removed", "reader", name)
	emit(cardreader.Event{Kind: cardreader.ReaderRemoved, Reader: name, Time: now})
}

// statusWait bounds each SCardGetStatusChange so that a cancellation racing
// with the call's start (SCardCancel only wakes a call already waiting)
// delays Run's return by at most this much.
const statusWait = 2 * time.Second

// watch follows reader and card state on sc until ctx ends (returns nil) or
// the PC/SC service fails (returns the error).
func (d *Driver) watch(ctx context.Context, sc *scard.Context, emit func(cardreader.Event)) error {
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cancelled)
		_ = sc.Cancel() // wakes the pending GetStatusChange
	})
	defer func() {
		if !stop() {
			<-cancelled // Cancel must not race with Release
		}
	}()

	states, err := d.syncReaders(sc, nil, emit)
	if err != nil {
		return err
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		err := sc.GetStatusChange(states, statusWait)
		switch {
		case err == nil:
		case errors.Is(err, scard.ErrTimeout):
			continue
		case errors.Is(err, scard.ErrCancelled):
			continue // ctx checked at the loop head
		case errors.Is(err, scard.ErrUnknownReader), errors.Is(err, scard.ErrReaderUnavailable):
			// A reader vanished between listing and waiting.
			if states, err = d.syncReaders(sc, states, emit); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("wait for reader state change: %w", err)
		}
		relist := false
		now := time.Now()
		for i := range states {
			st := &states[i]
			changed := st.EventState&scard.StateChanged != 0
			if st.Reader == pnpReader {
				relist = relist || changed
			} else if changed {
				if st.EventState&(scard.StateUnknown|scard.StateUnavailable|scard.StateIgnore) != 0 {
					relist = true
				} else {
					d.update(st.Reader, st.EventState, st.Atr, emit, now)
				}
			}
			// Feeding the event state back (counter included) makes the next
			// call block until something actually changes.
			st.CurrentState = st.EventState &^ scard.StateChanged
		}
		if relist {
			if states, err = d.syncReaders(sc, states, emit); err != nil {
				return err
			}
		}
	}
}

// syncReaders lists readers, reports added and removed ones, and returns the
// state array for GetStatusChange, keeping the known state of kept readers.
func (d *Driver) syncReaders(sc *scard.Context, old []scard.ReaderState, emit func(cardreader.Event)) ([]scard.ReaderState, error) {
	names, err := sc.ListReaders()
	if err != nil && !errors.Is(err, scard.ErrNoReadersAvailable) {
		return nil, fmt.Errorf("list readers: %w", err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !d.match(n) })
	now := time.Now()
	d.mu.Lock()
	var gone []string
	for n := range d.readers {
		if !slices.Contains(names, n) {
			gone = append(gone, n)
		}
	}
	d.mu.Unlock()
	slices.Sort(gone)
	for _, n := range gone {
		d.dropReader(n, emit, now)
	}
	states := make([]scard.ReaderState, 0, len(names)+1)
	for _, n := range names {
		st := scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware}
		for _, o := range old {
			if o.Reader == n {
				st.CurrentState = o.CurrentState
			}
		}
		states = append(states, st)
	}
	pnp := scard.ReaderState{Reader: pnpReader, CurrentState: scard.StateUnaware}
	for _, o := range old {
		if o.Reader == pnpReader {
			pnp.CurrentState = o.CurrentState
		}
	}
	return append(states, pnp), nil
}

// update applies one reader's new state and emits the differences.
func (d *Driver) update(name string, state scard.StateFlag, atr []byte, emit func(cardreader.Event), now time.Time) {
	// A mute card (no valid ATR) cannot be used: treat it as absent. The ATR
	// field is stale in the EMPTY state, so it is only read when present.
	present := state&scard.StatePresent != 0 && state&scard.StateMute == 0
	counter := uint32(state) >> 16
	if state&scard.StateMute != 0 {
		d.log.Warn("card does not answer (mute)", "reader", name)
	}
	d.mu.Lock()
	r, known := d.readers[name]
	if !known {
		r = &reader{}
		d.readers[name] = r
	}
	wasPresent, oldCounter := r.present, r.counter
	r.present, r.counter = present, counter
	if present {
		r.atr = slices.Clone(atr)
	} else {
		r.atr = nil
	}
	d.mu.Unlock()

	if !known {
		d.log.Info("reader added", "reader", name)
		emit(cardreader.Event{Kind: cardreader.ReaderAdded, Reader: name, Time: now})
	}
	// Same presence but a new event counter: the card was swapped between two polls.
	swapped := known && wasPresent && present && counter != oldCounter
	if wasPresent && (!present || swapped) {
		d.log.Info("card removed", "reader", name)
		emit(cardreader.Event{Kind: cardreader.CardRemoved, Reader: name, Time: now})
	}
	if present && (!wasPresent || swapped) {
		d.log.Info("card inserted", "reader", name, "atr", fmt.Sprintf("% X", atr))
		emit(cardreader.Event{Kind: cardreader.CardInserted, Reader: name, ATR: slices.Clone(atr), Time: now})
	}
}

// mapErr classifies a PC/SC error into the cardreader sentinels, keeping the
// original for logs: fmt "%w: %w" makes both errors.Is-visible.
func mapErr(op string, err error, removed error) error {
	var sentinel error
	switch {
	case errors.Is(err, scard.ErrNoService), errors.Is(err, scard.ErrServiceStopped), errors.Is(err, scard.ErrCommError):
		sentinel = cardreader.ErrServiceUnavailable
	case errors.Is(err, scard.ErrUnknownReader), errors.Is(err, scard.ErrReaderUnavailable), errors.Is(err, scard.ErrNoReadersAvailable):
		sentinel = cardreader.ErrNoReader
	case errors.Is(err, scard.ErrNoSmartcard), errors.Is(err, scard.ErrRemovedCard),
		errors.Is(err, scard.ErrResetCard), errors.Is(err, scard.ErrUnpoweredCard):
		sentinel = removed
	case errors.Is(err, scard.ErrSharingViolation):
		sentinel = cardreader.ErrReaderBusy
	case errors.Is(err, scard.ErrTimeout):
		sentinel = cardreader.ErrTimeout
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, sentinel, err)
}
