package pcsc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ebfe/scard"

	"kiosk/internal/backoff"

	"kiosk/drivers/cardreader"
)

// removalGrace is how long a failed or short exchange waits for pcscd to
// notice a card removal (its reader polling period is ~400 ms) before the
// failure is reported as a protocol error rather than ErrCardRemoved.
const removalGrace = 600 * time.Millisecond

// Connect implements cardreader.Driver: an exclusive (SCARD_SHARE_EXCLUSIVE)
// session over T=0 or T=1, on a PC/SC context of its own.
func (d *Driver) Connect(ctx context.Context, name string) (cardreader.Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pcsc connect: %w: %w", cardreader.ErrTimeout, err)
	}
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, mapErr("pcsc connect: establish context", err, cardreader.ErrNoCard)
	}
	if name, err = d.pickReader(sc, name); err != nil {
		_ = sc.Release()
		return nil, err
	}

	type result struct {
		h   *scard.Card
		err error
	}
	res := make(chan result, 1)
	abandoned := make(chan struct{})
	d.inflight.Add(1)
	go func() {
		defer d.inflight.Done()
		h, err := sc.Connect(name, scard.ShareExclusive, scard.ProtocolT0|scard.ProtocolT1)
		select {
		case res <- result{h, err}:
		case <-abandoned:
			// The caller gave up; undo the connection nobody will use.
			if err == nil {
				_ = h.Disconnect(scard.ResetCard)
			}
			_ = sc.Release()
		}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		close(abandoned)
		// The goroutine may have sent just before: then clean up here.
		select {
		case r = <-res:
			if r.err == nil {
				_ = r.h.Disconnect(scard.ResetCard)
			}
			_ = sc.Release()
		default:
		}
		return nil, fmt.Errorf("pcsc connect %q: %w: %w", name, cardreader.ErrTimeout, ctx.Err())
	}
	if r.err != nil {
		_ = sc.Release()
		return nil, mapErr(fmt.Sprintf("pcsc connect %q", name), r.err, cardreader.ErrNoCard)
	}
	st, err := r.h.Status()
	if err != nil {
		_ = r.h.Disconnect(scard.LeaveCard)
		_ = sc.Release()
		return nil, mapErr(fmt.Sprintf("pcsc card status %q", name), err, cardreader.ErrCardRemoved)
	}
	d.log.Debug("card session opened", "reader", name, "protocol", r.h.ActiveProtocol())
	return &card{d: d, sc: sc, h: r.h, reader: name, atr: slices.Clone(st.Atr)}, nil
}

// pickReader resolves "" to the first (filtered) reader holding a usable card
// and checks that a named reader exists.
func (d *Driver) pickReader(sc *scard.Context, name string) (string, error) {
	names, err := sc.ListReaders()
	if err != nil {
		return "", mapErr("pcsc connect: list readers", err, cardreader.ErrNoCard)
	}
	if name != "" {
		if !slices.Contains(names, name) {
			return "", fmt.Errorf("pcsc connect %q: %w", name, cardreader.ErrNoReader)
		}
		return name, nil
	}
	var states []scard.ReaderState
	for _, n := range names {
		if d.match(n) {
			states = append(states, scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware})
		}
	}
	if len(states) == 0 {
		return "", fmt.Errorf("pcsc connect: %w", cardreader.ErrNoReader)
	}
	if err := sc.GetStatusChange(states, 0); err != nil {
		return "", mapErr("pcsc connect: reader states", err, cardreader.ErrNoCard)
	}
	for _, st := range states {
		if st.EventState&scard.StatePresent != 0 && st.EventState&scard.StateMute == 0 {
			return st.Reader, nil
		}
	}
	return "", fmt.Errorf("pcsc connect: %w", cardreader.ErrNoCard)
}

// card is one exclusive session. Its handle and context are torn down
// exactly once: by Close, or — if a timed-out Transmit is still blocked in
// pcsc-lite — by that call's goroutine when it returns.
type card struct {
	d      *Driver
	sc     *scard.Context
	h      *scard.Card
	reader string
	atr    []byte

	xmit sync.Mutex // one APDU at a time

	mu       sync.Mutex
	closed   bool
	busy     bool  // a Transmit goroutine is inside pcsc-lite
	dead     error // why the session is unusable, nil while healthy
	teardown sync.Once
}

var _ cardreader.Card = (*card)(nil)

func (c *card) ATR() []byte    { return slices.Clone(c.atr) }
func (c *card) Reader() string { return c.reader }

func (c *card) usable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return cardreader.ErrClosed
	}
	return c.dead
}

// release disconnects and releases the context, once.
func (c *card) release(disp scard.Disposition) {
	c.teardown.Do(func() {
		if err := c.h.Disconnect(disp); err != nil {
			c.d.log.Debug("disconnect", "reader", c.reader, "err", err)
		}
		if err := c.sc.Release(); err != nil {
			c.d.log.Debug("release card context", "reader", c.reader, "err", err)
		}
	})
}

