// Package tlv parses and builds BER-TLV data objects as used on eMRTD chips
// (ISO/IEC 7816-4 §5.2, ASN.1 BER of ITU-T X.690 §8.1 restricted to
// definite lengths; ICAO 9303-10 §4 uses these for every LDS file).
//
// The parser is defensive: chip data is hostile input. Lengths are checked
// against the remaining data before anything is sliced, tags are at most
// 4 bytes and lengths at most 4 bytes, and indefinite lengths (which 9303
// never uses) are rejected.
package tlv

import (
	"errors"
	"fmt"
)

// Tag is a tag as its encoded bytes read big-endian: 0x61, 0x5F1F, 0x7F61.
type Tag uint32

// Constructed reports whether the tag's first byte has the constructed bit
// (X.690 §8.1.2.5).
func (t Tag) Constructed() bool {
	b := uint32(t)
	for b > 0xFF {
		b >>= 8
	}
	return b&0x20 != 0
}

func (t Tag) String() string { return fmt.Sprintf("%02X", uint32(t)) }

// Object is one data object. Value aliases the parsed input.
type Object struct {
	Tag   Tag
	Value []byte
}

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed TLV")

// Error says where the data broke.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("malformed TLV at offset %d: %s", e.Offset, e.Msg) }
func (e *Error) Unwrap() error { return ErrMalformed }

// Read parses one object from b and returns it with the bytes after it.
func Read(b []byte) (Object, []byte, error) {
	o, n, err := read(b, 0)
	if err != nil {
		return Object{}, nil, err
	}
	return o, b[n:], nil
}

func read(b []byte, base int) (Object, int, error) {
	if len(b) == 0 {
		return Object{}, 0, &Error{base, "no data"}
	}
	i := 0
	tag := uint32(b[0])
	i++
	if b[0]&0x1F == 0x1F { // X.690 §8.1.2.4: high tag number form
		for {
			if i >= len(b) {
				return Object{}, 0, &Error{base + i, "truncated tag"}
			}
			if i >= 4 {
				return Object{}, 0, &Error{base, "tag longer than 4 bytes"}
			}
			tag = tag<<8 | uint32(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return Object{}, 0, &Error{base + i, "missing length"}
	}
	l := int(b[i])
	i++
	if l == 0x80 {
		return Object{}, 0, &Error{base + i - 1, "indefinite length"}
	}
	if l > 0x80 { // X.690 §8.1.3.5: long form
		n := l & 0x7F
		if n > 4 {
			return Object{}, 0, &Error{base + i - 1, fmt.Sprintf("length field of %d bytes", n)}
		}
		if len(b)-i < n {
			return Object{}, 0, &Error{base + i, "truncated length"}
		}
		l = 0
		for _, c := range b[i : i+n] {
			l = l<<8 | int(c)
		}
		i += n
		if l < 0 {
			return Object{}, 0, &Error{base + i, "length overflow"}
		}
	}
	if l > len(b)-i {
		return Object{}, 0, &Error{base + i, fmt.Sprintf("length %d exceeds the %d bytes left", l, len(b)-i)}
	}
	return Object{Tag: Tag(tag), Value: b[i : i+l : i+l]}, i + l, nil
}

// ParseAll parses a concatenation of objects that fills b exactly.
func ParseAll(b []byte) ([]Object, error) {
	var out []Object
	off := 0
	for off < len(b) {
		o, n, err := read(b[off:], off)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
		off += n
	}
	return out, nil
}

// Children parses o's value as a sequence of objects.
func (o Object) Children() ([]Object, error) {
	if !o.Tag.Constructed() {
		return nil, &Error{0, fmt.Sprintf("tag %s is primitive", o.Tag)}
	}
	return ParseAll(o.Value)
}

// Find returns the first object with tag.
func Find(objs []Object, tag Tag) (Object, bool) {
	for _, o := range objs {
		if o.Tag == tag {
			return o, true
		}
	}
	return Object{}, false
}

// Unwrap reads exactly one object with the wanted tag from b (trailing
// bytes are an error) and returns its value.
func Unwrap(b []byte, want Tag) ([]byte, error) {
	o, rest, err := Read(b)
	if err != nil {
		return nil, err
	}
	if o.Tag != want {
		return nil, &Error{0, fmt.Sprintf("tag %s, want %s", o.Tag, want)}
	}
	if len(rest) != 0 {
		return nil, &Error{len(b) - len(rest), fmt.Sprintf("%d bytes after the object", len(rest))}
	}
	return o.Value, nil
}

// EncodeLength returns the definite-form length octets for n (DER: the
// shortest form).
func EncodeLength(n int) []byte {
	switch {
	case n < 0x80:
		return []byte{byte(n)}
	case n <= 0xFF:
		return []byte{0x81, byte(n)}
	case n <= 0xFFFF:
		return []byte{0x82, byte(n >> 8), byte(n)}
	case n <= 0xFFFFFF:
		return []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	default:
		return []byte{0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
}

// EncodeTag returns the tag's bytes.
func EncodeTag(t Tag) []byte {
	switch {
	case t > 0xFFFFFF:
		return []byte{byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t)}
	case t > 0xFFFF:
		return []byte{byte(t >> 16), byte(t >> 8), byte(t)}
	case t > 0xFF:
		return []byte{byte(t >> 8), byte(t)}
	default:
		return []byte{byte(t)}
	}
}

// Encode builds one object. For a constructed object pass the encoded
// children concatenated as value (see Concat).
func Encode(t Tag, value []byte) []byte {
	tb := EncodeTag(t)
	lb := EncodeLength(len(value))
	out := make([]byte, 0, len(tb)+len(lb)+len(value))
	out = append(out, tb...)
	out = append(out, lb...)
	return append(out, value...)
}

// Concat joins encoded objects.
func Concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
