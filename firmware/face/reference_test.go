package face

import (
	"errors"
	"image"
	"testing"

	"gocv.io/x/gocv"
	"kiosk/internal/testmedia"
)

// chipOf makes a chip-like portrait (JPEG 2000, 240×320, 12-15 KB) of the
// primary face of an encoded picture.
func chipOf(t *testing.T, m *Models, data []byte, grey bool) []byte {
	t.Helper()
	img := decode(t, data)
	defer img.Close()
	a, err := m.Analyze(img)
	if err != nil {
		t.Fatal(err)
	}
	a.Template.Wipe()
	jp2, err := ChipPortrait(img, a.Landmarks, ChipPortraitOptions{Grey: grey})
	if err != nil {
		t.Fatal(err)
	}
	return jp2
}

// A chip-like portrait is read back as the kiosk reads a DG2: the grey one
// is known to be grey, both pass the reference checks, and both still
// match another photo of the same man, and not another person.
func TestChipPortraitReference(t *testing.T) {
	checkMats(t)
	m := models(t)
	franck := media(t, "franck_01829.jpg")
	other := decode(t, media(t, "franck_04035.jpg"))
	defer other.Close()
	stranger := decode(t, media(t, "cage.jpg"))
	defer stranger.Close()
	for _, grey := range []bool{false, true} {
		jp2 := chipOf(t, m, franck, grey)
		if n := len(jp2); n < 12000 || n > 15000 {
			t.Errorf("grey %v: portrait of %d bytes, want 12-15 KB", grey, n)
		}
		img, err := gocv.IMDecode(jp2, gocv.IMReadUnchanged)
		if err != nil || img.Cols() != 240 || img.Rows() != 320 || (img.Channels() == 1) != grey {
			t.Errorf("grey %v: portrait %dx%d, %d channels, %v", grey, img.Cols(), img.Rows(), img.Channels(), err)
		}
		img.Close()
		ref, err := m.ReferenceFromImage(jp2, DefaultReferenceGates())
		if err != nil {
			t.Fatalf("grey %v: %v", grey, err)
		}
		if ref.Grey != grey || ref.Quality.InterEye < 50 || ref.Quality.InterEye > 70 {
			t.Errorf("grey %v: reference %+v; want grey=%v, inter-eye ≈ 60 (ISO token)", grey, ref.Quality, grey)
		}
		for _, tc := range []struct {
			img  gocv.Mat
			same bool
		}{{other, true}, {stranger, false}} {
			a, err := m.Analyze(tc.img)
			if err != nil {
				t.Fatal(err)
			}
			a.Template.Wipe()
			probe, err := m.EmbedProbe(tc.img, a.Landmarks, ref)
			if err != nil {
				t.Fatal(err)
			}
			s := Cosine(ref.Template, probe)
			probe.Wipe()
			t.Logf("grey %v, same %v: similarity %.3f", grey, tc.same, s)
			if (s >= DefaultThreshold) != tc.same {
				t.Errorf("grey %v: similarity %.3f with threshold %.3f, want match=%v", grey, s, DefaultThreshold, tc.same)
			}
		}
		ref.Wipe()
	}
}

// A grey reference is compared with a grey probe: the same frame embedded
// in colour and grey differs, and EmbedProbe picks by the reference.
func TestGreyProbe(t *testing.T) {
	checkMats(t)
	m := models(t)
	img := decode(t, media(t, "franck_02045.jpg"))
	defer img.Close()
	a, err := m.Analyze(img)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Template.Wipe()
	colour, err := m.EmbedProbe(img, a.Landmarks, &Reference{})
	if err != nil {
		t.Fatal(err)
	}
	defer colour.Wipe()
	grey, err := m.EmbedProbe(img, a.Landmarks, &Reference{Grey: true})
	if err != nil {
		t.Fatal(err)
	}
	defer grey.Wipe()
	if c := Cosine(colour, a.Template); c < 0.9999 {
		t.Errorf("colour probe differs from Analyze: %.5f", c)
	}
	if c := Cosine(colour, grey); c > 0.999 || c < 0.8 {
		t.Errorf("colour vs grey probe of one frame: %.4f; want close but not equal", c)
	}
}

