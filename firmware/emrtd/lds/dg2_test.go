package lds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/jpeg"
	"reflect"
	"testing"

	"kiosk/firmware/emrtd/tlv"
)

func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testJP2 is a minimal JP2 file: signature, ftyp, jp2h{ihdr}, jp2c.
func testJP2(w, h uint32) []byte {
	box := func(typ string, body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(8+len(body))), append([]byte(typ), body...)...)
	}
	ihdr := binary.BigEndian.AppendUint32(nil, h)
	ihdr = binary.BigEndian.AppendUint32(ihdr, w)
	ihdr = append(ihdr, 0, 3, 7, 7, 0, 0)
	out := box("jP  ", []byte{0x0D, 0x0A, 0x87, 0x0A})
	out = append(out, box("ftyp", []byte("jp2 \x00\x00\x00\x00jp2 "))...)
	out = append(out, box("jp2h", box("ihdr", ihdr))...)
	return append(out, box("jp2c", testJ2K(w, h))...)
}

// testJ2K is the start of a codestream: SOC, SIZ (one component).
func testJ2K(w, h uint32) []byte {
	b := []byte{0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00}
	for _, v := range []uint32{w + 5, h + 7, 5, 7, w, h, 0, 0} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return append(b, 0x00, 0x01, 0x07, 0x01, 0x01, 0xFF, 0xD9)
}

