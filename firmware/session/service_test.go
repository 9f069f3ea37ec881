package session

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"kiosk/firmware/emrtd"
)

func TestOutOfService(t *testing.T) {
	h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{hang: true}, Authorization{Approved: true})
	pay := Request{Kind: "payment", AmountMinor: 2350, Currency: "CNY"}

	// A running session is cancelled when the enclosure opens.
	h.pay(t, "")
	h.m.CardPresent(true)
	h.expect(t, AwaitPassword)
	h.m.SetOutOfService("tamper")
	if o := h.outcome(t); o.Approved || !slices.Contains(codes(o), "cancelled_out_of_service") || o.Reasons[0].Message != "msg.cancelled" {
		t.Fatalf("session not cancelled by tamper: %+v", o)
	}
	h.m.CardPresent(false)
	h.expect(t, Idle)

	if got := h.m.OutOfService(); got != "tamper" {
		t.Fatalf("OutOfService = %q", got)
	}
	if _, err := h.m.Start(context.Background(), pay); !errors.Is(err, ErrOutOfService) {
		t.Fatalf("start while out of service: %v", err)
	}
	h.m.SetOutOfService("")
	if got := h.m.OutOfService(); got != "" {
		t.Fatalf("back in service: OutOfService = %q", got)
	}
	if _, err := h.m.Start(context.Background(), pay); err != nil {
		t.Fatalf("start after service restored: %v", err)
	}
	h.expect(t, AwaitCard)
}

// A component the session needs is down (Ready answers why): the till's
// request is refused at once, with the reason; once it is back, sessions
// start again. A running session is not affected by Ready.
func TestNotReadyRefusesStart(t *testing.T) {
	var mu sync.Mutex
	why := "camera_down"
	h := newHarnessWith(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{hang: true}, Authorization{Approved: true},
		func(o *Options) {
			o.Ready = func() string { mu.Lock(); defer mu.Unlock(); return why }
		})
	pay := Request{Kind: "payment", AmountMinor: 2350, Currency: "CNY"}
	_, err := h.m.Start(context.Background(), pay)
	if !errors.Is(err, ErrOutOfService) || !strings.Contains(err.Error(), "camera_down") {
		t.Fatalf("start with the camera down: %v", err)
	}
	if st := h.m.Status(); st.State != Idle {
		t.Fatalf("state %s after a refused start", st.State)
	}
	mu.Lock()
	why = ""
	mu.Unlock()
	if _, err := h.m.Start(context.Background(), pay); err != nil {
		t.Fatalf("start with every component up: %v", err)
	}
	h.expect(t, AwaitCard)
	mu.Lock()
	why = "cardreader_down"
	mu.Unlock()
	// A second request while one runs is still "busy", not out of service.
	if _, err := h.m.Start(context.Background(), pay); !errors.Is(err, ErrBusy) {
		t.Fatalf("second start: %v, want ErrBusy", err)
	}
}
