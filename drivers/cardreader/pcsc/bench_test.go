package pcsc_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/cardtest"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
)

// BenchmarkCardInsertToEvent measures the time from a Go card dialling the
// vpcd slot until Driver.Run emits CardInserted: vpcd's and pcscd's polling
// (~400 ms) dominate. Reports the median as ms/insert.
func BenchmarkCardInsertToEvent(b *testing.B) {
	srv := pcscdtest.Start(b, 2)
	d := pcsc.New(pcsc.Options{})
	ev := run(b, d)
	ev.wait(b, cardreader.ReaderAdded, srv.ReaderName(0), eventTimeout)
	h := cardtest.New(nil)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		c := insert(b, srv.VPCDAddr(0), h, false)
		ev.wait(b, cardreader.CardInserted, srv.ReaderName(0), eventTimeout)
		lat = append(lat, time.Since(start))
		b.StopTimer()
		c.stop()
		ev.wait(b, cardreader.CardRemoved, srv.ReaderName(0), eventTimeout)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "ms/insert")
}

// BenchmarkTransmit measures one short APDU round trip (GET CHALLENGE, 8
// bytes) through libpcsclite, pcscd, vpcd and the Go card.
func BenchmarkTransmit(b *testing.B) {
	srv := pcscdtest.Start(b, 2)
	d := pcsc.New(pcsc.Options{})
	ev := run(b, d)
	insert(b, srv.VPCDAddr(0), cardtest.New(nil), false)
	ev.wait(b, cardreader.CardInserted, srv.ReaderName(0), eventTimeout)
	c, err := d.Connect(context.Background(), srv.ReaderName(0))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	capdu := cardtest.GetChallenge(8)
	for b.Loop() {
		r, err := c.Transmit(ctx, capdu)
		if err != nil || len(r) != 10 {
			b.Fatalf("% X, %v", r, err)
		}
	}
}