// A chip photo whose face is too small, or turned, is declined for its
// quality with its own reason, before any camera frame is compared.
func TestReferenceQuality(t *testing.T) {
	checkMats(t)
	m := models(t)
	franck := decode(t, media(t, "franck_01829.jpg"))
	defer franck.Close()
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(franck, &small, image.Pt(franck.Cols()/8, franck.Rows()/8), 0, 0, gocv.InterpolationArea)
	buf, err := gocv.IMEncode(gocv.PNGFileExt, small)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte(nil), buf.GetBytes()...)
	buf.Close()
	_, err = m.ReferenceFromImage(data, DefaultReferenceGates())
	var qe *ReferenceQualityError
	if !errors.As(err, &qe) || qe.Check != "inter_eye" {
		t.Fatalf("tiny face: %v, want an inter_eye quality error", err)
	}
	if reason, ok := IsReferenceDecline(err); !ok || reason != ReasonReferenceQuality {
		t.Errorf("decline reason %q, %v", reason, ok)
	}
	g := DefaultReferenceGates()
	g.MaxYaw = 0.001 // no real face is that frontal
	if _, err := m.ReferenceFromImage(media(t, "franck_01829.jpg"), g); !errors.As(err, &qe) || qe.Check != "yaw" {
		t.Errorf("yaw limit: %v", err)
	}
	// The Verifier declines with the reason, reading no frame.
	d, _ := consent(t, data, testmedia.Path(t, "franck.mp4"), 24, false, nil)
	if d.Result.Reason != ReasonReferenceQuality || d.Quality.Frames != 0 {
		t.Errorf("%+v after %d frames: want reference_quality before any frame", d.Result, d.Quality.Frames)
	}
}

// The shifted liveness crop is square and inside the frame, however near
// an edge the face is.
func TestShiftedBox(t *testing.T) {
	frame := image.Pt(640, 480)
	for _, raw := range []image.Rectangle{
		image.Rect(300, 200, 360, 280), // centred
		image.Rect(0, 0, 80, 100),      // top-left corner
		image.Rect(580, 400, 640, 480), // bottom-right corner
		image.Rect(100, 50, 400, 450),  // larger than the frame allows
	} {
		b := shiftedBox(raw, frame)
		if b.Dx() != b.Dy() || !b.In(image.Rectangle{Max: frame}) {
			t.Errorf("%v: crop %v is not a square inside the frame", raw, b)
		}
		want := min(int(float64(max(raw.Dx(), raw.Dy()))*livenessScale+0.5), 480)
		if b.Dx() != want {
			t.Errorf("%v: side %d, want %d", raw, b.Dx(), want)
		}
		if c := raw.Min.Add(raw.Max).Div(2); !c.In(b) {
			t.Errorf("%v: crop %v lost the face centre", raw, b)
		}
	}
}

// FuzzReferenceFromImage feeds the chip photo path (DG2 image bytes from
// the card) arbitrary input: it must decline or succeed, never crash, and
// a success must carry a unit template.
func FuzzReferenceFromImage(f *testing.F) {
	m := models(f)
	f.Add([]byte("garbage"))
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe0})                                   // a JPEG header alone
	f.Add([]byte("\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 ")) // a JP2 signature alone
	f.Add(media(f, "franck_01829.jpg"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ref, err := m.ReferenceFromImage(data, DefaultReferenceGates())
		if err != nil {
			return
		}
		defer ref.Wipe()
		if c := Cosine(ref.Template, ref.Template); c < 0.999 || c > 1.001 {
			t.Fatalf("reference template with |t|² = %v", c)
		}
	})
}
