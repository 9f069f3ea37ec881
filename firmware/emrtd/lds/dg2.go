package lds

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"kiosk/firmware/emrtd/tlv"
)

// CBEFF tags of DG2 (9303-10 §4.7.2, ISO/IEC 7816-11 table C.1).
const (
	tagBIGT        tlv.Tag = 0x7F61 // biometric information group template
	tagBIT         tlv.Tag = 0x7F60 // biometric information template
	tagBHT         tlv.Tag = 0xA1   // biometric header template
	tagBDB         tlv.Tag = 0x5F2E // biometric data block
	tagBDBConstr   tlv.Tag = 0x7F2E // biometric data block, constructed encoding
	tagBITCount    tlv.Tag = 0x02
	tagHdrVersion  tlv.Tag = 0x80
	tagBioType     tlv.Tag = 0x81
	tagBioSubtype  tlv.Tag = 0x82
	tagFormatOwner tlv.Tag = 0x87
	tagFormatType  tlv.Tag = 0x88
)

// CBEFF values for an ISO/IEC 19794-5 face (9303-10 §4.7.2.1).
const (
	FormatOwnerJTC1SC37 uint16 = 0x0101
	FormatTypeFace      uint16 = 0x0008
	BiometricTypeFace   byte   = 0x02
)

// ImageFormat is the encoding of a face image, detected from its bytes.
type ImageFormat int

// Image formats of DG2 (19794-5 §5.7.2: image data type 0 JPEG, 1 JPEG 2000).
const (
	ImageUnknown ImageFormat = iota
	ImageJPEG                // ISO/IEC 10918 (FF D8 FF)
	ImageJP2                 // JPEG 2000 file format (ISO/IEC 15444-1 annex I)
	ImageJ2K                 // raw JPEG 2000 codestream (FF 4F FF 51)
)

func (f ImageFormat) String() string {
	switch f {
	case ImageJPEG:
		return "jpeg"
	case ImageJP2:
		return "jp2"
	case ImageJ2K:
		return "j2k"
	}
	return "unknown"
}

// IsJPEG2000 reports whether the image is JPEG 2000 (file or codestream).
func (f ImageFormat) IsJPEG2000() bool { return f == ImageJP2 || f == ImageJ2K }

// DetectImageFormat identifies JPEG, JP2 and raw J2K codestreams.
func DetectImageFormat(b []byte) ImageFormat {
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return ImageJPEG
	case bytes.HasPrefix(b, []byte{0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20}):
		return ImageJP2
	case bytes.HasPrefix(b, []byte{0xFF, 0x4F, 0xFF, 0x51}):
		return ImageJ2K
	}
	return ImageUnknown
}

// FeaturePoint is one 19794-5 §5.6 feature point (MPEG-4 numbering).
type FeaturePoint struct {
	Type  byte
	Code  byte // major code in the high nibble, minor in the low
	X, Y  uint16
	Extra uint16 // reserved
}

// Face is one facial image of a 19794-5:2005 record (§5.5 facial
// information, §5.6 feature points, §5.7 image information).
type Face struct {
	Gender          byte
	EyeColour       byte
	HairColour      byte
	FeatureMask     uint32 // 24 bits
	Expression      uint16
	Pose            [3]byte // yaw, pitch, roll
	PoseUncertainty [3]byte
	FeaturePoints   []FeaturePoint
	FaceImageType   byte // 0 basic, 1 full frontal, 2 token frontal
	ImageDataType   byte // 0 JPEG, 1 JPEG 2000
	Width, Height   uint16
	ColourSpace     byte
	SourceType      byte
	DeviceType      uint16
	Quality         uint16
	// Format is detected from Image; ImageDataType is what the record said.
	Format ImageFormat
	// Image aliases the parsed DG2 bytes: wiping that buffer wipes it.
	Image []byte
}

// DG2 is the parsed facial data group. The primary face is Faces[0].
type DG2 struct {
	Faces []Face
}

// Primary returns the first face.
func (d *DG2) Primary() (*Face, bool) {
	if len(d.Faces) == 0 {
		return nil, false
	}
	return &d.Faces[0], true
}

// 19794-5:2005 layout sizes.
const (
	facHeaderLen    = 14 // 'FAC\0', '010\0', record length (4), image count (2)
	facInfoLen      = 20
	facPointLen     = 8
	facImageInfoLen = 12
)

