package storetest

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/provisioning/hubstore"
)

// testJPEG is a small, valid JPEG whose bytes depend on shade.
func testJPEG(t *testing.T, shade uint8) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 48, 64))
	for i := range img.Pix {
		img.Pix[i] = shade + uint8(i%7)
	}
	img.SetGray(3, 3, color.Gray{Y: 255 - shade})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// enrolments: a face round-trips, a second enrolment replaces the first,
// removal forgets it, an unknown identity has none, bad input is refused
// and stores nothing, and retention leaves enrolments alone.
func enrolments(t *testing.T, s hubstore.Store) {
	defer s.Close()
	e, ok := s.(hubstore.EnrolmentStore)
	if !ok {
		t.Fatalf("%T does not implement hubstore.EnrolmentStore", s)
	}
	ctx := context.Background()
	a, b := testJPEG(t, 40), testJPEG(t, 120)
	if err := e.EnrolFace(ctx, "EID-1", a, day0); err != nil {
		t.Fatal(err)
	}
	if f, err := e.FaceReference(ctx, "EID-1"); err != nil || !bytes.Equal(f, a) {
		t.Fatalf("enrolled face: %d bytes, %v", len(f), err)
	}
	if err := e.EnrolFace(ctx, "EID-1", b, day0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if f, err := e.FaceReference(ctx, "EID-1"); err != nil || !bytes.Equal(f, b) {
		t.Fatalf("re-enrolled face: %d bytes, %v", len(f), err)
	}
	if f, err := e.FaceReference(ctx, "EID-2"); err != nil || f != nil {
		t.Fatalf("unknown identity: %d bytes, %v", len(f), err)
	}
	big := append(bytes.Clone(a), make([]byte, hub.MaxFaceRef)...)
	for _, c := range []struct {
		id   string
		face []byte
	}{
		{"", a}, {string(make([]byte, hubstore.MaxIdentity+1)), a}, {"EID 3", a}, {"EID-\n3", a},
		{"EID-3", nil}, {"EID-3", []byte("not a jpeg")}, {"EID-3", a[:len(a)/2]}, {"EID-3", big},
	} {
		if err := e.EnrolFace(ctx, c.id, c.face, day0); !errors.Is(err, hubstore.ErrBadEnrolment) {
			t.Errorf("enrol %q with %d bytes: %v, want ErrBadEnrolment", c.id, len(c.face), err)
		}
	}
	if f, err := e.FaceReference(ctx, "EID-3"); err != nil || f != nil {
		t.Fatalf("a refused enrolment stored %d bytes (%v)", len(f), err)
	}
	if _, err := s.Prune(ctx, day0.Add(1000*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if f, err := e.FaceReference(ctx, "EID-1"); err != nil || !bytes.Equal(f, b) {
		t.Fatalf("after retention: %d bytes, %v", len(f), err)
	}
	if err := e.RemoveFace(ctx, "EID-1"); err != nil {
		t.Fatal(err)
	}
	if f, err := e.FaceReference(ctx, "EID-1"); err != nil || f != nil {
		t.Fatalf("removed face: %d bytes, %v", len(f), err)
	}
	if err := e.RemoveFace(ctx, "EID-1"); !errors.Is(err, hubstore.ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
}
