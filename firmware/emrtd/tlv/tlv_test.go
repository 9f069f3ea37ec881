package tlv

import (
	"bytes"
	"errors"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		tag  Tag
		val  []byte
		rest int
	}{
		{"short", []byte{0x5A, 0x02, 1, 2, 9}, 0x5A, []byte{1, 2}, 1},
		{"two-byte tag", []byte{0x5F, 0x1F, 0x01, 0xAA}, 0x5F1F, []byte{0xAA}, 0},
		{"three-byte tag", []byte{0x7F, 0x81, 0x01, 0x00}, 0x7F8101, []byte{}, 0},
		{"long 81", append([]byte{0x04, 0x81, 0x80}, make([]byte, 0x80)...), 0x04, make([]byte, 0x80), 0},
		{"long 82", append([]byte{0x75, 0x82, 0x01, 0x00}, make([]byte, 256)...), 0x75, make([]byte, 256), 0},
		{"non-minimal long form", []byte{0x04, 0x82, 0x00, 0x01, 0x7F}, 0x04, []byte{0x7F}, 0},
	}
	for _, tt := range tests {
		o, rest, err := Read(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if o.Tag != tt.tag || !bytes.Equal(o.Value, tt.val) || len(rest) != tt.rest {
			t.Fatalf("%s: got %v %x rest %d", tt.name, o.Tag, o.Value, len(rest))
		}
	}
}

func TestReadErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":            {},
		"no length":        {0x5A},
		"truncated tag":    {0x5F},
		"tag too long":     {0x5F, 0x81, 0x81, 0x81, 0x01, 0x00},
		"indefinite":       {0x30, 0x80, 0x00, 0x00},
		"length too large": {0x04, 0x05, 1, 2},
		"length bytes > 4": {0x04, 0x85, 0, 0, 0, 0, 1},
		"truncated long":   {0x04, 0x82, 0x01},
		"huge length":      {0x04, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0},
	} {
		if _, _, err := Read(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000} {
		for _, tag := range []Tag{0x04, 0x5F1F, 0x7F61, 0x7F8101} {
			v := bytes.Repeat([]byte{0xA5}, n)
			enc := Encode(tag, v)
			o, rest, err := Read(enc)
			if err != nil || o.Tag != tag || !bytes.Equal(o.Value, v) || len(rest) != 0 {
				t.Fatalf("tag %v len %d: %v", tag, n, err)
			}
		}
	}
}

func TestChildrenAndFind(t *testing.T) {
	inner := Concat(Encode(0x5F01, []byte("0107")), Encode(0x5C, []byte{0x61, 0x75}))
	outer := Encode(0x60, inner)
	o, _, err := Read(outer)
	if err != nil {
		t.Fatal(err)
	}
	kids, err := o.Children()
	if err != nil || len(kids) != 2 {
		t.Fatalf("children: %v %d", err, len(kids))
	}
	if k, ok := Find(kids, 0x5C); !ok || !bytes.Equal(k.Value, []byte{0x61, 0x75}) {
		t.Fatal("Find 5C")
	}
	if _, err := kids[0].Children(); err == nil {
		t.Fatal("primitive object parsed as constructed")
	}
	if v, err := Unwrap(outer, 0x60); err != nil || !bytes.Equal(v, inner) {
		t.Fatalf("Unwrap: %v", err)
	}
	if _, err := Unwrap(append(outer, 0), 0x60); err == nil {
		t.Fatal("Unwrap accepted trailing data")
	}
	if _, err := Unwrap(outer, 0x61); err == nil {
		t.Fatal("Unwrap accepted the wrong tag")
	}
}

// Appending to a parsed value must not overwrite the input after it.
func TestValueCapacityIsClipped(t *testing.T) {
	in := []byte{0x04, 0x01, 0xAA, 0xBB}
	o, _, err := Read(in)
	if err != nil || !bytes.Equal(o.Value, []byte{0xAA}) {
		t.Fatalf("Read = %X, %v", o.Value, err)
	}
	_ = append(o.Value, 0xCC)
	if in[3] != 0xBB {
		t.Fatal("append through Value overwrote the input")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Encode(0x60, Concat(Encode(0x5F01, []byte("0107")), Encode(0x5C, []byte{0x61, 0x75}))))
	f.Add([]byte{0x7F, 0x61, 0x82, 0x00, 0x03, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, err := ParseAll(b)
		if err != nil {
			return
		}
		// Every object re-encodes to something that parses to the same.
		for _, o := range objs {
			o2, rest, err := Read(Encode(o.Tag, o.Value))
			if err != nil || len(rest) != 0 || o2.Tag != o.Tag || !bytes.Equal(o2.Value, o.Value) {
				t.Fatalf("round trip of %v failed: %v", o.Tag, err)
			}
			if o.Tag.Constructed() {
				_, _ = o.Children()
			}
		}
	})
}
