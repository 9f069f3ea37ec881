package face

import (
	"image"
	"testing"

	"gocv.io/x/gocv"
)

// Face pixels are zeroed before their memory is freed: images and the 4-D
// blobs the models take alike.
func TestZeroBeforeClose(t *testing.T) {
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(200, 150, 100, 0), 112, 112, gocv.MatTypeCV8UC3)
	defer img.Close()
	blob := gocv.BlobFromImage(img, 1.0/128, image.Pt(112, 112), gocv.NewScalar(127, 127, 127, 0), true, false)
	defer blob.Close()
	zero(&img)
	zero(&blob)
	if s := img.Sum(); s.Val1 != 0 || s.Val2 != 0 || s.Val3 != 0 {
		t.Errorf("image not zeroed: %v", s)
	}
	f, err := blob.DataPtrFloat32()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range f {
		if v != 0 {
			t.Fatalf("blob value %d is %v after zeroing", i, v)
		}
	}
	var empty gocv.Mat
	zero(&empty) // a never-made Mat: nothing to do, no crash
}
