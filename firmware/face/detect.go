package face

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"sort"

	"gocv.io/x/gocv"
)

// Detector input: the whole frame resized to 320×240.
const detectW, detectH = 320, 240

// Detection is one face the detector found.
type Detection struct {
	// Box is the squared face box in image pixels (side = detected height,
	// same centre, clipped to the image): the crop the landmark model sees.
	Box image.Rectangle
	// Raw is the detector's own box, clipped to the image.
	Raw image.Rectangle
	// Score is the detector's face probability.
	Score float32
}

// ErrImage reports an image the pipeline cannot use (empty, wrong type).
var ErrImage = errors.New("face: unusable image")

func checkImage(img gocv.Mat) error {
	if img.Empty() {
		return fmt.Errorf("%w: empty", ErrImage)
	}
	if img.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("%w: type %v, want 8-bit BGR", ErrImage, img.Type())
	}
	return nil
}

// Detect finds faces in a BGR image, best score first.
func (m *Models) Detect(img gocv.Mat) ([]Detection, error) {
	if err := checkImage(img); err != nil {
		return nil, err
	}
	// The detector sees the frame stretched to 4:3. A frame of another shape
	// (a portrait chip photo, a 92×112 ORL face) is first padded to 4:3 with
	// grey (zero after normalisation) so faces keep their proportions: on
	// the test media this raised the lowest same-person similarity from
	// 0.31 to 0.52 and left the highest impostor one at 0.33.
	src := img
	off := image.Point{}
	if w, h := img.Cols(), img.Rows(); w*detectH != h*detectW {
		tw, th := w, h
		if w*detectH < h*detectW {
			tw = (h*detectW + detectH - 1) / detectH
		} else {
			th = (w*detectH + detectW - 1) / detectW
		}
		off = image.Pt((tw-w)/2, (th-h)/2)
		padded := gocv.NewMat()
		defer padded.Close()
		gocv.CopyMakeBorder(img, &padded, off.Y, th-h-off.Y, off.X, tw-w-off.X, gocv.BorderConstant, color.RGBA{127, 127, 127, 255})
		src = padded
	}
	// fr_detect: RGB, (p−127)/128. BlobFromImage subtracts the mean, then scales.
	blob := gocv.BlobFromImage(src, 1.0/128, image.Pt(detectW, detectH), gocv.NewScalar(127, 127, 127, 0), true, false)
	defer wipe(&blob)

	vals, err := m.forward(ModelDetect, blob, "scores", "boxes")
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	scores, boxes := vals[0], vals[1]
	n := len(scores) / 2
	if len(boxes) != 4*n {
		return nil, fmt.Errorf("detect: %d scores but %d box values", n, len(boxes))
	}
	w, h := float32(src.Cols()), float32(src.Rows())
	bounds := image.Rect(0, 0, img.Cols(), img.Rows())
	var cand []image.Rectangle
	var candScore []float32
	for i := range n {
		s := scores[2*i+1] // index 1 = face
		if s < m.minScore {
			continue
		}
		b := boxes[4*i : 4*i+4] // normalised x1, y1, x2, y2
		r := image.Rect(int(b[0]*w+0.5), int(b[1]*h+0.5), int(b[2]*w+0.5), int(b[3]*h+0.5)).Sub(off).Intersect(bounds)
		if r.Dx() < 2 || r.Dy() < 2 {
			continue
		}
		cand = append(cand, r)
		candScore = append(candScore, s)
	}
	if len(cand) == 0 {
		return nil, nil
	}
	// gocv v0.31 writes into a caller-sized slice and leaves the rest alone.
	keep := make([]int, len(cand))
	for i := range keep {
		keep[i] = -1
	}
	gocv.NMSBoxes(cand, candScore, m.minScore, m.nmsIoU, keep)
	var out []Detection
	for _, k := range keep {
		if k < 0 || k >= len(cand) {
			continue
		}
		out = append(out, Detection{Box: squareBox(cand[k], bounds), Raw: cand[k], Score: candScore[k]})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Score > out[j].Score })
	return out, nil
}

// squareBox makes the square crop the landmark model expects: side = box
// height, same centre, clipped to the image.
func squareBox(r, bounds image.Rectangle) image.Rectangle {
	side := r.Dy()
	cx := (r.Min.X + r.Max.X) / 2
	cy := (r.Min.Y + r.Max.Y) / 2
	return image.Rect(cx-side/2, cy-side/2, cx-side/2+side, cy-side/2+side).Intersect(bounds)
}

// Primary returns the index of the face to verify in a frame of the given
// size: the largest; among faces at least 90 % as large as the largest, the
// one nearest the centre. It returns −1 when faces is empty.
func Primary(faces []Detection, frame image.Point) int {
	best, maxArea := -1, 0
	for i, f := range faces {
		if a := f.Box.Dx() * f.Box.Dy(); a > maxArea {
			best, maxArea = i, a
		}
	}
	if best < 0 {
		return -1
	}
	c := image.Pt(frame.X/2, frame.Y/2)
	dist := func(r image.Rectangle) int {
		d := r.Min.Add(r.Max).Div(2).Sub(c)
		return d.X*d.X + d.Y*d.Y
	}
	for i, f := range faces {
		if a := f.Box.Dx() * f.Box.Dy(); a*10 >= maxArea*9 && dist(f.Box) < dist(faces[best].Box) {
			best = i
		}
	}
	return best
}
