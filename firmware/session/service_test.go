package session

import (
	"context"
	"errors"
	"slices"
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
