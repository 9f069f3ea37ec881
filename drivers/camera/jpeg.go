package camera

import (
	"bytes"
	"errors"
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// DefaultJPEGQuality is used when EncodeJPEG is given quality <= 0.
const DefaultJPEGQuality = 80

// EncodeJPEG encodes m as JPEG for the status page, first shrinking it to
// at most maxWidth pixels wide (keeping the aspect ratio; <= 0 keeps the
// size). quality is 1..100 (<= 0 means DefaultJPEGQuality). m is not
// modified and stays owned by the caller.
func EncodeJPEG(m gocv.Mat, maxWidth int, quality int) ([]byte, error) {
	// OpenCV throws C++ exceptions (which abort the process) on Mats the
	// JPEG encoder cannot take, so check everything first.
	if m.Ptr() == nil || m.Empty() {
		return nil, errors.New("camera: encode jpeg: empty image")
	}
	switch m.Type() {
	case gocv.MatTypeCV8UC1, gocv.MatTypeCV8UC3, gocv.MatTypeCV8UC4:
	default:
		return nil, fmt.Errorf("camera: encode jpeg: unsupported Mat type %v (want 8-bit, 1, 3 or 4 channels)", m.Type())
	}
	if quality <= 0 {
		quality = DefaultJPEGQuality
	}
	quality = min(quality, 100)
	src := m
	if w, h := m.Cols(), m.Rows(); maxWidth > 0 && w > maxWidth {
		nh := max(1, (h*maxWidth+w/2)/w)
		small := gocv.NewMat()
		defer small.Close()
		// Area interpolation: the least aliasing when shrinking.
		gocv.Resize(m, &small, image.Pt(maxWidth, nh), 0, 0, gocv.InterpolationArea)
		src = small
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, src, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, fmt.Errorf("camera: encode jpeg: %w", err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}
