package face

import (
	"fmt"
	"image"
	"image/color"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"
	"kiosk/drivers/camera"
	"kiosk/internal/testmedia"
)

// faceCrop returns the primary face of a picture with a margin around its
// detector box, as an attacker would cut it out to paste it.
func faceCrop(t *testing.T, m *Models, img gocv.Mat) gocv.Mat {
	t.Helper()
	faces, err := m.Detect(img)
	if err != nil || len(faces) == 0 {
		t.Fatalf("impostor picture: %d faces, %v", len(faces), err)
	}
	r := scaleBox(faces[Primary(faces, image.Pt(img.Cols(), img.Rows()))].Box, 1.3, 1.3).Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	crop := img.Region(r)
	defer crop.Close()
	return crop.Clone()
}

// swapClip writes the first n frames of franck.mp4 into a folder; from
// frame `from` on, the face in each frame is covered by impostor, resized
// to his face box: the holder's face passes the match, then someone else
// takes his place in the same box.
func swapClip(t *testing.T, impostor gocv.Mat, from, n int) string {
	t.Helper()
	m := models(t)
	src, err := camera.NewSource(camera.Spec{Kind: camera.KindFile, Path: testmedia.Path(t, "franck.mp4")})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	frame := gocv.NewMat()
	defer frame.Close()
	var last image.Rectangle
	for i := range n {
		if err := src.Read(&frame); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i >= from {
			faces, err := m.Detect(frame)
			if err != nil {
				t.Fatal(err)
			}
			if len(faces) > 0 {
				last = faces[Primary(faces, image.Pt(frame.Cols(), frame.Rows()))].Box
			}
			if last.Empty() {
				t.Fatalf("frame %d: no face to cover", i)
			}
			r := scaleBox(last, 1.3, 1.3).Intersect(image.Rect(0, 0, frame.Cols(), frame.Rows()))
			small := gocv.NewMat()
			gocv.Resize(impostor, &small, r.Size(), 0, 0, gocv.InterpolationArea)
			roi := frame.Region(r)
			small.CopyTo(&roi)
			roi.Close()
			small.Close()
		}
		if !gocv.IMWrite(filepath.Join(dir, fmt.Sprintf("%04d.png", i)), frame) {
			t.Fatal("write frame")
		}
	}
	return dir
}

// The holder (franck) passes the match and liveness on the first frames
// of his video; then another person's smiling face, pasted over his at
// his box, must not consent for him: the first such frame fails the
// identity check, the step returns to matching and the newcomer does not
// match.
func TestConsentSwapAfterMatch(t *testing.T) {
	checkMats(t)
	for _, name := range []string{"chuck_crop.jpg", "queen20_crop.jpg"} {
		t.Run(name, func(t *testing.T) {
			img := decode(t, media(t, name))
			defer img.Close()
			crop := faceCrop(t, models(t), img)
			defer crop.Close()
			clip := swapClip(t, crop, 15, 15+24*6)
			d, _ := consent(t, media(t, "franck_01829.jpg"), clip, 24, false, nil)
			r := d.Result
			if r.Consent {
				t.Fatalf("%+v: someone else's smile consented for the holder", r)
			}
			if d.MatchedAt.IsZero() {
				t.Fatalf("test setup: the holder never matched on the first 15 frames (%+v)", r)
			}
			if d.Rematches == 0 || d.Smile.IdentityFailures == 0 {
				t.Errorf("rematches %d, identity failures %d: want the swap caught by the identity check", d.Rematches, d.Smile.IdentityFailures)
			}
			if r.Matched || r.Reason != ReasonMismatch {
				t.Errorf("%+v: want the newcomer refused as a mismatch", r)
			}
		})
	}
}

// A second face of comparable size in view during consent stops it: the
// holder smiles while someone else's face is beside his.
func TestConsentStopsOnSecondFace(t *testing.T) {
	checkMats(t)
	other := decode(t, readFile(t, filepath.Join(gocvDir(t), "images", "face.jpg")))
	defer other.Close()
	crop := faceCrop(t, models(t), other)
	defer crop.Close()
	m := models(t)
	src, err := camera.NewSource(camera.Spec{Kind: camera.KindFile, Path: testmedia.Path(t, "franck.mp4")})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	frame, wide := gocv.NewMat(), gocv.NewMat()
	defer frame.Close()
	defer wide.Close()
	// franck.mp4's first 10 s hold a smile. His face fills the frame, so
	// the frame is widened by repeating its right edge; from frame 15 on a
	// second face is in that room, pasted into a square of his box's side
	// (the detector finds it at about 0.6 of his area).
	for i := range 24 * 10 {
		if err := src.Read(&frame); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		gocv.CopyMakeBorder(frame, &wide, 0, 0, 0, 240, gocv.BorderReplicate, color.RGBA{})
		if i >= 15 {
			faces, err := m.Detect(wide)
			if err != nil || len(faces) == 0 {
				t.Fatalf("frame %d: %d faces, %v", i, len(faces), err)
			}
			b := faces[Primary(faces, image.Pt(wide.Cols(), wide.Rows()))].Box
			side := b.Dx()
			x := frame.Cols() + 20
			r := image.Rect(x, b.Min.Y, x+side, b.Min.Y+side).Intersect(image.Rect(0, 0, wide.Cols(), wide.Rows()))
			small := gocv.NewMat()
			gocv.Resize(crop, &small, r.Size(), 0, 0, gocv.InterpolationArea)
			roi := wide.Region(r)
			small.CopyTo(&roi)
			roi.Close()
			small.Close()
		}
		if !gocv.IMWrite(filepath.Join(dir, fmt.Sprintf("%04d.png", i)), wide) {
			t.Fatal("write frame")
		}
	}
	d, prog := consent(t, media(t, "franck_01829.jpg"), dir, 24, false, nil)
	if d.Result.Consent {
		t.Fatalf("%+v: consent with a second face in view", d.Result)
	}
	if d.Smile.SecondFace == 0 {
		t.Errorf("smile evidence %+v: no frame stopped for the second face", d.Smile)
	}
	var guided bool
	for _, p := range prog {
		guided = guided || p.Guidance == GuideOnePerson
	}
	if !guided {
		t.Errorf("progress %+v lacks %s", prog, GuideOnePerson)
	}
}
