package face

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"
)

// Chip-like portraits, for calibrating the matcher against what a kiosk
// really compares with: a lab tool, never used on a shopper's data.

// ChipPortraitOptions say how to make a chip-like portrait.
type ChipPortraitOptions struct {
	// Width and Height of the portrait (default 240×320, the ISO/IEC
	// 19794-5 token size most chips carry).
	Width, Height int
	// Grey makes a single-channel portrait.
	Grey bool
	// MinBytes and MaxBytes bound the JPEG 2000 file (default 12,000 and
	// 15,000): the compression is searched until the file fits.
	MinBytes, MaxBytes int
}

// ErrChipEncode reports that no compression gave a file of the asked size.
var ErrChipEncode = errors.New("face: chip portrait: cannot reach the file size")

// jp2CompressionX1000 is OpenCV's IMWRITE_JPEG2000_COMPRESSION_X1000
// (gocv v0.31 has no constant for it).
const jp2CompressionX1000 = 272

// ChipPortrait makes a chip-like portrait of the face with landmarks l in
// a BGR picture: rotated to level eyes and cropped with the token geometry
// of ISO/IEC 19794-5 §8.3 (eye midpoint centred at 0.6 W from the top,
// inter-eye distance 0.25 W), resized to Width×Height, optionally grey,
// and encoded as a JPEG 2000 file of MinBytes-MaxBytes. Parts of the crop
// outside the picture repeat its edge.
func ChipPortrait(img gocv.Mat, l *Landmarks, o ChipPortraitOptions) ([]byte, error) {
	if err := checkImage(img); err != nil {
		return nil, err
	}
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 240, 320
	}
	if o.MinBytes <= 0 || o.MaxBytes <= 0 {
		o.MinBytes, o.MaxBytes = 12000, 15000
	}
	f := l.Five()
	src := []Point{f[0], f[1]}
	w := float64(o.Width)
	dst := []Point{{0.5*w - 0.125*w, 0.6 * w}, {0.5*w + 0.125*w, 0.6 * w}}
	s, err := FitSimilarity(src, dst)
	if err != nil {
		return nil, fmt.Errorf("chip portrait: %w", err)
	}
	tm := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer tm.Close()
	for i, v := range []float64{s.A, -s.B, s.Tx, s.B, s.A, s.Ty} {
		tm.SetDoubleAt(i/3, i%3, v)
	}
	out := gocv.NewMat()
	defer wipe(&out)
	gocv.WarpAffineWithParams(img, &out, tm, image.Pt(o.Width, o.Height), gocv.InterpolationArea, gocv.BorderReplicate, color.RGBA{})
	if o.Grey {
		g := gocv.NewMat()
		defer wipe(&g)
		gocv.CvtColor(out, &g, gocv.ColorBGRToGray)
		return encodeJP2Size(g, o.MinBytes, o.MaxBytes)
	}
	return encodeJP2Size(out, o.MinBytes, o.MaxBytes)
}

// encodeJP2Size encodes img as JPEG 2000, searching the rate parameter
// (by bisection: the file grows with it) for a file of lo-hi bytes.
func encodeJP2Size(img gocv.Mat, lo, hi int) ([]byte, error) {
	enc := func(x1000 int) ([]byte, error) {
		buf, err := gocv.IMEncodeWithParams(".jp2", img, []int{jp2CompressionX1000, x1000})
		if err != nil {
			return nil, fmt.Errorf("chip portrait: encode: %w", err)
		}
		defer buf.Close()
		return bytes.Clone(buf.GetBytes()), nil
	}
	// OpenCV's encoder takes a compression ratio of 1000/x1000 for x1000
	// in 1-999 (1000 is lossless).
	rlo, rhi := 1, 999
	last := 0
	for rlo <= rhi {
		mid := (rlo + rhi) / 2
		b, err := enc(mid)
		if err != nil {
			return nil, err
		}
		last = len(b)
		switch {
		case len(b) > hi:
			rhi = mid - 1
		case len(b) < lo:
			rlo = mid + 1
		default:
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %d-%d bytes wanted, last try %d", ErrChipEncode, lo, hi, last)
}
