package face

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// Liveness returns the passive liveness model's probability that the face
// with detector box raw is a live person (not a print or a screen). The
// crop is the box scaled ×2.7 about its centre, clipped to the image.
func (m *Models) Liveness(img gocv.Mat, raw image.Rectangle) (float64, error) {
	// fr_liveness: 128×128, raw 0–255, in BGR order. The model notes say
	// RGB, but fed RGB it scored real faces anywhere from 0.06 to 0.86
	// (franck stills, median 0.5 on the test videos), while BGR gave
	// 0.96–1.00 on every real photo and video frame: it was trained on
	// OpenCV's BGR (as MiniFASNet-style models are). Not yet validated on
	// real spoofs.
	blob, err := cropBlob(img, scaleBox(raw, 2.7, 2.7), 1, image.Pt(128, 128), gocv.NewScalar(0, 0, 0, 0), false)
	if err != nil {
		return 0, fmt.Errorf("liveness: %w", err)
	}
	defer wipe(&blob)
	vals, err := m.forward(ModelLiveness, blob, "")
	if err != nil {
		return 0, fmt.Errorf("liveness: %w", err)
	}
	if len(vals[0]) != 3 {
		return 0, fmt.Errorf("liveness: %d values, want 3", len(vals[0]))
	}
	return softmax(vals[0])[0], nil // index 0 = live
}
