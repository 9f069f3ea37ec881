package daemon

import (
	"image"
	"image/color"
	"testing"

	"gocv.io/x/gocv"

	"kiosk/firmware/face"
)

// guidePixels counts the pixels of a JPEG within JPEG noise of colour c.
func guidePixels(t testing.TB, jpg []byte, c color.RGBA) int {
	t.Helper()
	img, err := gocv.IMDecode(jpg, gocv.IMReadColor)
	if err != nil || img.Empty() {
		t.Fatalf("preview frame does not decode: %v", err)
	}
	defer img.Close()
	mask := gocv.NewMat()
	defer mask.Close()
	const tol = 45
	lo := gocv.NewScalar(float64(max(0, int(c.B)-tol)), float64(max(0, int(c.G)-tol)), float64(max(0, int(c.R)-tol)), 0)
	hi := gocv.NewScalar(float64(min(255, int(c.B)+tol)), float64(min(255, int(c.G)+tol)), float64(min(255, int(c.R)+tol)), 255)
	gocv.InRangeWithScalar(img, lo, hi, &mask)
	return gocv.CountNonZero(mask)
}

func TestPreviewFaceGuide(t *testing.T) {
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 90, 90, 0), 480, 640, gocv.MatTypeCV8UC3)
	defer frame.Close()
	box := image.Rect(200, 100, 440, 340)
	at := func(seq uint64, pos face.Position, ok bool) (good, warn int, size image.Point) {
		b, err := previewJPEG(frame, seq, pos, ok)
		if err != nil {
			t.Fatal(err)
		}
		img, err := gocv.IMDecode(b, gocv.IMReadColor)
		if err != nil {
			t.Fatal(err)
		}
		size = image.Pt(img.Cols(), img.Rows())
		img.Close()
		return guidePixels(t, b, guideGood), guidePixels(t, b, guideWarn), size
	}
	full := image.Pt(640, 480)
	// Scaled to 480×360: the box becomes (150,75)-(330,255), 180 px a side.
	good, warn, size := at(7, face.Position{Seq: 7, Frame: full, Box: box, Good: true}, true)
	if size != image.Pt(480, 360) {
		t.Errorf("preview %v, want 480×360", size)
	}
	// A closed frame: four sides of 180 px, 6 px thick, less JPEG losses.
	if good < 3000 || warn > 100 {
		t.Errorf("good face: %d green, %d amber pixels; want a closed green frame", good, warn)
	}
	// Not yet good: corner marks only (a quarter of each side, twice per corner).
	good, warn, _ = at(9, face.Position{Seq: 7, Frame: full, Box: box}, true)
	if warn < 1200 || warn > 3000 || good > 100 {
		t.Errorf("face failing a gate: %d green, %d amber pixels; want amber corners only", good, warn)
	}
	for name, c := range map[string]struct {
		seq uint64
		pos face.Position
		ok  bool
	}{
		"no face":             {7, face.Position{}, false},
		"stale":               {7 + maxGuideLag + 1, face.Position{Seq: 7, Frame: full, Box: box, Good: true}, true},
		"from a later frame":  {6, face.Position{Seq: 7, Frame: full, Box: box, Good: true}, true},
		"other frame size":    {7, face.Position{Seq: 7, Frame: image.Pt(320, 240), Box: box, Good: true}, true},
		"box outside a frame": {7, face.Position{Seq: 7, Frame: full, Box: image.Rect(500, 300, 700, 500), Good: true}, true},
	} {
		if good, warn, _ := at(c.seq, c.pos, c.ok); good+warn > 20 {
			t.Errorf("%s: %d green, %d amber pixels; want no guide", name, good, warn)
		}
	}
	// A frame at most previewWidth wide is not scaled.
	small := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 90, 90, 0), 240, 320, gocv.MatTypeCV8UC3)
	defer small.Close()
	b, err := previewJPEG(small, 1, face.Position{Seq: 1, Frame: image.Pt(320, 240), Box: image.Rect(100, 60, 220, 180), Good: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	if g := guidePixels(t, b, guideGood); g < 1000 {
		t.Errorf("unscaled preview: %d green pixels", g)
	}
	// Not a colour frame: encoded as it is, no guide, no crash.
	grey := gocv.NewMatWithSize(240, 320, gocv.MatTypeCV8UC1)
	defer grey.Close()
	if _, err := previewJPEG(grey, 1, face.Position{Seq: 1, Frame: image.Pt(320, 240), Box: image.Rect(100, 60, 220, 180), Good: true}, true); err != nil {
		t.Errorf("grey frame: %v", err)
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := previewJPEG(empty, 1, face.Position{}, false); err == nil {
		t.Error("empty frame encoded without error")
	}
}
