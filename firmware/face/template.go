package face

import (
	"fmt"
	"log/slog"
	"math"
)

// Dim is the length of a face template.
const Dim = 512

// DefaultThreshold is the cosine similarity at or above which two templates
// are taken to be the same person: the operating point chosen for a false
// accept rate of at most 0.01 % per comparison of a chip-like reference
// (240×320 JPEG 2000 of 12-15 KB, colour or grey) with a photo, on half of
// the 300 people of the faces-lfw calibration set (`kioskctl face eval
// --chip`, README "Face verification thresholds"). On the other, held-back
// half it measured FRR 4.7 % and FAR 0.023 %: above the 0.01 % it was
// chosen for, so the set is too small to pin FAR that low. Test-time flip,
// area resampling, blurring and centring the embeddings were measured on
// the same split (TestCalibrationVariants): none rejected fewer genuine
// pairs at that FAR, so the embedding is one aligned face.
const DefaultThreshold = 0.392

// Template is an L2-normalised face embedding. It is biometric data: it
// formats and logs as "[face template]", and Wipe clears it.
type Template struct {
	v [Dim]float32
}

// NewTemplate makes a template from an embedding, normalising it to unit
// length.
func NewTemplate(v []float32) (*Template, error) {
	if len(v) != Dim {
		return nil, fmt.Errorf("face template: %d values, want %d", len(v), Dim)
	}
	var n float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("face template: not finite")
		}
		n += float64(x) * float64(x)
	}
	if n == 0 {
		return nil, fmt.Errorf("face template: zero vector")
	}
	inv := 1 / math.Sqrt(n)
	t := &Template{}
	for i, x := range v {
		t.v[i] = float32(float64(x) * inv)
	}
	return t, nil
}

// Floats returns a copy of the normalised embedding (for lab tools only).
func (t *Template) Floats() []float32 { return append([]float32(nil), t.v[:]...) }

// Wipe zeroes the template.
func (t *Template) Wipe() {
	if t != nil {
		clear(t.v[:])
	}
}

// String keeps templates out of logs and error messages.
func (t *Template) String() string { return "[face template]" }

// LogValue keeps templates out of structured logs.
func (t *Template) LogValue() slog.Value { return slog.StringValue("[face template]") }

// Cosine returns the cosine similarity of two templates (in [−1, 1]); a
// nil or wiped template gives 0.
func Cosine(a, b *Template) float64 {
	if a == nil || b == nil {
		return 0
	}
	var dot, na, nb float64
	for i := range a.v {
		x, y := float64(a.v[i]), float64(b.v[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}
