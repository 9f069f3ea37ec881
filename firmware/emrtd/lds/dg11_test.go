package lds

import (
	"bytes"
	"errors"
	"testing"
)

func TestDG11DG12RoundTrip(t *testing.T) {
	d11 := &DG11{FullName: "MUSTERMANN<<ERIKA", PersonalNumber: "123", FullDateOfBirth: "19640812",
		PlaceOfBirth: "BERLIN", Address: "HEIDESTRASSE 17<KOELN", Profession: "ENGINEER"}
	b := EncodeDG11(d11)
	if b[0] != 0x6B {
		t.Fatalf("tag %X", b[0])
	}
	got, err := ParseDG11(b)
	if err != nil || *got != *d11 {
		t.Fatalf("DG11 %+v %v", got, err)
	}
	d12 := &DG12{IssuingAuthority: "CITY OF KOELN", DateOfIssue: "20240105", PersonalizationTime: "20240105101500"}
	g12, err := ParseDG12(EncodeDG12(d12))
	if err != nil || *g12 != *d12 {
		t.Fatalf("DG12 %+v %v", g12, err)
	}
	// 9303-10 §4.7.11 layout: 6B L 5C [tags] then the fields.
	want := []byte{0x6B, 0x0D, 0x5C, 0x02, 0x5F, 0x11, 0x5F, 0x11, 0x06, 'B', 'E', 'R', 'L', 'I', 'N'}
	if b := EncodeDG11(&DG11{PlaceOfBirth: "BERLIN"}); !bytes.Equal(b, want) {
		t.Fatalf("encoding % X", b)
	}
}

func TestDG11Malformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":            {},
		"wrong tag":        {0x6C, 0x02, 0x5C, 0x00},
		"no tag list":      {0x6B, 0x04, 0x5F, 0x11, 0x01, 'X'},
		"unlisted field":   {0x6B, 0x06, 0x5C, 0x00, 0x5F, 0x11, 0x01, 'X'},
		"truncated tag":    {0x6B, 0x03, 0x5C, 0x01, 0x5F},
		"bad length":       {0x6B, 0x80, 0x5C, 0x00, 0x00, 0x00},
		"longer than data": {0x6B, 0x20, 0x5C, 0x00},
	} {
		if _, err := ParseDG11(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseDG11DG12(f *testing.F) {
	f.Add(EncodeDG11(&DG11{FullName: "A<<B", PlaceOfBirth: "X"}))
	f.Add(EncodeDG12(&DG12{IssuingAuthority: "Y", DateOfIssue: "20240101"}))
	f.Add([]byte{0x6B, 0x03, 0x5C, 0x01, 0x5F})
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := ParseDG11(b); err == nil {
			if again, err := ParseDG11(EncodeDG11(d)); err != nil || *again != *d {
				t.Fatalf("DG11 re-encode: %+v %v", again, err)
			}
		}
		if d, err := ParseDG12(b); err == nil {
			if again, err := ParseDG12(EncodeDG12(d)); err != nil || *again != *d {
				t.Fatalf("DG12 re-encode: %+v %v", again, err)
			}
		}
	})
}
