package pcscdtest_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"kiosk/drivers/cardreader/cardtest"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
)

// TestServer checks the harness end to end: private pcscd, reader names,
// a Go card seen through libpcsclite, and Restart.
func TestServer(t *testing.T) {
	srv := pcscdtest.Start(t, 3)
	if srv.Slots() != 4 {
		t.Fatalf("Slots() = %d, want 4 (rounded up to even)", srv.Slots())
	}
	for i := 0; i < srv.Slots(); i++ {
		if !strings.HasPrefix(srv.ReaderName(i), pcscdtest.FriendlyName) {
			t.Errorf("reader %d = %q", i, srv.ReaderName(i))
		}
	}
	card := cardtest.New(nil)
	// Slot 1 (first vpcd entry), then slot 3 (second entry, own driver copy) after a restart.
	for round, slot := range []int{1, 3} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- vpcd.Serve(ctx, srv.VPCDAddr(slot), card, nil) }()
		atr := waitATR(t, srv, slot)
		if !bytes.Equal(atr, card.ATR()) {
			t.Errorf("round %d: ATR % X, want % X", round, atr, card.ATR())
		}
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
		if round == 0 {
			srv.Restart(t)
		}
	}
	srv.Stop()
	if !srv.Stopped() {
		t.Error("Stopped() = false after Stop")
	}
	srv.Stop() // idempotent
}

func waitATR(t *testing.T, srv *pcscdtest.Server, slot int) []byte {
	reader := srv.ReaderName(slot)
	t.Helper()
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := ctx.GetStatusChange(rs, 500*time.Millisecond); err != nil && err != scard.ErrTimeout {
			t.Fatal(err)
		}
		if rs[0].EventState&scard.StatePresent != 0 {
			return rs[0].Atr
		}
		rs[0].CurrentState = rs[0].EventState
	}
	t.Fatalf("no card in %q after 5s\n%s", reader, srv.Log())
	return nil
}
