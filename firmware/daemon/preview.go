package daemon

import (
	"image"
	"image/color"

	"gocv.io/x/gocv"

	"kiosk/drivers/camera"
	"kiosk/firmware/face"
)

// maxGuideLag is how many frames the tracker's box may lag the previewed
// frame and still be drawn (half a second at 30 fps): an older box would
// trail a moving face.
const maxGuideLag = 15

// Face guide colours, the screen's --ok and --warn.
var (
	guideGood = color.RGBA{R: 0x3d, G: 0xdc, B: 0x84, A: 0xff}
	guideWarn = color.RGBA{R: 0xff, G: 0xc2, B: 0x47, A: 0xff}
)

// previewJPEG scales a camera frame for the shopper's screen and draws the
// face guide from the tracker on it.
func (d *Daemon) previewJPEG(f *camera.Frame) ([]byte, error) {
	var pos face.Position
	var ok bool
	if d.facePos != nil {
		pos, ok = d.facePos()
	}
	return previewJPEG(f.Mat, f.Seq, pos, ok)
}

// previewJPEG draws the guide when pos is the tracker's box in this frame
// or one at most maxGuideLag frames before it. Drawing in the image, not
// over it in the page, keeps the guide on the face whatever the page's
// crop and mirroring of the stream.
func previewJPEG(frame gocv.Mat, seq uint64, pos face.Position, havePos bool) ([]byte, error) {
	if frame.Ptr() == nil || frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		// No guide on what is not a colour camera frame: the encoder
		// converts, or says why it cannot.
		return camera.EncodeJPEG(frame, previewWidth, previewQuality)
	}
	size := image.Pt(frame.Cols(), frame.Rows())
	out := gocv.NewMat()
	defer out.Close()
	scale := 1.0
	if size.X > previewWidth {
		scale = float64(previewWidth) / float64(size.X)
		gocv.Resize(frame, &out, image.Pt(previewWidth, max(1, int(float64(size.Y)*scale+0.5))), 0, 0, gocv.InterpolationArea)
	} else {
		frame.CopyTo(&out)
	}
	if havePos && pos.Frame == size && seq >= pos.Seq && seq-pos.Seq <= maxGuideLag && pos.Box.In(image.Rectangle{Max: size}) {
		drawGuide(&out, scaleRect(pos.Box, scale), pos.Good)
	}
	return camera.EncodeJPEG(out, 0, previewQuality)
}

func scaleRect(r image.Rectangle, s float64) image.Rectangle {
	f := func(v int) int { return int(float64(v)*s + 0.5) }
	return image.Rect(f(r.Min.X), f(r.Min.Y), f(r.Max.X), f(r.Max.Y))
}

// drawGuide marks the face: a closed green frame when the face passes the
// quality gates, amber corner marks while it does not, so the state shows
// in the shape as well as the colour.
func drawGuide(img *gocv.Mat, r image.Rectangle, good bool) {
	t := max(2, r.Dx()/30)
	if good {
		gocv.Rectangle(img, r, guideGood, t)
		return
	}
	l := max(4, min(r.Dx(), r.Dy())/4)
	for _, c := range []struct{ p, dx, dy image.Point }{
		{r.Min, image.Pt(l, 0), image.Pt(0, l)},
		{image.Pt(r.Max.X, r.Min.Y), image.Pt(-l, 0), image.Pt(0, l)},
		{image.Pt(r.Min.X, r.Max.Y), image.Pt(l, 0), image.Pt(0, -l)},
		{r.Max, image.Pt(-l, 0), image.Pt(0, -l)},
	} {
		gocv.Line(img, c.p, c.p.Add(c.dx), guideWarn, t)
		gocv.Line(img, c.p, c.p.Add(c.dy), guideWarn, t)
	}
}
