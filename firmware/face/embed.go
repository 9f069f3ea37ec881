package face

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// EmbedAligned runs the feature model on a 112×112 BGR aligned face.
func (m *Models) EmbedAligned(aligned gocv.Mat) (*Template, error) {
	if err := checkImage(aligned); err != nil {
		return nil, err
	}
	if aligned.Cols() != AlignedSize || aligned.Rows() != AlignedSize {
		return nil, fmt.Errorf("%w: aligned face is %dx%d, want %dx%d", ErrImage, aligned.Cols(), aligned.Rows(), AlignedSize, AlignedSize)
	}
	// fr_feature: RGB, (p−127)/128.
	blob := gocv.BlobFromImage(aligned, 1.0/128, image.Pt(AlignedSize, AlignedSize), gocv.NewScalar(127, 127, 127, 0), true, false)
	defer wipe(&blob)
	vals, err := m.forward(ModelFeature, blob, "output")
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	v := vals[0]
	t, err := NewTemplate(v) // copies out of the Mat before it closes
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	return t, nil
}

// Embed aligns the face with landmarks l in a BGR image and embeds it.
func (m *Models) Embed(img gocv.Mat, l *Landmarks) (*Template, error) {
	aligned := gocv.NewMat()
	defer wipe(&aligned)
	if err := Align(img, l.Five(), &aligned); err != nil {
		return nil, err
	}
	return m.EmbedAligned(aligned)
}
