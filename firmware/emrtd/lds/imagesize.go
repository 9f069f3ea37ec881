package lds

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/jpeg"
)

// ImageSize returns the format and pixel size of a JPEG, JP2 or J2K image,
// read from its headers (no pixel decoding).
func ImageSize(img []byte) (ImageFormat, int, int, error) {
	format := DetectImageFormat(img)
	var w, h int
	var err error
	switch format {
	case ImageJPEG:
		cfg, e := jpeg.DecodeConfig(bytes.NewReader(img))
		if e != nil {
			return format, 0, 0, malformed("JPEG header: %v", e)
		}
		w, h = cfg.Width, cfg.Height
	case ImageJP2:
		w, h, err = jp2Size(img)
	case ImageJ2K:
		w, h, err = j2kSize(img)
	default:
		return format, 0, 0, fmt.Errorf("%w: image is neither JPEG nor JPEG 2000", ErrUnsupported)
	}
	if err != nil {
		return format, 0, 0, err
	}
	if w <= 0 || h <= 0 || w > 0xFFFF || h > 0xFFFF {
		return format, 0, 0, malformed("image size %dx%d out of range", w, h)
	}
	return format, w, h, nil
}

// jp2Size finds jp2h/ihdr (ISO/IEC 15444-1 §I.5.3.1) among the boxes.
func jp2Size(b []byte) (int, int, error) {
	boxes := func(b []byte, f func(typ string, body []byte) bool) error {
		for len(b) >= 8 {
			l := uint64(binary.BigEndian.Uint32(b[0:4]))
			typ := string(b[4:8])
			hdr := uint64(8)
			switch l {
			case 0:
				l = uint64(len(b))
			case 1:
				if len(b) < 16 {
					return malformed("JP2 box %q truncated", typ)
				}
				l, hdr = binary.BigEndian.Uint64(b[8:16]), 16
			}
			if l < hdr || l > uint64(len(b)) {
				return malformed("JP2 box %q length %d", typ, l)
			}
			if f(typ, b[hdr:l]) {
				return nil
			}
			b = b[l:]
		}
		return nil
	}
	w, h := 0, 0
	var inner error
	err := boxes(b, func(typ string, body []byte) bool {
		if typ != "jp2h" {
			return false
		}
		inner = boxes(body, func(typ string, body []byte) bool {
			if typ == "ihdr" && len(body) >= 8 {
				h, w = int(binary.BigEndian.Uint32(body[0:4])), int(binary.BigEndian.Uint32(body[4:8]))
				return true
			}
			return false
		})
		return true
	})
	if err == nil {
		err = inner
	}
	if err != nil {
		return 0, 0, err
	}
	if w == 0 {
		return 0, 0, malformed("JP2 without an image header box")
	}
	return w, h, nil
}

// j2kSize reads the SIZ marker segment (ISO/IEC 15444-1 §A.5.1) that must
// follow SOC.
func j2kSize(b []byte) (int, int, error) {
	if len(b) < 4+2+2+16 {
		return 0, 0, malformed("J2K codestream truncated")
	}
	s := b[4:] // after FF4F FF51
	x, y := binary.BigEndian.Uint32(s[4:8]), binary.BigEndian.Uint32(s[8:12])
	xo, yo := binary.BigEndian.Uint32(s[12:16]), binary.BigEndian.Uint32(s[16:20])
	if xo >= x || yo >= y {
		return 0, 0, malformed("J2K SIZ offsets beyond the image")
	}
	return int(x - xo), int(y - yo), nil
}
