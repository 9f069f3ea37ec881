package lds

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"testing"

	"kiosk/firmware/emrtd/tlv"
)

func sampleDG14(t testing.TB) []byte {
	spki := []byte{0x30, 0x03, 0x02, 0x01, 0x05} // opaque to DG14 parsing
	ecdsaSHA256 := asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	caAES := append(append(asn1.ObjectIdentifier{}, OIDCA...), 2, 2)
	b, err := EncodeDG14(&DG14{
		CA:     []ChipAuthenticationInfo{{Protocol: caAES, Version: 1, KeyID: 7, HasKeyID: true}},
		CAKeys: []ChipAuthenticationPublicKeyInfo{{Protocol: OIDPKECD, PublicKey: spki, KeyID: 7, HasKeyID: true}},
		AA:     []ActiveAuthenticationInfo{{Version: 1, SignatureAlgorithm: ecdsaSHA256}},
		Other:  []OtherSecurityInfo{{Raw: []byte{0x30, 0x12, 0x06, 0x0A, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x04, 0x02, 0x02, 0x02, 0x01, 0x02, 0x02, 0x01, 0x0D}}}, // a PACEInfo,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDG14RoundTrip(t *testing.T) {
	b := sampleDG14(t)
	d, err := ParseDG14(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.CA) != 1 || d.CA[0].KeyID != 7 || !d.CA[0].HasKeyID || len(d.CAKeys) != 1 || len(d.AA) != 1 || len(d.Other) != 1 {
		t.Fatalf("%+v", d)
	}
	k, ok := d.CAKey(d.CA[0])
	if !ok || !bytes.Equal(k.PublicKey, []byte{0x30, 0x03, 0x02, 0x01, 0x05}) {
		t.Fatalf("CAKey: %v %X", ok, k.PublicKey)
	}
	// A keyId that matches no key finds none.
	ci := d.CA[0]
	ci.KeyID = 8
	if _, ok := d.CAKey(ci); ok {
		t.Fatal("keyId 8 matched")
	}
	again, _ := EncodeDG14(d)
	if !bytes.Equal(again, b) {
		t.Fatal("re-encoding differs")
	}
}

func TestDG14Hostile(t *testing.T) {
	for _, b := range [][]byte{nil, {0x6E, 0x00}, {0x6E, 0x02, 0x31, 0x00, 0x00}, {0x6E, 0x02, 0x30, 0x00}, {0x6E, 0x04, 0x31, 0x02, 0x30, 0x00},
		{0x6F, 0x02, 0x31, 0x00}, {0x6E, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x03, 0x67, 0x81, 0x08}} {
		if _, err := ParseDG14(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%X: %v", b, err)
		}
	}
}

func TestDG15(t *testing.T) {
	spki := []byte{0x30, 0x03, 0x02, 0x01, 0x05}
	got, err := ParseDG15(EncodeDG15(spki))
	if err != nil || !bytes.Equal(got, spki) {
		t.Fatalf("%X %v", got, err)
	}
	for _, b := range [][]byte{nil, {0x6F, 0x00}, {0x6F, 0x02, 0x02, 0x00}, append(EncodeDG15(spki), 0), {0x6F, 0x07, 0x30, 0x03, 0x02, 0x01, 0x05, 0x05, 0x00}} {
		if _, err := ParseDG15(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%X: %v", b, err)
		}
	}
}

// SecurityInfoElements returns each SecurityInfo as encoded, and refuses
// anything but one SET OF SEQUENCE.
func TestSecurityInfoElements(t *testing.T) {
	dg14 := sampleDG14(t)
	d, err := ParseDG14(dg14)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tlv.Unwrap(dg14, TagDG14)
	elems, err := SecurityInfoElements(v)
	if err != nil || len(elems) == 0 || len(elems) != len(d.Raw) {
		t.Fatalf("%d elements, %d raw: %v", len(elems), len(d.Raw), err)
	}
	for i := range elems {
		if !bytes.Equal(elems[i], d.Raw[i]) || elems[i][0] != 0x30 {
			t.Fatalf("element %d: %X vs %X", i, elems[i], d.Raw[i])
		}
	}
	for _, b := range [][]byte{nil, {0x30, 0x00}, {0x31, 0x02, 0x02, 0x00}, {0x31, 0x00, 0x00}, {0x31, 0x03, 0x30, 0x00}} {
		if _, err := SecurityInfoElements(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%X: %v", b, err)
		}
	}
}

func FuzzParseDG14(f *testing.F) {
	f.Add(sampleDG14(f))
	f.Add([]byte{0x6E, 0x02, 0x31, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDG14(b)
		if err != nil {
			return
		}
		for _, ci := range d.CA {
			d.CAKey(ci)
		}
		// Raw is every SecurityInfo, as SecurityInfoElements splits them.
		v, _ := tlv.Unwrap(b, TagDG14)
		elems, err := SecurityInfoElements(v)
		if err != nil || len(elems) != len(d.Raw) || len(d.Raw) != len(d.CA)+len(d.CAKeys)+len(d.AA)+len(d.Other) {
			t.Fatalf("%d elements (%v), %d raw", len(elems), err, len(d.Raw))
		}
		if _, err := EncodeDG14(d); err != nil && len(d.CA)+len(d.CAKeys)+len(d.AA)+len(d.Other) > 0 {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func FuzzParseDG15(f *testing.F) {
	f.Add(EncodeDG15([]byte{0x30, 0x03, 0x02, 0x01, 0x05}))
	f.Add([]byte{0x6F, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if spki, err := ParseDG15(b); err == nil && len(spki) == 0 {
			t.Fatal("empty key without error")
		}
	})
}