type xmitResult struct {
	rapdu []byte
	err   error
}

// Transmit implements cardreader.Card.
func (c *card) Transmit(ctx context.Context, capdu []byte) ([]byte, error) {
	c.xmit.Lock()
	defer c.xmit.Unlock()
	if err := c.usable(); err != nil {
		return nil, fmt.Errorf("pcsc transmit: %w", err)
	}
	if err := cardreader.ValidateCommand(capdu); err != nil {
		return nil, fmt.Errorf("pcsc transmit: %w", err)
	}
	tctx, cancel := context.WithTimeout(ctx, c.d.opts.TransmitTimeout)
	defer cancel()
	if err := tctx.Err(); err != nil {
		return nil, fmt.Errorf("pcsc transmit: %w: %w", cardreader.ErrTimeout, err)
	}

	res := make(chan xmitResult, 1)
	cmd := slices.Clone(capdu)
	c.mu.Lock()
	c.busy = true
	c.mu.Unlock()
	c.d.inflight.Add(1)
	go func() {
		defer c.d.inflight.Done()
		rapdu, err := c.h.Transmit(cmd)
		c.mu.Lock()
		c.busy = false
		orphan := c.closed
		c.mu.Unlock()
		if orphan {
			// Close ran while we were blocked and left the teardown to us;
			// the card's state after the abandoned APDU is unknown.
			c.release(scard.ResetCard)
		}
		res <- xmitResult{rapdu, err} // buffered: never blocks
	}()

	var r xmitResult
	select {
	case r = <-res:
	case <-tctx.Done():
		c.kill(fmt.Errorf("session aborted after a timed-out APDU: %w", cardreader.ErrClosed))
		c.d.log.Warn("APDU timed out; session abandoned", "reader", c.reader, "ins", fmt.Sprintf("%02X", capdu[1]))
		return nil, fmt.Errorf("pcsc transmit: %w: %w", cardreader.ErrTimeout, tctx.Err())
	}
	if r.err != nil {
		err := mapErr("pcsc transmit", r.err, cardreader.ErrCardRemoved)
		if !errors.Is(err, cardreader.ErrCardRemoved) && c.cardGone(ctx) {
			err = fmt.Errorf("pcsc transmit: %w: %w", cardreader.ErrCardRemoved, r.err)
		}
		if errors.Is(err, cardreader.ErrCardRemoved) || errors.Is(err, cardreader.ErrServiceUnavailable) {
			c.kill(err)
		}
		return nil, err
	}
	if len(r.rapdu) < 2 {
		// vpcd (and some readers) report a card that vanished mid-APDU as an
		// empty response with no error.
		if c.cardGone(ctx) {
			err := fmt.Errorf("pcsc transmit: %d-byte response: %w", len(r.rapdu), cardreader.ErrCardRemoved)
			c.kill(err)
			return nil, err
		}
		return nil, fmt.Errorf("pcsc transmit: %d-byte response % X: %w", len(r.rapdu), r.rapdu, cardreader.ErrShortResponse)
	}
	return r.rapdu, nil
}

// kill marks the session dead (first reason wins).
func (c *card) kill(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead == nil {
		c.dead = err
	}
}

// cardGone reports whether the card left the reader, waiting up to
// removalGrace for pcscd to notice.
func (c *card) cardGone(ctx context.Context) bool {
	deadline := time.Now().Add(removalGrace)
	for {
		st, err := c.h.Status()
		switch {
		case err != nil:
			return errors.Is(err, scard.ErrRemovedCard) || errors.Is(err, scard.ErrNoSmartcard) ||
				errors.Is(err, scard.ErrResetCard) || errors.Is(err, scard.ErrReaderUnavailable)
		case st.State&scard.Present == 0:
			return true
		}
		if time.Now().After(deadline) || !backoff.Sleep(ctx, 50*time.Millisecond) {
			return false
		}
	}
}

// Close implements cardreader.Card: SCARD_LEAVE_CARD (or SCARD_RESET_CARD with
// Options.ResetOnClose, or after a timeout left the card in an unknown state).
func (c *card) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	busy, dead := c.busy, c.dead
	if busy && c.dead == nil {
		// Cannot happen through Transmit (it holds xmit while busy unless it
		// timed out, which sets dead); keep the invariant for the goroutine.
		c.dead = cardreader.ErrClosed
	}
	c.mu.Unlock()
	if busy {
		c.d.log.Debug("close with an APDU still blocked in pcsc-lite; teardown deferred", "reader", c.reader)
		return nil
	}
	disp := scard.LeaveCard
	if c.d.opts.ResetOnClose || dead != nil {
		disp = scard.ResetCard
	}
	c.release(disp)
	return nil
}
