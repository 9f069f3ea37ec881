package pcsc_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"slices"
	"sort"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/cardtest"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
)

const eventTimeout = 5 * time.Second

var testFile = bytes.Repeat([]byte("kiosk-eid-"), 300) // 3000 bytes

func newCard() *cardtest.Card { return cardtest.New(map[uint16][]byte{0x0101: testFile}) }

func TestEventsAndStatus(t *testing.T) {
	srv := pcscdtest.Start(t, 2)
	base := runtime.NumGoroutine()
	d := pcsc.New(pcsc.Options{})
	if st := d.Status(); st.State != cardreader.StateDown || st.Service {
		t.Errorf("Status before Run = %+v, want down", st)
	}
	ev := run(t, d)
	ev.wait(t, cardreader.ServiceUp, "", eventTimeout)
	added := map[string]bool{}
	for len(added) < 2 {
		e, _ := ev.wait(t, cardreader.ReaderAdded, "", eventTimeout)
		added[e.Reader] = true
	}
	r0, r1 := srv.ReaderName(0), srv.ReaderName(1)
	if !added[r0] || !added[r1] {
		t.Fatalf("ReaderAdded for %v, want %q and %q", added, r0, r1)
	}
	st := d.Status()
	if st.State != cardreader.StateOK || !st.Service || len(st.Readers) != 2 {
		t.Fatalf("Status = %+v, want ok with 2 readers", st)
	}

	h := newCard()
	card := insert(t, srv.VPCDAddr(1), h, false)
	e, seen := ev.wait(t, cardreader.CardInserted, "", eventTimeout)
	if e.Reader != r1 || !bytes.Equal(e.ATR, h.ATR()) || e.Time.IsZero() {
		t.Fatalf("CardInserted = %+v (after %v), want reader %q ATR % X", e, kinds(seen), r1, h.ATR())
	}
	st = d.Status()
	i := slices.IndexFunc(st.Readers, func(r cardreader.ReaderState) bool { return r.Name == r1 })
	if i < 0 || !st.Readers[i].CardPresent || !bytes.Equal(st.Readers[i].ATR, h.ATR()) {
		t.Fatalf("Status after insert = %+v", st)
	}

	card.stop()
	e, seen = ev.wait(t, cardreader.CardRemoved, r1, eventTimeout)
	if slices.ContainsFunc(seen[:len(seen)-1], func(x cardreader.Event) bool { return x.Kind != cardreader.CardRemoved }) {
		t.Errorf("unexpected events before removal: %v", kinds(seen))
	}
	// The ATR is stale in pcsc-lite's EMPTY state: it must not be reported.
	for _, r := range d.Status().Readers {
		if r.CardPresent || r.ATR != nil {
			t.Errorf("reader %q after removal: present=%v ATR % X", r.Name, r.CardPresent, r.ATR)
		}
	}

	// Insert and remove again: the event stream keeps working.
	card = insert(t, srv.VPCDAddr(0), h, false)
	ev.wait(t, cardreader.CardInserted, r0, eventTimeout)
	card.stop()
	ev.wait(t, cardreader.CardRemoved, r0, eventTimeout)

	ev.stop(t)
	if st := d.Status(); st.State != cardreader.StateDown {
		t.Errorf("Status after Run returned = %+v, want down", st)
	}
	checkGoroutines(t, base)
}