// ParseDG2 parses DG2 (9303-10 §4.7.2): 75 { 7F61 { 02 count, 7F60 {
// A1 header, 5F2E|7F2E 19794-5 record } ... } }.
func ParseDG2(b []byte) (*DG2, error) {
	v, err := tlv.Unwrap(b, TagDG2)
	if err != nil {
		return nil, malformed("DG2: %v", err)
	}
	group, err := tlv.Unwrap(v, tagBIGT)
	if err != nil {
		return nil, malformed("DG2: %v", err)
	}
	objs, err := tlv.ParseAll(group)
	if err != nil {
		return nil, malformed("DG2 group template: %v", err)
	}
	cnt, ok := tlv.Find(objs, tagBITCount)
	if !ok || len(cnt.Value) != 1 {
		return nil, malformed("DG2: instance count (02) missing")
	}
	d := &DG2{}
	nBIT := 0
	for _, o := range objs {
		if o.Tag != tagBIT {
			continue
		}
		nBIT++
		faces, err := parseBIT(o.Value)
		if err != nil {
			return nil, fmt.Errorf("DG2 template %d: %w", nBIT, err)
		}
		d.Faces = append(d.Faces, faces...)
	}
	if nBIT != int(cnt.Value[0]) {
		return nil, malformed("DG2: count says %d templates, found %d", cnt.Value[0], nBIT)
	}
	if len(d.Faces) == 0 {
		return nil, malformed("DG2: no face image")
	}
	return d, nil
}

func parseBIT(v []byte) ([]Face, error) {
	objs, err := tlv.ParseAll(v)
	if err != nil {
		return nil, malformed("%v", err)
	}
	hdr, ok := tlv.Find(objs, tagBHT)
	if !ok {
		return nil, malformed("biometric header template (A1) missing")
	}
	hobjs, err := tlv.ParseAll(hdr.Value)
	if err != nil {
		return nil, malformed("biometric header: %v", err)
	}
	if fo, ok := tlv.Find(hobjs, tagFormatOwner); ok && len(fo.Value) == 2 {
		ft, _ := tlv.Find(hobjs, tagFormatType)
		if binary.BigEndian.Uint16(fo.Value) != FormatOwnerJTC1SC37 || len(ft.Value) != 2 ||
			binary.BigEndian.Uint16(ft.Value) != FormatTypeFace {
			return nil, fmt.Errorf("%w: biometric format %X/%X is not an ISO/IEC 19794-5 face", ErrUnsupported, fo.Value, ft.Value)
		}
	}
	bdb, ok := tlv.Find(objs, tagBDB)
	if !ok {
		// 7F2E is the constructed-encoding variant; its value is read as the
		// record, as issued cards that use it do.
		if bdb, ok = tlv.Find(objs, tagBDBConstr); !ok {
			return nil, malformed("biometric data block (5F2E/7F2E) missing")
		}
	}
	return parseFaceRecord(bdb.Value)
}

// parseFaceRecord parses an ISO/IEC 19794-5:2005 facial record (§5.4-5.8).
func parseFaceRecord(r []byte) ([]Face, error) {
	if len(r) < facHeaderLen {
		return nil, malformed("face record of %d bytes", len(r))
	}
	if !bytes.Equal(r[0:4], []byte("FAC\x00")) {
		return nil, malformed("face record does not start with FAC")
	}
	if !bytes.Equal(r[4:8], []byte("010\x00")) {
		return nil, fmt.Errorf("%w: 19794-5 version %q (only 010 is supported)", ErrUnsupported, r[4:7])
	}
	recLen := binary.BigEndian.Uint32(r[8:12])
	if recLen < facHeaderLen || uint64(recLen) > uint64(len(r)) {
		return nil, malformed("face record length %d, %d bytes present", recLen, len(r))
	}
	n := int(binary.BigEndian.Uint16(r[12:14]))
	if n == 0 {
		return nil, malformed("face record with no image")
	}
	rest := r[facHeaderLen:recLen]
	// Each image needs at least 32 bytes, so n is bounded by the data
	// before anything is allocated.
	if n > len(rest)/(facInfoLen+facImageInfoLen) {
		return nil, malformed("%d images cannot fit in %d bytes", n, len(rest))
	}
	faces := make([]Face, 0, n)
	for i := 0; i < n; i++ {
		f, used, err := parseFace(rest)
		if err != nil {
			return nil, fmt.Errorf("face %d: %w", i+1, err)
		}
		faces = append(faces, f)
		rest = rest[used:]
	}
	return faces, nil
}

func parseFace(b []byte) (Face, int, error) {
	var f Face
	if len(b) < facInfoLen {
		return f, 0, malformed("facial information truncated")
	}
	blockLen := binary.BigEndian.Uint32(b[0:4])
	nfp := int(binary.BigEndian.Uint16(b[4:6]))
	min := uint64(facInfoLen) + uint64(nfp)*facPointLen + facImageInfoLen
	if uint64(blockLen) < min || uint64(blockLen) > uint64(len(b)) {
		return f, 0, malformed("facial record data length %d (needs %d, %d present)", blockLen, min, len(b))
	}
	f.Gender, f.EyeColour, f.HairColour = b[6], b[7], b[8]
	f.FeatureMask = uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11])
	f.Expression = binary.BigEndian.Uint16(b[12:14])
	copy(f.Pose[:], b[14:17])
	copy(f.PoseUncertainty[:], b[17:20])
	p := b[facInfoLen:blockLen]
	if nfp > 0 {
		f.FeaturePoints = make([]FeaturePoint, nfp)
		for i := range f.FeaturePoints {
			q := p[i*facPointLen:]
			f.FeaturePoints[i] = FeaturePoint{Type: q[0], Code: q[1],
				X: binary.BigEndian.Uint16(q[2:4]), Y: binary.BigEndian.Uint16(q[4:6]), Extra: binary.BigEndian.Uint16(q[6:8])}
		}
	}
	ii := p[nfp*facPointLen:]
	f.FaceImageType, f.ImageDataType = ii[0], ii[1]
	f.Width, f.Height = binary.BigEndian.Uint16(ii[2:4]), binary.BigEndian.Uint16(ii[4:6])
	f.ColourSpace, f.SourceType = ii[6], ii[7]
	f.DeviceType, f.Quality = binary.BigEndian.Uint16(ii[8:10]), binary.BigEndian.Uint16(ii[10:12])
	img := ii[facImageInfoLen:]
	if len(img) == 0 {
		return f, 0, malformed("empty image data")
	}
	f.Image = img[:len(img):len(img)]
	f.Format = DetectImageFormat(f.Image)
	return f, int(blockLen), nil
}

