package camera

import (
	"context"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"kiosk/internal/testmedia"
)

// BenchmarkPumpThroughput measures the frames per second a consumer gets
// from the pump reading franck.mp4 as fast as it can (Kind "file"), each
// frame cloned out and closed as a real consumer would.
func BenchmarkPumpThroughput(b *testing.B) {
	path := testmedia.Path(b, "franck.mp4")
	src, err := NewSource(Spec{Kind: KindFile, Path: path, Loop: true})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPump(src, PumpOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	f, err := p.Next(ctx, 0) // wait until open: not part of the measurement
	if err != nil {
		b.Fatal(err)
	}
	last := f.Seq
	_ = f.Close()
	before := p.Status()

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f, err := p.Next(ctx, last)
		if err != nil {
			b.Fatal(err)
		}
		last = f.Seq
		_ = f.Close()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	after := p.Status()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(after.Frames-before.Frames)/elapsed.Seconds(), "captured/s")
}

// BenchmarkDecode is the raw gocv/FFmpeg read rate of franck.mp4, for
// comparison with the pump.
func BenchmarkDecode(b *testing.B) {
	path := testmedia.Path(b, "franck.mp4")
	src, err := NewSource(Spec{Kind: KindFile, Path: path, Loop: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	m := gocv.NewMat()
	defer m.Close()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := src.Read(&m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "frames/s")
}

// BenchmarkEncodeJPEG encodes a 720x576 still as a 320-pixel-wide status
// page thumbnail.
func BenchmarkEncodeJPEG(b *testing.B) {
	img := gocv.IMRead(testmedia.Path(b, "franck_01829.jpg"), gocv.IMReadColor)
	defer img.Close()
	var n int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, err := EncodeJPEG(img, 320, 80)
		if err != nil {
			b.Fatal(err)
		}
		n = len(buf)
	}
	b.ReportMetric(float64(n), "bytes")
}
