package emrtd

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"testing"
	"time"

	"kiosk/drivers/cardreader/link"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/provisioning/issuer"
)

// jpegOf returns a synthetic JPEG of about size bytes (noise compresses
// badly, so the size is easy to steer; reading needs no real face).
func jpegOf(tb testing.TB, size int) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for side := 32; ; side += 8 {
		img := image.NewRGBA(image.Rect(0, 0, side, side*4/3))
		for y := 0; y < side*4/3; y++ {
			for x := 0; x < side; x++ {
				img.Set(x, y, color.RGBA{uint8(rng.IntN(256)), uint8(x), uint8(y), 255})
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 75}); err != nil {
			tb.Fatal(err)
		}
		if buf.Len() >= size {
			return buf.Bytes()
		}
	}
}

// BenchmarkReadLinkPCSC is chip present → verified as a real reader would
// see it: the whole inspection (PACE-CAN, EF.COM, EF.SOD, DG14, PA of the
// security objects, CA, AA, DG1, DG2, PA) through pcscd and vpcd, the card
// behind a link model (package link) with 5 ms turnaround per APDU, for
// the good card (a 27 KB photo) and a 20 KB DG2, at 106 and 424 kbit/s,
// with and without extended length. Besides ns/op it reports the time
// from the chip's arrival to the verdict (connect + read), the read alone, the physical
// floor (bytes on the wire ÷ bit rate), the turnarounds, APDUs and wire
// bytes per read.
func BenchmarkReadLinkPCSC(b *testing.B) {
	const turnaround = 5 * time.Millisecond
	photo20 := jpegOf(b, 20_000)
	for _, card := range []struct {
		name string
		mod  func(*issuer.Options)
	}{
		{"good", func(o *issuer.Options) { modern(o) }},
		{"dg2-20KB", func(o *issuer.Options) { modern(o); o.Photo = photo20 }},
	} {
		for _, model := range []string{"iso14443-106", "iso14443-424"} {
			for _, extended := range []bool{true, false} {
				b.Run(fmt.Sprintf("%s/%s/extended=%v", card.name, model, extended), func(b *testing.B) {
					benchLink(b, card.mod, model, extended, turnaround)
				})
			}
		}
	}
}

func benchLink(b *testing.B, mod func(*issuer.Options), model string, extended bool, turnaround time.Duration) {
	m, err := link.ByName(model)
	if err != nil {
		b.Fatal(err)
	}
	m.Turnaround = turnaround
	srv := pcscdtest.Start(b, 1)
	img, trust := issue(b, func(o *issuer.Options) { mod(o); o.ShortLengthOnly = !extended })
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		b.Fatal(err)
	}
	lh, err := link.New(card, m)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = vpcd.Serve(ctx, srv.VPCDAddr(0), lh, nil) }()
	defer func() { cancel(); <-done }()
	drv := pcsc.New(pcsc.Options{TransmitTimeout: 10 * time.Second, ResetOnClose: true})
	defer drv.Wait()
	connect(b, drv).Close() // the card is in: pcscd saw it
	lh.TakeStats()
	var total time.Duration
	var readMS float64
	var st link.Stats
	var dg2 int
	n := 0
	for b.Loop() {
		t0 := time.Now()
		c := connect(b, drv)
		r, err := Read(ctx, c, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust, ATR: c.ATR()})
		if err != nil || !r.Passed {
			b.Fatalf("%v %v", err, r.Failures)
		}
		total += time.Since(t0)
		readMS += r.PhasesMS["total"]
		if r.ExtendedLength != extended {
			b.Fatalf("extended length %v, want %v", r.ExtendedLength, extended)
		}
		if r.Face != nil {
			dg2 = len(r.Face.Image)
		}
		r.Wipe()
		c.Close()
		s := lh.TakeStats()
		st.APDUs += s.APDUs
		st.WireBytes += s.WireBytes
		st.Floor += s.Floor
		st.Delay += s.Delay
		n++
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(per(total), "present-to-verified-ms")
	b.ReportMetric(readMS/float64(n), "read-ms")
	b.ReportMetric(per(st.Floor), "floor-ms")
	b.ReportMetric(per(st.Delay-st.Floor), "turnaround-ms")
	b.ReportMetric(float64(st.APDUs)/float64(n), "apdus/read")
	b.ReportMetric(float64(st.WireBytes)/float64(n), "wire-bytes/read")
	b.ReportMetric(float64(dg2), "photo-bytes")
}
