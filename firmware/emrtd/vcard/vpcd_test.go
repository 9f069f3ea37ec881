package vcard

import (
	"context"
	"errors"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/pace"
)

// TestThroughPCSCD serves the card to a real pcscd through vpcd and reads
// the document with the PC/SC backend, as `kioskctl eid emulate` and the
// kiosk do. pcscdtest skips under -short and fails if pcscd or vpcd is
// missing (`make deps`).
func TestThroughPCSCD(t *testing.T) {
	srv := pcscdtest.Start(t, 2)
	im, trust := issue(t, noiseJPEG(t, 20000), nil)
	c := newCard(t, im, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- vpcd.Serve(ctx, srv.VPCDAddr(0), c, nil) }()
	defer func() {
		cancel()
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("vpcd.Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("vpcd.Serve did not stop")
		}
	}()

	d := pcsc.New(pcsc.Options{})
	var card cardreader.Card
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		card, err = d.Connect(ctx, srv.ReaderName(0))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect: %v\npcscd log:\n%s", err, srv.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer card.Close()
	if string(card.ATR()) != string(c.ATR()) {
		t.Errorf("ATR through PC/SC % X, card's % X", card.ATR(), c.ATR())
	}
	ch := apdu.NewChannel(card, apdu.Options{Extended: true})
	establishPACE(t, ch, pace.CANPassword(testCAN))
	dgs, v := readDocument(t, ch, trust)
	if !v.Passed {
		t.Fatalf("passive authentication: %v", v.Err())
	}
	if len(dgs[2]) < 20000 {
		t.Fatalf("DG2 of %d bytes", len(dgs[2]))
	}
	t.Logf("through pcscd: %+v", ch.Stats())
}