func TestReaderFilter(t *testing.T) {
	srv := pcscdtest.Start(t, 4)
	d := pcsc.New(pcsc.Options{ReaderFilter: "VPCD 1 "})
	ev := run(t, d)
	ev.wait(t, cardreader.ServiceUp, "", eventTimeout)
	var names []string
	for len(names) < 2 {
		e, _ := ev.wait(t, cardreader.ReaderAdded, "", eventTimeout)
		names = append(names, e.Reader)
	}
	sort.Strings(names)
	if want := []string{srv.ReaderName(2), srv.ReaderName(3)}; !slices.Equal(names, want) {
		t.Fatalf("filtered readers %q, want %q", names, want)
	}
	// A card in a filtered-out reader is neither reported nor picked by Connect("").
	insert(t, srv.VPCDAddr(0), newCard(), false)
	time.Sleep(time.Second)
	select {
	case e := <-ev.ch:
		t.Fatalf("event for a filtered reader: %+v", e)
	default:
	}
	if _, err := d.Connect(context.Background(), ""); !errors.Is(err, cardreader.ErrNoCard) {
		t.Fatalf("Connect(\"\") = %v, want ErrNoCard", err)
	}
	insert(t, srv.VPCDAddr(3), newCard(), false)
	ev.wait(t, cardreader.CardInserted, srv.ReaderName(3), eventTimeout)
	c, err := d.Connect(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Reader() != srv.ReaderName(3) {
		t.Errorf("Connect(\"\") picked %q", c.Reader())
	}
}

// connected starts pcscd, inserts h in slot 0 and waits until it is seen.
func connected(t *testing.T, h cardreader.CardHandler, opts pcsc.Options) (*pcscdtest.Server, *pcsc.Driver, *vcard) {
	t.Helper()
	srv := pcscdtest.Start(t, 2)
	d := pcsc.New(opts)
	ev := run(t, d)
	vc := insert(t, srv.VPCDAddr(0), h, false)
	ev.wait(t, cardreader.CardInserted, srv.ReaderName(0), eventTimeout)
	return srv, d, vc
}

func transmitOK(t *testing.T, c cardreader.Card, capdu []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Transmit(ctx, capdu)
	if err != nil {
		t.Fatalf("Transmit(% X...): %v", head(capdu), err)
	}
	if len(r) < 2 || r[len(r)-2] != 0x90 || r[len(r)-1] != 0x00 {
		t.Fatalf("Transmit(% X...): SW % X", head(capdu), r[max(0, len(r)-2):])
	}
	return r[:len(r)-2]
}

func head(b []byte) []byte { return b[:min(len(b), 12)] }

func TestTransmitShortAndExtended(t *testing.T) {
	h := newCard()
	srv, d, _ := connected(t, h, pcsc.Options{})
	ctx := context.Background()

	if _, err := d.Connect(ctx, "no such reader"); !errors.Is(err, cardreader.ErrNoReader) {
		t.Errorf("Connect(unknown) = %v, want ErrNoReader", err)
	}
	if _, err := d.Connect(ctx, srv.ReaderName(1)); !errors.Is(err, cardreader.ErrNoCard) {
		t.Errorf("Connect(empty reader) = %v, want ErrNoCard", err)
	}
	c, err := d.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Reader() != srv.ReaderName(0) || !bytes.Equal(c.ATR(), h.ATR()) {
		t.Fatalf("session reader %q ATR % X", c.Reader(), c.ATR())
	}
	if _, err := d.Connect(ctx, srv.ReaderName(0)); !errors.Is(err, cardreader.ErrReaderBusy) {
		t.Errorf("second exclusive Connect = %v, want ErrReaderBusy", err)
	}

	transmitOK(t, c, cardtest.SelectEF(0x0101))
	if got := transmitOK(t, c, cardtest.ReadBinary(0, 200)); !bytes.Equal(got, testFile[:200]) {
		t.Errorf("short READ BINARY: % X...", head(got))
	}
	tests := []struct {
		name  string
		capdu []byte
		want  []byte
	}{
		{"READ BINARY Le=256 (short, 00)", cardtest.ReadBinary(100, 256), testFile[100:356]},
		{"READ BINARY extended 3000", cardtest.ReadBinary(0, 3000), testFile},
		{"ECHO extended response 1000", cardtest.Echo(1000), cardtest.Pattern(1000)},
		// 65533 + SW is the most a vpcd frame (2-byte length) can carry;
		// PC/SC itself (MAX_BUFFER_SIZE_EXTENDED) would allow 65536 + SW.
		{"ECHO extended response 65533", cardtest.Echo(65533), cardtest.Pattern(65533)},
		{"ECHO extended command 4000", cardtest.EchoData(cardtest.Pattern(4000)), cardtest.Pattern(4000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transmitOK(t, c, tt.capdu); !bytes.Equal(got, tt.want) {
				t.Errorf("got %d bytes % X..., want %d bytes", len(got), head(got), len(tt.want))
			}
		})
	}
	r, err := c.Transmit(ctx, []byte{0x00, 0xB0, 0x00})
	if !errors.Is(err, cardreader.ErrMalformedCommand) {
		t.Errorf("malformed command: %v, %X", err, r)
	}
	// Card-level errors are R-APDUs, not Go errors.
	r, err = c.Transmit(ctx, cardtest.SelectEF(0x0BAD))
	if err != nil || !bytes.Equal(r, []byte{0x6A, 0x82}) {
		t.Errorf("SELECT missing file: % X, %v", r, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Transmit(ctx, cardtest.SelectEF(0x0101)); !errors.Is(err, cardreader.ErrClosed) {
		t.Errorf("Transmit after Close = %v, want ErrClosed", err)
	}
	// Closing released the exclusive lock.
	c2, err := d.Connect(ctx, srv.ReaderName(0))
	if err != nil {
		t.Fatalf("Connect after Close: %v", err)
	}
	transmitOK(t, c2, cardtest.GetChallenge(8))
	c2.Close()
}

func TestTransmitTimeout(t *testing.T) {
	h := newStallCard(newCard())
	_, d, _ := connected(t, h, pcsc.Options{})
	base := runtime.NumGoroutine()
	c, err := d.Connect(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	transmitOK(t, c, cardtest.SelectEF(0x0101))

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Transmit(ctx, []byte{0x00, 0x77, 0x00, 0x00})
	if !errors.Is(err, cardreader.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled Transmit = %v, want ErrTimeout", err)
	}
	// The card holds the APDU until the test ends, so returning at all
	// proves the deadline cut it short; the bound only catches a wait on
	// something else (how fast is not a test's business: a loaded CI
	// machine took 1.3 s for the 300 ms deadline).
	t.Logf("stalled: %v after %v", err, time.Since(start))
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("timeout took %v", el)
	}
	select {
	case <-h.entered:
	default:
		t.Error("the stalled APDU never reached the card")
	}
	if _, err := c.Transmit(context.Background(), cardtest.SelectEF(0x0101)); !errors.Is(err, cardreader.ErrClosed) {
		t.Errorf("Transmit on a timed-out session = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// The card answers late; the abandoned call then tears the session down.
	close(h.release)
	waited := make(chan struct{})
	go func() { d.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("abandoned transmit never finished")
	}
	checkGoroutines(t, base)
	// And the reader is usable again.
	c2, err := d.Connect(context.Background(), "")
	if err != nil {
		t.Fatalf("Connect after abandoned session: %v", err)
	}
	defer c2.Close()
	transmitOK(t, c2, cardtest.SelectEF(0x0101))
}

func TestTransmitTimeoutOption(t *testing.T) {
	h := newStallCard(newCard())
	_, d, _ := connected(t, h, pcsc.Options{TransmitTimeout: 200 * time.Millisecond})
	c, err := d.Connect(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer close(h.release)
	if _, err := c.Transmit(context.Background(), []byte{0x00, 0x77, 0x00, 0x00}); !errors.Is(err, cardreader.ErrTimeout) {
		t.Fatalf("Transmit = %v, want ErrTimeout from Options.TransmitTimeout", err)
	}
}

func TestShortResponse(t *testing.T) {
	h := newStallCard(newCard())
	_, d, _ := connected(t, h, pcsc.Options{})
	c, err := d.Connect(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Transmit(context.Background(), []byte{0x00, 0x71, 0x00, 0x00})
	if !errors.Is(err, cardreader.ErrShortResponse) {
		t.Fatalf("1-byte response: %v, want ErrShortResponse", err)
	}
	t.Logf("1-byte response: %v", err)
	transmitOK(t, c, cardtest.SelectEF(0x0101))
}

func TestCardRemovedMidSession(t *testing.T) {
	t.Run("between APDUs", func(t *testing.T) {
		_, d, vc := connected(t, newCard(), pcsc.Options{})
		c, err := d.Connect(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		transmitOK(t, c, cardtest.SelectEF(0x0101))
		vc.stop()
		time.Sleep(200 * time.Millisecond)
		_, err = c.Transmit(context.Background(), cardtest.ReadBinary(0, 16))
		if !errors.Is(err, cardreader.ErrCardRemoved) {
			t.Fatalf("Transmit after removal = %v, want ErrCardRemoved", err)
		}
		t.Logf("after removal: %v", err)
		if _, err := c.Transmit(context.Background(), cardtest.ReadBinary(0, 16)); !errors.Is(err, cardreader.ErrCardRemoved) {
			t.Errorf("second Transmit after removal = %v, want ErrCardRemoved", err)
		}
	})
	t.Run("during an APDU", func(t *testing.T) {
		h := newStallCard(newCard())
		_, d, vc := connected(t, h, pcsc.Options{})
		c, err := d.Connect(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		errc := make(chan error, 1)
		go func() {
			_, err := c.Transmit(context.Background(), []byte{0x00, 0x77, 0x00, 0x00})
			errc <- err
		}()
		<-h.entered
		// Pull the card: the socket closes while the card is still "thinking";
		// the handler is released only after Transmit has returned.
		vc.cancel()
		defer close(h.release)
		select {
		case err := <-errc:
			if !errors.Is(err, cardreader.ErrCardRemoved) {
				t.Fatalf("Transmit while pulled = %v, want ErrCardRemoved", err)
			}
			t.Logf("pulled mid-APDU: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("Transmit did not return after the card was pulled")
		}
	})
}

func TestServiceRestart(t *testing.T) {
	srv := pcscdtest.Start(t, 2)
	base := runtime.NumGoroutine()
	d := pcsc.New(pcsc.Options{PollBackoffMin: 50 * time.Millisecond, PollBackoffMax: 500 * time.Millisecond})
	ev := run(t, d)
	vc := insert(t, srv.VPCDAddr(0), newCard(), true)
	ev.wait(t, cardreader.CardInserted, srv.ReaderName(0), eventTimeout)

	srv.Restart(t)
	down, _ := ev.wait(t, cardreader.ServiceDown, "", 10*time.Second)
	if down.Err == "" {
		t.Error("ServiceDown without a reason")
	}
	_, seen := ev.wait(t, cardreader.ServiceUp, "", 15*time.Second)
	t.Logf("ServiceDown(%s), then %v", down.Err, kinds(seen))
	if !slices.ContainsFunc(seen, func(e cardreader.Event) bool {
		return e.Kind == cardreader.CardRemoved && e.Reader == srv.ReaderName(0)
	}) {
		t.Errorf("no CardRemoved between ServiceDown and ServiceUp: %v", kinds(seen))
	}
	ev.wait(t, cardreader.CardInserted, srv.ReaderName(0), 10*time.Second)
	if st := d.Status(); st.State != cardreader.StateOK || !st.Service {
		t.Errorf("Status after recovery = %+v", st)
	}
	c, err := d.Connect(context.Background(), "")
	if err != nil {
		t.Fatalf("Connect after restart: %v", err)
	}
	transmitOK(t, c, cardtest.SelectEF(0x0101))
	c.Close()

	// Service gone for good: Status reports it, Run keeps retrying.
	srv.Stop()
	ev.wait(t, cardreader.ServiceDown, "", 10*time.Second)
	if st := d.Status(); st.State != cardreader.StateDown || st.Service {
		t.Errorf("Status with pcscd stopped = %+v", st)
	}
	vc.stop()
	ev.stop(t)
	d.Wait()
	checkGoroutines(t, base)
}
