package face

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// AllModels returns every model a Verifier uses: verification plus
// liveness, eyes and expression. The head pose comes from the landmarks
// (LandmarkPose); the pose network (HeadPose) is loaded only on request.
func AllModels() []Model {
	return []Model{ModelDetect, ModelLandmark, ModelFeature, ModelLiveness, ModelEye, ModelExpression}
}

// scaleBox scales r by f about its centre.
func scaleBox(r image.Rectangle, fx, fy float64) image.Rectangle {
	cx := float64(r.Min.X+r.Max.X) / 2
	cy := float64(r.Min.Y+r.Max.Y) / 2
	w, h := float64(r.Dx())*fx, float64(r.Dy())*fy
	return image.Rect(int(math.Round(cx-w/2)), int(math.Round(cy-h/2)), int(math.Round(cx+w/2)), int(math.Round(cy+h/2)))
}

// cropBlob makes a network input from region r of a BGR image (clipped).
func cropBlob(img gocv.Mat, r image.Rectangle, scale float64, size image.Point, mean gocv.Scalar, swapRB bool) (gocv.Mat, error) {
	if err := checkImage(img); err != nil {
		return gocv.Mat{}, err
	}
	r = r.Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	if r.Dx() < 4 || r.Dy() < 4 {
		return gocv.Mat{}, fmt.Errorf("%w: crop %v too small", ErrImage, r)
	}
	crop := img.Region(r)
	defer crop.Close()
	return gocv.BlobFromImage(crop, scale, size, mean, swapRB, false), nil
}

