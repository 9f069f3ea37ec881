package face

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// Point is a sub-pixel image position.
type Point struct{ X, Y float64 }

// Landmarks are the 68 facial points in iBUG 300-W order, in image pixels.
type Landmarks [68]Point

// Five are the alignment points: left eye, right eye, nose tip, left and
// right mouth corners (left/right as seen in the image).
type Five [5]Point

func mean(ps ...Point) Point {
	var m Point
	for _, p := range ps {
		m.X += p.X
		m.Y += p.Y
	}
	m.X /= float64(len(ps))
	m.Y /= float64(len(ps))
	return m
}

// Five derives the alignment points: each eye is the mean of its four lid
// points (37, 38, 40, 41 and 43, 44, 46, 47), the nose tip is point 30 and
// each mouth corner the mean of its outer and inner corner (48, 60 and 54, 64).
func (l *Landmarks) Five() Five {
	return Five{
		mean(l[37], l[38], l[40], l[41]),
		mean(l[43], l[44], l[46], l[47]),
		l[30],
		mean(l[48], l[60]),
		mean(l[54], l[64]),
	}
}

// InterEye is the distance between the eye centres in pixels.
func (l *Landmarks) InterEye() float64 {
	f := l.Five()
	return math.Hypot(f[1].X-f[0].X, f[1].Y-f[0].Y)
}

// Landmarks runs the 68-point model on the square face box of a BGR image.
func (m *Models) Landmarks(img gocv.Mat, box image.Rectangle) (*Landmarks, error) {
	grey, box, err := faceGrey(img, box)
	if err != nil {
		return nil, err
	}
	defer wipe(&grey)
	return m.landmarksGrey(grey, box)
}

// faceGrey converts the face box of a BGR image (clipped to the image) to
// grey; it returns the clipped box. The caller wipes the grey face.
func faceGrey(img gocv.Mat, box image.Rectangle) (gocv.Mat, image.Rectangle, error) {
	if err := checkImage(img); err != nil {
		return gocv.Mat{}, box, err
	}
	box = box.Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	if box.Dx() < 4 || box.Dy() < 4 {
		return gocv.Mat{}, box, fmt.Errorf("%w: face box %v too small", ErrImage, box)
	}
	crop := img.Region(box)
	defer crop.Close()
	grey := gocv.NewMat()
	gocv.CvtColor(crop, &grey, gocv.ColorBGRToGray)
	return grey, box, nil
}

// landmarksGrey runs the 68-point model on grey, the face box of the
// frame as faceGrey makes it.
func (m *Models) landmarksGrey(grey gocv.Mat, box image.Rectangle) (*Landmarks, error) {
	// fr_landmark: 64×64 grey, p/256.
	blob := gocv.BlobFromImage(grey, 1.0/256, image.Pt(64, 64), gocv.NewScalar(0, 0, 0, 0), false, false)
	defer wipe(&blob)

	vals, err := m.forward(ModelLandmark, blob, "output")
	if err != nil {
		return nil, fmt.Errorf("landmarks: %w", err)
	}
	v := vals[0]
	if len(v) != 136 {
		return nil, fmt.Errorf("landmarks: %d values, want 136", len(v))
	}
	var l Landmarks
	w, h := float64(box.Dx()), float64(box.Dy())
	for i := range l {
		l[i] = Point{float64(v[2*i])*w + float64(box.Min.X), float64(v[2*i+1])*h + float64(box.Min.Y)}
	}
	return &l, nil
}
