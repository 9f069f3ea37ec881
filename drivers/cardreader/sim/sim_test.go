package sim_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/cardtest"
	"kiosk/drivers/cardreader/sim"
)

const name = "Sim Reader 0"

type stallCard struct {
	*cardtest.Card
	release chan struct{}
	entered chan struct{}
}

func (s *stallCard) Process(capdu []byte) []byte {
	if len(capdu) >= 2 && capdu[1] == 0x77 {
		s.entered <- struct{}{}
		<-s.release
		return []byte{0x90, 0x00}
	}
	if len(capdu) >= 2 && capdu[1] == 0x71 {
		return []byte{0x90}
	}
	return s.Card.Process(capdu)
}

func newStall() *stallCard {
	return &stallCard{Card: cardtest.New(map[uint16][]byte{0x0101: []byte("0123456789")}),
		release: make(chan struct{}), entered: make(chan struct{}, 4)}
}

func start(t *testing.T, r *sim.Reader) (chan cardreader.Event, func()) {
	t.Helper()
	ch := make(chan cardreader.Event, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, func(e cardreader.Event) { ch <- e }) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	return ch, stop
}

func next(t *testing.T, ch chan cardreader.Event, kind cardreader.EventKind) cardreader.Event {
	t.Helper()
	select {
	case e := <-ch:
		if e.Kind != kind || e.Reader != name {
			t.Fatalf("event %v(%q), want %v(%q)", e.Kind, e.Reader, kind, name)
		}
		return e
	case <-time.After(2 * time.Second):
		t.Fatalf("no %v event", kind)
	}
	return cardreader.Event{}
}

func TestEvents(t *testing.T) {
	base := runtime.NumGoroutine()
	r := sim.New(name, nil)
	ch, stop := start(t, r)
	next(t, ch, cardreader.ReaderAdded)
	h := newStall()
	if err := r.Insert(h); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch, cardreader.CardInserted); !bytes.Equal(e.ATR, h.ATR()) {
		t.Errorf("ATR % X", e.ATR)
	}
	if err := r.Insert(h); !errors.Is(err, sim.ErrAlreadyPresent) {
		t.Errorf("double Insert = %v", err)
	}
	st := r.Status()
	if st.State != cardreader.StateOK || len(st.Readers) != 1 || !st.Readers[0].CardPresent || !r.Present() {
		t.Errorf("Status = %+v", st)
	}
	// A second Run sees the current state first.
	ch2, stop2 := start(t, r)
	next(t, ch2, cardreader.ReaderAdded)
	next(t, ch2, cardreader.CardInserted)
	stop2()
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	next(t, ch, cardreader.CardRemoved)
	if err := r.Remove(); !errors.Is(err, cardreader.ErrNoCard) {
		t.Errorf("Remove on empty = %v", err)
	}
	if st := r.Status(); st.Readers[0].CardPresent || st.Readers[0].ATR != nil {
		t.Errorf("Status after remove = %+v", st)
	}
	stop()
	if err := r.Insert(h); err != nil { // no Run active: must not block
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines: %d, before %d", n, base)
	}
}

func TestTransmit(t *testing.T) {
	r := sim.New(name, nil)
	ctx := context.Background()
	if _, err := r.Connect(ctx, ""); !errors.Is(err, cardreader.ErrNoCard) {
		t.Errorf("Connect empty = %v", err)
	}
	if _, err := r.Connect(ctx, "other"); !errors.Is(err, cardreader.ErrNoReader) {
		t.Errorf("Connect other = %v", err)
	}
	h := newStall()
	_ = r.Insert(h)
	c, err := r.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Connect(ctx, name); !errors.Is(err, cardreader.ErrReaderBusy) {
		t.Errorf("second Connect = %v", err)
	}
	if c.Reader() != name || !bytes.Equal(c.ATR(), h.ATR()) {
		t.Errorf("session %q % X", c.Reader(), c.ATR())
	}
	steps := []struct {
		capdu []byte
		want  []byte
	}{
		{cardtest.SelectEF(0x0101), []byte{0x90, 0x00}},
		{cardtest.ReadBinary(2, 3), []byte{'2', '3', '4', 0x90, 0x00}},
		{cardtest.Echo(4464), append(cardtest.Pattern(4464), 0x90, 0x00)},
		{cardtest.Echo(65536), append(cardtest.Pattern(65536), 0x90, 0x00)},
	}
	for _, s := range steps {
		got, err := c.Transmit(ctx, s.capdu)
		if err != nil || !bytes.Equal(got, s.want) {
			t.Errorf("Transmit(% X) = %d bytes, %v", s.capdu[:4], len(got), err)
		}
	}
	if _, err := c.Transmit(ctx, []byte{0, 0xB0}); !errors.Is(err, cardreader.ErrMalformedCommand) {
		t.Errorf("malformed: %v", err)
	}
	if _, err := c.Transmit(ctx, []byte{0, 0x71, 0, 0}); !errors.Is(err, cardreader.ErrShortResponse) {
		t.Errorf("short response: %v", err)
	}
	_ = c.Close()
	if _, err := c.Transmit(ctx, cardtest.SelectEF(0x0101)); !errors.Is(err, cardreader.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	c, err = r.Connect(ctx, name)
	if err != nil {
		t.Fatalf("Connect after Close: %v", err)
	}

	// Timeout: the session dies, the abandoned handler call ends when the card answers.
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.Transmit(tctx, []byte{0, 0x77, 0, 0}); !errors.Is(err, cardreader.ErrTimeout) {
		t.Errorf("stalled: %v", err)
	}
	if _, err := c.Transmit(ctx, cardtest.SelectEF(0x0101)); !errors.Is(err, cardreader.ErrClosed) {
		t.Errorf("after timeout: %v", err)
	}
	close(h.release)
	r.Wait()
	_ = c.Close()
}

func TestRemoveMidSession(t *testing.T) {
	r := sim.New(name, nil)
	ctx := context.Background()
	h := newStall()
	_ = r.Insert(h)
	c, err := r.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Transmit(ctx, []byte{0, 0x77, 0, 0})
		errc <- err
	}()
	<-h.entered
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, cardreader.ErrCardRemoved) {
		t.Errorf("in-flight Transmit = %v, want ErrCardRemoved", err)
	}
	if _, err := c.Transmit(ctx, cardtest.SelectEF(0x0101)); !errors.Is(err, cardreader.ErrCardRemoved) {
		t.Errorf("Transmit after removal = %v", err)
	}
	close(h.release)
	r.Wait()
	// Re-insert: a new session works, the old one stays dead.
	_ = r.Insert(h)
	c2, err := r.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c2.Transmit(ctx, cardtest.SelectEF(0x0101)); err != nil || !bytes.Equal(got, []byte{0x90, 0x00}) {
		t.Errorf("new session: % X %v", got, err)
	}
	if _, err := c.Transmit(ctx, cardtest.SelectEF(0x0101)); !errors.Is(err, cardreader.ErrCardRemoved) {
		t.Errorf("old session after re-insert = %v", err)
	}
	_ = c.Close() // must not end c2's session
	if _, err := r.Connect(ctx, ""); !errors.Is(err, cardreader.ErrReaderBusy) {
		t.Errorf("closing the dead session freed the reader: %v", err)
	}
	_ = c2.Close()
}