func TestImageSize(t *testing.T) {
	for _, tt := range []struct {
		name   string
		img    []byte
		format ImageFormat
	}{
		{"jpeg", testJPEG(t, 33, 47), ImageJPEG},
		{"jp2", testJP2(33, 47), ImageJP2},
		{"j2k", testJ2K(33, 47), ImageJ2K},
	} {
		f, w, h, err := ImageSize(tt.img)
		if err != nil || f != tt.format || w != 33 || h != 47 {
			t.Errorf("%s: %v %dx%d %v", tt.name, f, w, h, err)
		}
	}
	for name, img := range map[string][]byte{
		"gif":            []byte("GIF89a"),
		"truncated jpeg": testJPEG(t, 8, 8)[:20],
		"jp2 no ihdr":    testJP2(1, 1)[:32],
		"j2k truncated":  testJ2K(1, 1)[:10],
		"jp2 huge box":   append([]byte{0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A}, 0xFF, 0xFF, 0xFF, 0xFF, 'j', 'p', '2', 'h'),
		"too wide":       testJ2K(70000, 1),
	} {
		if _, _, _, err := ImageSize(img); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDG2RoundTrip(t *testing.T) {
	j := testJPEG(t, 24, 32)
	f1, err := NewFace(j)
	if err != nil {
		t.Fatal(err)
	}
	f1.FeaturePoints = []FeaturePoint{{Type: 1, Code: 0x0C, X: 10, Y: 12}, {Type: 1, Code: 0x0D, X: 14, Y: 12}}
	f1.Pose = [3]byte{1, 2, 3}
	f1.FeatureMask = 0x000003
	f2, err := NewFace(testJP2(640, 480))
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeDG2([]Face{f1, f2})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDG2(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Faces, []Face{f1, f2}) {
		t.Fatalf("got %+v\nwant %+v", d.Faces, []Face{f1, f2})
	}
	p, ok := d.Primary()
	if !ok || p.Format != ImageJPEG || p.Width != 24 || p.Height != 32 || !bytes.Equal(p.Image, j) {
		t.Fatalf("primary %+v", p)
	}
	if d.Faces[1].ImageDataType != 1 || !d.Faces[1].Format.IsJPEG2000() {
		t.Fatal("JP2 face")
	}
	// Image aliases the DG2 buffer, so wiping the buffer wipes the face.
	for i := range b {
		b[i] = 0
	}
	if p.Image[0] != 0 {
		t.Fatal("image does not alias the input")
	}
}

// record builds a 19794-5 record by hand: n images in one record.
func record(imgs ...[]byte) []byte {
	var body []byte
	for _, img := range imgs {
		fi := binary.BigEndian.AppendUint32(nil, uint32(20+12+len(img)))
		fi = append(fi, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		ii := []byte{1, 0, 0, 8, 0, 8, 1, 2, 0, 0, 0, 0}
		body = append(body, append(append(fi, ii...), img...)...)
	}
	r := []byte("FAC\x00010\x00")
	r = binary.BigEndian.AppendUint32(r, uint32(14+len(body)))
	r = binary.BigEndian.AppendUint16(r, uint16(len(imgs)))
	return append(r, body...)
}

func dg2With(count byte, bdbTag tlv.Tag, rec []byte) []byte {
	hdr := tlv.Encode(0xA1, tlv.Concat(tlv.Encode(0x87, []byte{1, 1}), tlv.Encode(0x88, []byte{0, 8})))
	bit := tlv.Encode(0x7F60, tlv.Concat(hdr, tlv.Encode(bdbTag, rec)))
	return tlv.Encode(0x75, tlv.Encode(0x7F61, tlv.Concat(tlv.Encode(0x02, []byte{count}), bit)))
}

func TestDG2Variants(t *testing.T) {
	j := testJPEG(t, 8, 8)
	d, err := ParseDG2(dg2With(1, 0x5F2E, record(j, testJ2K(8, 8))))
	if err != nil || len(d.Faces) != 2 || d.Faces[0].Format != ImageJPEG || d.Faces[1].Format != ImageJ2K {
		t.Fatalf("two images in one record: %v %+v", err, d)
	}
	if d.Faces[0].Gender != 1 || d.Faces[0].EyeColour != 2 || d.Faces[0].HairColour != 3 {
		t.Errorf("facial information %+v", d.Faces[0])
	}
	if _, err := ParseDG2(dg2With(1, 0x7F2E, record(j))); err != nil {
		t.Errorf("7F2E data block: %v", err)
	}
	// Unknown image bytes are returned, flagged unknown.
	d, err = ParseDG2(dg2With(1, 0x5F2E, record([]byte("not an image"))))
	if err != nil || d.Faces[0].Format != ImageUnknown {
		t.Errorf("unknown image: %v", err)
	}
}

func TestDG2Hostile(t *testing.T) {
	j := testJPEG(t, 8, 8)
	good := record(j)
	set := func(b []byte, off int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[off:], v)
		return c
	}
	tests := map[string]struct {
		dg2  []byte
		want error
	}{
		"4 GB record length":      {dg2With(1, 0x5F2E, set(good, 8, 0xFF, 0xFF, 0xFF, 0xFF)), ErrMalformed},
		"65535 images":            {dg2With(1, 0x5F2E, set(good, 12, 0xFF, 0xFF)), ErrMalformed},
		"zero images":             {dg2With(1, 0x5F2E, set(good, 12, 0, 0)), ErrMalformed},
		"4 GB facial block":       {dg2With(1, 0x5F2E, set(good, 14, 0xFF, 0xFF, 0xFF, 0xFF)), ErrMalformed},
		"65535 feature points":    {dg2With(1, 0x5F2E, set(good, 18, 0xFF, 0xFF)), ErrMalformed},
		"facial block too short":  {dg2With(1, 0x5F2E, set(good, 14, 0, 0, 0, 31)), ErrMalformed},
		"no image bytes":          {dg2With(1, 0x5F2E, record(nil)), ErrMalformed},
		"not FAC":                 {dg2With(1, 0x5F2E, set(good, 0, 'F', 'I', 'R')), ErrMalformed},
		"19794-5:2011":            {dg2With(1, 0x5F2E, set(good, 4, '0', '3', '0')), ErrUnsupported},
		"count mismatch":          {dg2With(2, 0x5F2E, good), ErrMalformed},
		"no data block":           {dg2With(1, 0x5F2F, good), ErrMalformed},
		"short record":            {dg2With(1, 0x5F2E, good[:10]), ErrMalformed},
		"wrong file tag":          {append([]byte{0x61}, dg2With(1, 0x5F2E, good)[1:]...), ErrMalformed},
		"fingerprint format type": {bytes.Replace(dg2With(1, 0x5F2E, good), []byte{0x88, 0x02, 0x00, 0x08}, []byte{0x88, 0x02, 0x00, 0x07}, 1), ErrUnsupported},
	}
	for name, tt := range tests {
		if _, err := ParseDG2(tt.dg2); !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", name, err, tt.want)
		}
	}
}

func FuzzParseDG2(f *testing.F) {
	j := testJPEG(f, 8, 8)
	face, _ := NewFace(j)
	face.FeaturePoints = []FeaturePoint{{Type: 1, Code: 0x0C, X: 1, Y: 2}}
	b, _ := EncodeDG2([]Face{face})
	f.Add(b)
	f.Add(dg2With(1, 0x5F2E, record(j, testJ2K(4, 4))))
	f.Add(dg2With(1, 0x7F2E, record(testJP2(4, 4))))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDG2(b)
		if err != nil {
			return
		}
		if len(d.Faces) == 0 {
			t.Fatal("parsed without faces")
		}
		total := 0
		for _, f := range d.Faces {
			total += len(f.Image) + 8*len(f.FeaturePoints)
			_, _, _, _ = ImageSize(f.Image)
		}
		if total > len(b) {
			t.Fatalf("faces hold %d bytes, input %d", total, len(b))
		}
	})
}

