package face

import (
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"
)

// AlignedSize is the side of the aligned face the feature model takes.
const AlignedSize = 112

// alignTemplate returns where the five points go in the 112×112 crop.
func alignTemplate() Five {
	return Five{
		{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366},
		{41.5493, 92.3655}, {70.7299, 92.2041},
	}
}

// Similarity is a 2-D similarity transform x' = A·x + t with
// A = [[a, −b], [b, a]] (scale and rotation, no shear or reflection).
type Similarity struct{ A, B, Tx, Ty float64 }

// Apply maps p.
func (s Similarity) Apply(p Point) Point {
	return Point{s.A*p.X - s.B*p.Y + s.Tx, s.B*p.X + s.A*p.Y + s.Ty}
}

// FitSimilarity returns the least-squares similarity transform taking src
// to dst (Umeyama 1991, "Least-squares estimation of transformation
// parameters between two point patterns", with the rotation kept proper).
// In 2-D its closed form is the complex least-squares fit
// a + ib = Σ conj(s̃ᵢ)·d̃ᵢ / Σ|s̃ᵢ|² over the centred points, t = d̄ − (a+ib)·s̄.
// It fails when src has no spread (all points equal).
func FitSimilarity(src, dst []Point) (Similarity, error) {
	if len(src) != len(dst) || len(src) < 2 {
		return Similarity{}, fmt.Errorf("fit similarity: %d source and %d destination points", len(src), len(dst))
	}
	ms, md := mean(src...), mean(dst...)
	var num, numI, den float64
	for i := range src {
		sx, sy := src[i].X-ms.X, src[i].Y-ms.Y
		dx, dy := dst[i].X-md.X, dst[i].Y-md.Y
		num += sx*dx + sy*dy
		numI += sx*dy - sy*dx
		den += sx*sx + sy*sy
	}
	if den < 1e-9 {
		return Similarity{}, fmt.Errorf("fit similarity: source points do not spread")
	}
	a, b := num/den, numI/den
	return Similarity{A: a, B: b, Tx: md.X - (a*ms.X - b*ms.Y), Ty: md.Y - (b*ms.X + a*ms.Y)}, nil
}

// Align warps the face with the given five points to the 112×112 crop the
// feature model expects, into dst (allocated by the caller).
func Align(img gocv.Mat, five Five, dst *gocv.Mat) error {
	if err := checkImage(img); err != nil {
		return err
	}
	tpl := alignTemplate()
	s, err := FitSimilarity(five[:], tpl[:])
	if err != nil {
		return fmt.Errorf("align: %w", err)
	}
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer m.Close()
	m.SetDoubleAt(0, 0, s.A)
	m.SetDoubleAt(0, 1, -s.B)
	m.SetDoubleAt(0, 2, s.Tx)
	m.SetDoubleAt(1, 0, s.B)
	m.SetDoubleAt(1, 1, s.A)
	m.SetDoubleAt(1, 2, s.Ty)
	gocv.WarpAffineWithParams(img, dst, m, image.Pt(AlignedSize, AlignedSize),
		gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
	return nil
}
