package face

import (
	"image"
	"slices"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// frame640 is a franck still resized to the kiosk camera's 640×480.
func frame640(b *testing.B) gocv.Mat {
	b.Helper()
	src := decode(b, media(b, "franck_01829.jpg"))
	defer src.Close()
	dst := gocv.NewMat()
	gocv.Resize(src, &dst, image.Pt(640, 480), 0, 0, gocv.InterpolationArea)
	return dst
}

// benchMedian runs f b.N times and reports the median wall time per call.
func benchMedian(b *testing.B, f func() error) {
	b.Helper()
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
}

func BenchmarkDetect(b *testing.B) {
	m := models(b)
	img := frame640(b)
	defer img.Close()
	benchMedian(b, func() error { _, err := m.Detect(img); return err })
}

func BenchmarkLandmarksAlign(b *testing.B) {
	m := models(b)
	img := frame640(b)
	defer img.Close()
	faces, err := m.Detect(img)
	if err != nil || len(faces) == 0 {
		b.Fatalf("detect: %v, %d faces", err, len(faces))
	}
	aligned := gocv.NewMat()
	defer aligned.Close()
	benchMedian(b, func() error {
		l, err := m.Landmarks(img, faces[0].Box)
		if err != nil {
			return err
		}
		return Align(img, l.Five(), &aligned)
	})
}

func BenchmarkEmbed(b *testing.B) {
	m := models(b)
	img := frame640(b)
	defer img.Close()
	a, err := m.Analyze(img)
	if err != nil {
		b.Fatal(err)
	}
	aligned := gocv.NewMat()
	defer aligned.Close()
	if err := Align(img, a.Landmarks.Five(), &aligned); err != nil {
		b.Fatal(err)
	}
	benchMedian(b, func() error { _, err := m.EmbedAligned(aligned); return err })
}

// BenchmarkPipeline is the per-frame verification cost: detect, landmarks,
// align and embed on a 640×480 frame (target ≤ 20 ms median).
func BenchmarkPipeline(b *testing.B) {
	m := models(b)
	img := frame640(b)
	defer img.Close()
	benchMedian(b, func() error {
		a, err := m.Analyze(img)
		if err == nil {
			a.Template.Wipe()
		}
		return err
	})
}