func TestCOM(t *testing.T) {
	c := &COM{LDSVersion: "0107", UnicodeVersion: "040000", Tags: []tlv.Tag{TagDG1, TagDG2, TagDG14, 0x99}}
	b, err := EncodeCOM(c)
	if err != nil {
		t.Fatal(err)
	}
	// 9303-10 §4.6.1 layout: 60 L 5F01 04 "0107" 5F36 06 "040000" 5C n tags.
	want := append([]byte{0x60, 0x16, 0x5F, 0x01, 0x04}, "0107"...)
	want = append(append(want, 0x5F, 0x36, 0x06), "040000"...)
	want = append(want, 0x5C, 0x04, 0x61, 0x75, 0x6E, 0x99)
	if !bytes.Equal(b, want) {
		t.Fatalf("got % X\nwant % X", b, want)
	}
	c2, err := ParseCOM(b)
	if err != nil || !reflect.DeepEqual(c, c2) {
		t.Fatalf("%v %+v", err, c2)
	}
	if got := c2.DataGroups(); !reflect.DeepEqual(got, []int{1, 2, 14}) {
		t.Errorf("DataGroups %v", got)
	}
	for name, bad := range map[string][]byte{
		"no tag list":   b[:len(b)-6],
		"wrong version": bytes.Replace(b, []byte("0107"), []byte("01x7"), 1),
		"wrong tag":     append([]byte{0x61}, b[1:]...),
		"empty":         {},
	} {
		if _, err := ParseCOM(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := EncodeCOM(&COM{LDSVersion: "17", UnicodeVersion: "040000"}); err == nil {
		t.Error("bad version encoded")
	}
	if _, err := EncodeCOM(&COM{LDSVersion: "0107", UnicodeVersion: "040000", Tags: []tlv.Tag{0x5F1F}}); err == nil {
		t.Error("two-byte tag encoded")
	}
}

func FuzzParseCOM(f *testing.F) {
	b, _ := EncodeCOM(&COM{LDSVersion: "0107", UnicodeVersion: "040000", Tags: []tlv.Tag{TagDG1, TagDG2}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCOM(b)
		if err != nil {
			return
		}
		if len(c.Tags) > len(b) {
			t.Fatal("more tags than bytes")
		}
		if _, err := EncodeCOM(c); err != nil {
			t.Fatalf("parsed COM does not re-encode: %v", err)
		}
	})
}

func TestFiles(t *testing.T) {
	f, ok := DGFile(2)
	if !ok || f.FID != 0x0102 || f.SFI != 2 || f.Tag != 0x75 {
		t.Errorf("DG2 %+v", f)
	}
	f, _ = DGFile(15)
	if f.FID != 0x010F || f.Tag != TagDG15 {
		t.Errorf("DG15 %+v", f)
	}
	if _, ok := DGFile(17); ok {
		t.Error("DG17")
	}
	for n := 1; n <= 16; n++ {
		f, _ := DGFile(n)
		g, ok := FileForFID(f.FID)
		if !ok || g != f || DGForTag(f.Tag) != n {
			t.Errorf("DG%d lookups", n)
		}
	}
	if g, _ := FileForFID(0x011D); g.Tag != TagSOD {
		t.Error("SOD")
	}
	if g, _ := FileForFID(0x011E); g.Tag != TagCOM {
		t.Error("COM")
	}
}