// NewFace prepares a Face from a JPEG or JPEG 2000 (JP2 or J2K) image with
// ICAO defaults: full frontal, 24-bit RGB, digital still camera.
func NewFace(img []byte) (Face, error) {
	format, w, h, err := ImageSize(img)
	if err != nil {
		return Face{}, err
	}
	f := Face{FaceImageType: 1, Width: uint16(w), Height: uint16(h), ColourSpace: 1, SourceType: 2,
		Format: format, Image: img}
	if format.IsJPEG2000() {
		f.ImageDataType = 1
	}
	return f, nil
}

// EncodeDG2 builds DG2 with one biometric information template per face,
// each holding a 19794-5:2005 record of one image.
func EncodeDG2(faces []Face) ([]byte, error) {
	if len(faces) == 0 || len(faces) > 255 {
		return nil, malformed("DG2 needs 1..255 faces, got %d", len(faces))
	}
	parts := [][]byte{tlv.Encode(tagBITCount, []byte{byte(len(faces))})}
	for i, f := range faces {
		rec, err := encodeFaceRecord(f)
		if err != nil {
			return nil, fmt.Errorf("DG2 face %d: %w", i+1, err)
		}
		hdr := tlv.Concat(
			tlv.Encode(tagHdrVersion, []byte{0x01, 0x01}),
			tlv.Encode(tagBioType, []byte{BiometricTypeFace}),
			tlv.Encode(tagBioSubtype, []byte{0x00}),
			tlv.Encode(tagFormatOwner, binary.BigEndian.AppendUint16(nil, FormatOwnerJTC1SC37)),
			tlv.Encode(tagFormatType, binary.BigEndian.AppendUint16(nil, FormatTypeFace)),
		)
		parts = append(parts, tlv.Encode(tagBIT, tlv.Concat(tlv.Encode(tagBHT, hdr), tlv.Encode(tagBDB, rec))))
	}
	return tlv.Encode(TagDG2, tlv.Encode(tagBIGT, tlv.Concat(parts...))), nil
}

func encodeFaceRecord(f Face) ([]byte, error) {
	if len(f.Image) == 0 {
		return nil, malformed("no image")
	}
	if len(f.FeaturePoints) > 0xFFFF {
		return nil, malformed("%d feature points", len(f.FeaturePoints))
	}
	blockLen := uint64(facInfoLen) + uint64(len(f.FeaturePoints))*facPointLen + facImageInfoLen + uint64(len(f.Image))
	total := facHeaderLen + blockLen
	if total > 0xFFFFFFFF {
		return nil, malformed("face record of %d bytes", total)
	}
	out := make([]byte, 0, total)
	out = append(out, "FAC\x00010\x00"...)
	out = binary.BigEndian.AppendUint32(out, uint32(total))
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint32(out, uint32(blockLen))
	out = binary.BigEndian.AppendUint16(out, uint16(len(f.FeaturePoints)))
	out = append(out, f.Gender, f.EyeColour, f.HairColour, byte(f.FeatureMask>>16), byte(f.FeatureMask>>8), byte(f.FeatureMask))
	out = binary.BigEndian.AppendUint16(out, f.Expression)
	out = append(out, f.Pose[:]...)
	out = append(out, f.PoseUncertainty[:]...)
	for _, p := range f.FeaturePoints {
		out = append(out, p.Type, p.Code)
		out = binary.BigEndian.AppendUint16(out, p.X)
		out = binary.BigEndian.AppendUint16(out, p.Y)
		out = binary.BigEndian.AppendUint16(out, p.Extra)
	}
	out = append(out, f.FaceImageType, f.ImageDataType)
	out = binary.BigEndian.AppendUint16(out, f.Width)
	out = binary.BigEndian.AppendUint16(out, f.Height)
	out = append(out, f.ColourSpace, f.SourceType)
	out = binary.BigEndian.AppendUint16(out, f.DeviceType)
	out = binary.BigEndian.AppendUint16(out, f.Quality)
	return append(out, f.Image...), nil
}