func softmax(v []float32) []float64 {
	out := make([]float64, len(v))
	mx := math.Inf(-1)
	for _, x := range v {
		mx = math.Max(mx, float64(x))
	}
	var sum float64
	for i, x := range v {
		out[i] = math.Exp(float64(x) - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// Expression classes of the expression model, in output order.
const (
	ExprAngry = iota
	ExprDisgust
	ExprFear
	ExprHappy
	ExprSad
	ExprSurprise
	ExprNeutral
	numExpr
)

// expressionBox is the expression model's crop: (x1, y1, 1.2w, 1.2h) of
// the detector box, extending right and down.
func expressionBox(raw image.Rectangle) image.Rectangle {
	w, h := float64(raw.Dx())*1.2, float64(raw.Dy())*1.2
	return image.Rect(raw.Min.X, raw.Min.Y, raw.Min.X+int(w), raw.Min.Y+int(h))
}

// ExpressionBlob prepares the expression model's input for the face with
// detector box raw; it is cheap (≈1 ms) next to the model (≈70 ms), so the
// frame loop makes it and a worker runs the model. The caller closes it.
func ExpressionBlob(img gocv.Mat, raw image.Rectangle) (gocv.Mat, error) {
	// fr_expression: 224×224 RGB, p/255.
	b, err := cropBlob(img, expressionBox(raw), 1.0/255, image.Pt(224, 224), gocv.NewScalar(0, 0, 0, 0), true)
	if err != nil {
		return b, fmt.Errorf("expression: %w", err)
	}
	return b, nil
}

// ExpressionFromBlob runs the expression model on an ExpressionBlob and
// returns the seven class probabilities (ExprHappy is index 3).
func (m *Models) ExpressionFromBlob(blob gocv.Mat) ([]float64, error) {
	vals, err := m.forward(ModelExpression, blob, "")
	if err != nil {
		return nil, fmt.Errorf("expression: %w", err)
	}
	if len(vals[0]) != numExpr {
		return nil, fmt.Errorf("expression: %d values, want %d", len(vals[0]), numExpr)
	}
	return softmax(vals[0]), nil
}

// Expression returns the seven expression probabilities of a face.
func (m *Models) Expression(img gocv.Mat, raw image.Rectangle) ([]float64, error) {
	blob, err := ExpressionBlob(img, raw)
	if err != nil {
		return nil, err
	}
	defer wipe(&blob)
	return m.ExpressionFromBlob(blob)
}

// Pose is a head pose in degrees: yaw (left/right), pitch (up/down), roll
// (tilt).
type Pose struct {
	Yaw   float64 `json:"yaw"`
	Pitch float64 `json:"pitch"`
	Roll  float64 `json:"roll"`
}

// HeadPose runs the pose model on the face with detector box raw.
func (m *Models) HeadPose(img gocv.Mat, raw image.Rectangle) (Pose, error) {
	// fr_pose: box grown by a quarter of its size on each side, 224×224
	// RGB, p/255, then ImageNet mean/std per channel — BlobFromImage has
	// one scale, so the std is applied below on the blob's planes.
	blob, err := cropBlob(img, scaleBox(raw, 1.5, 1.5), 1.0/255, image.Pt(224, 224), gocv.NewScalar(0.485*255, 0.456*255, 0.406*255, 0), true)
	if err != nil {
		return Pose{}, fmt.Errorf("pose: %w", err)
	}
	defer wipe(&blob)
	// BlobFromImage computes (p − mean)·scale, so the mean above is in
	// pixel units; now divide each RGB plane by its std.
	data, err := blob.DataPtrFloat32()
	if err != nil {
		return Pose{}, fmt.Errorf("pose: %w", err)
	}
	const plane = 224 * 224
	if len(data) != 3*plane {
		return Pose{}, fmt.Errorf("pose: blob of %d values", len(data))
	}
	for c, std := range [3]float32{0.229, 0.224, 0.225} {
		inv := 1 / std
		p := data[c*plane : (c+1)*plane]
		for i := range p {
			p[i] *= inv
		}
	}
	vals, err := m.forward(ModelPose, blob, "output", "617", "618")
	if err != nil {
		return Pose{}, fmt.Errorf("pose: %w", err)
	}
	deg := func(v []float32) float64 {
		var s float64
		for i, p := range softmax(v) {
			s += p * float64(i)
		}
		return s*3 - 99
	}
	return Pose{Yaw: deg(vals[0]), Pitch: deg(vals[1]), Roll: deg(vals[2])}, nil
}

// eyeBox is the eye model's crop for the eye whose corners are a and b and
// lid points p: centred on the lids' mean, side 1.6 × corner distance.
func eyeBox(a, b Point, lids ...Point) image.Rectangle {
	c := mean(lids...)
	side := 1.6 * math.Hypot(b.X-a.X, b.Y-a.Y)
	return image.Rect(int(c.X-side/2), int(c.Y-side/2), int(c.X+side/2+0.5), int(c.Y+side/2+0.5))
}

// EyesOpen returns the eye model's probability that each eye (left, right
// in the image) is open. grey is an 8-bit grey image whose top-left corner
// is at origin in the frame the landmarks belong to (the whole frame, or
// just the face, which is cheaper to convert).
func (m *Models) EyesOpen(grey gocv.Mat, origin image.Point, l *Landmarks) (left, right float64, err error) {
	if grey.Empty() || grey.Type() != gocv.MatTypeCV8U {
		return 0, 0, fmt.Errorf("eyes: %w: want 8-bit grey", ErrImage)
	}
	boxes := [2]image.Rectangle{
		eyeBox(l[36], l[39], l[37], l[38], l[40], l[41]),
		eyeBox(l[42], l[45], l[43], l[44], l[46], l[47]),
	}
	// Both eyes in one batch of two: one forward pass instead of two.
	var crops []gocv.Mat
	defer func() {
		for i := range crops {
			crops[i].Close() // regions of grey: closed, not wiped
		}
	}()
	bounds := image.Rect(0, 0, grey.Cols(), grey.Rows())
	for _, r := range boxes {
		r = r.Sub(origin).Intersect(bounds)
		if r.Dx() < 3 || r.Dy() < 3 {
			return 0, 0, fmt.Errorf("eyes: %w: eye crop %v too small", ErrImage, r)
		}
		crops = append(crops, grey.Region(r))
	}
	// fr_eye: 24×24 grey, p/255.
	blob := gocv.NewMat()
	defer wipe(&blob)
	gocv.BlobFromImages(crops, &blob, 1.0/255, image.Pt(24, 24), gocv.NewScalar(0, 0, 0, 0), false, false, gocv.MatTypeCV32F)
	vals, err := m.forward(ModelEye, blob, "")
	if err != nil {
		return 0, 0, fmt.Errorf("eyes: %w", err)
	}
	if len(vals[0]) != 4 {
		return 0, 0, fmt.Errorf("eyes: %d values, want 2×2", len(vals[0]))
	}
	var p [2]float64
	for i := range p {
		p[i] = softmax(vals[0][2*i : 2*i+2])[1] // index 1 = open
	}
	return p[0], p[1], nil
}

// MouthRatio is the mouth width (outer corners 48–54) over the distance
// between the eye centres: it rises when a person smiles, but only a
// comparison with the same person's neutral face says by how much.
func (l *Landmarks) MouthRatio() float64 {
	ie := l.InterEye()
	if ie <= 0 {
		return 0
	}
	return math.Hypot(l[54].X-l[48].X, l[54].Y-l[48].Y) / ie
}

// EyeAspect is the eye aspect ratio (lid opening over eye width, averaged
// over both eyes; Soukupová and Čech 2016): about 0.25–0.37 for open eyes on
// the test media, under 0.21 for closed ones.
func (l *Landmarks) EyeAspect() float64 {
	d := func(a, b Point) float64 { return math.Hypot(a.X-b.X, a.Y-b.Y) }
	ear := func(c1, t1, t2, c2, b2, b1 int) float64 {
		w := d(l[c1], l[c2])
		if w == 0 {
			return 0
		}
		return (d(l[t1], l[b1]) + d(l[t2], l[b2])) / (2 * w)
	}
	return (ear(36, 37, 38, 39, 40, 41) + ear(42, 43, 44, 45, 46, 47)) / 2
}

// Roll is the angle of the line between the eye centres, in degrees.
func (l *Landmarks) Roll() float64 {
	f := l.Five()
	return math.Atan2(f[1].Y-f[0].Y, f[1].X-f[0].X) * 180 / math.Pi
}

// FaceStats are the pixel measures behind the sharpness and exposure gates.
type FaceStats struct {
	Sharpness float64 `json:"sharpness"` // variance of the Laplacian of the face, normalised to 96×96
	Mean      float64 `json:"mean"`      // mean grey level of the face
	Dark      float64 `json:"dark"`      // fraction of face pixels ≤ 8
	Bright    float64 `json:"bright"`    // fraction of face pixels ≥ 247
}

// Stats measures the face in box of the grey frame. The face is resized to
// 96×96 first so that sharpness does not depend on the face's size.
func Stats(grey gocv.Mat, box image.Rectangle) (FaceStats, error) {
	box = box.Intersect(image.Rect(0, 0, grey.Cols(), grey.Rows()))
	if grey.Type() != gocv.MatTypeCV8U || box.Dx() < 8 || box.Dy() < 8 {
		return FaceStats{}, fmt.Errorf("stats: %w", ErrImage)
	}
	crop := grey.Region(box)
	defer crop.Close()
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(crop, &small, image.Pt(96, 96), 0, 0, gocv.InterpolationArea)
	lap := gocv.NewMat()
	defer lap.Close()
	gocv.Laplacian(small, &lap, gocv.MatTypeCV64F, 1, 1, 0, gocv.BorderDefault)
	mean, std := gocv.NewMat(), gocv.NewMat()
	defer mean.Close()
	defer std.Close()
	gocv.MeanStdDev(lap, &mean, &std)
	sd := std.GetDoubleAt(0, 0)
	px, err := small.DataPtrUint8()
	if err != nil {
		return FaceStats{}, fmt.Errorf("stats: %w", err)
	}
	var sum, dark, bright int
	for _, p := range px {
		sum += int(p)
		if p <= 8 {
			dark++
		} else if p >= 247 {
			bright++
		}
	}
	n := float64(len(px))
	return FaceStats{Sharpness: sd * sd, Mean: float64(sum) / n, Dark: float64(dark) / n, Bright: float64(bright) / n}, nil
}
