package vcard

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pace"
	"kiosk/provisioning/issuer"
)

// BenchmarkReadDG2 reads a ~20 KB DG2 inside PACE secure messaging with
// short APDUs (0xDF-byte chunks) and with extended length, reporting the
// APDUs and bytes on the wire (both directions) per read.
func BenchmarkReadDG2(b *testing.B) {
	photo := noiseJPEG(b, 20000)
	ctx := context.Background()
	for _, extended := range []bool{false, true} {
		b.Run(fmt.Sprintf("extended=%v", extended), func(b *testing.B) {
			im, _ := issue(b, photo, func(o *issuer.Options) { o.ShortLengthOnly = !extended })
			c := newCard(b, im, Options{})
			ch := channel(c, extended)
			establishPACE(b, ch, pace.CANPassword(testCAN))
			if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
				b.Fatal(err)
			}
			want := im.Files[0x0102]
			before := ch.Stats()
			b.ResetTimer()
			for b.Loop() {
				dg2, err := ch.ReadFile(ctx, 0x0102)
				if err != nil || !bytes.Equal(dg2, want) {
					b.Fatalf("DG2: %d bytes, %v", len(dg2), err)
				}
			}
			st := ch.Stats()
			n := float64(b.N)
			b.ReportMetric(float64(st.APDUs-before.APDUs)/n, "apdus/op")
			b.ReportMetric(float64(st.BytesIn+st.BytesOut-before.BytesIn-before.BytesOut)/n, "bytes/op")
			b.ReportMetric(float64(len(want)), "dg2-bytes")
		})
	}
}
