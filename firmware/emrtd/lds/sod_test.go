package lds_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"image"
	"image/jpeg"
	"reflect"
	"testing"
	"time"

	"kiosk/firmware/emrtd/lds"
	"kiosk/provisioning/issuer"
)

// issuedSOD returns EF.SOD and the data groups of a freshly issued test
// document (the SOD is built by the issuer's CMS encoder).
func issuedSOD(t testing.TB, alg issuer.SignatureAlg) ([]byte, map[int][]byte, *x509.Certificate) {
	t.Helper()
	var photo bytes.Buffer
	if err := jpeg.Encode(&photo, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	im, trust, err := issuer.Issue(issuer.Options{DocNumber: "L898902C3", Surname: "ERIKSSON", Given: "ANNA MARIA",
		Nationality: "UTO", Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456",
		Photo: photo.Bytes(), SignatureAlg: alg, Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return im.Files[lds.FIDSOD], map[int][]byte{1: im.Files[0x0101], 2: im.Files[0x0102]}, trust.DS
}

func TestParseSOD(t *testing.T) {
	sod, dgs, ds := issuedSOD(t, issuer.SigECDSAP256)
	s, err := lds.ParseSOD(sod)
	if err != nil {
		t.Fatal(err)
	}
	if !s.ContentType.Equal(lds.OIDLDSSecurityObject) || len(s.Certificates) != 1 || !bytes.Equal(s.Certificates[0], ds.Raw) {
		t.Fatalf("SOD %+v", s)
	}
	if h, ok := lds.HashForOID(s.LDS.HashAlgorithm.Algorithm); !ok || h.String() != "SHA-256" {
		t.Fatalf("hash %v", s.LDS.HashAlgorithm.Algorithm)
	}
	for n, dg := range dgs {
		want := sha256.Sum256(dg)
		if got, ok := s.LDS.HashOf(n); !ok || !bytes.Equal(got, want[:]) {
			t.Errorf("DG%d hash", n)
		}
	}
	if _, ok := s.LDS.HashOf(3); ok {
		t.Error("DG3 listed")
	}
	si := s.Signers[0]
	if si.SerialNumber.Cmp(ds.SerialNumber) != 0 || !bytes.Equal(si.IssuerRaw, ds.RawIssuer) || si.SignedAttrsDER[0] != 0x31 {
		t.Errorf("signer %+v", si)
	}
	for _, oid := range [][]int{lds.OIDContentType, lds.OIDMessageDigest, lds.OIDSigningTime} {
		if v, ok := si.Attr(oid); !ok || len(v) != 1 {
			t.Errorf("attribute %v", oid)
		}
	}
}

func TestLDSSecurityObject(t *testing.T) {
	h := bytes.Repeat([]byte{1}, 32)
	for _, l := range []*lds.LDSSecurityObject{
		{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256},
			Hashes: []lds.DataGroupHash{{DataGroupNumber: 1, Hash: h}, {DataGroupNumber: 2, Hash: h}}},
		{Version: 1, HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256}, LDSVersion: "0108", UnicodeVersion: "040000",
			Hashes: []lds.DataGroupHash{{DataGroupNumber: 1, Hash: h}, {DataGroupNumber: 14, Hash: h}}},
	} {
		der, err := lds.EncodeLDSSecurityObject(l)
		if err != nil {
			t.Fatal(err)
		}
		got, err := lds.ParseLDSSecurityObject(der)
		if err != nil || !reflect.DeepEqual(got, l) {
			t.Fatalf("%v\n%+v\n%+v", err, got, l)
		}
	}
	for name, l := range map[string]*lds.LDSSecurityObject{
		"duplicate DG": {HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256},
			Hashes: []lds.DataGroupHash{{DataGroupNumber: 1, Hash: h}, {DataGroupNumber: 1, Hash: h}}},
		"DG 17": {HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256},
			Hashes: []lds.DataGroupHash{{DataGroupNumber: 17, Hash: h}}},
		"short hash": {HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256},
			Hashes: []lds.DataGroupHash{{DataGroupNumber: 1, Hash: h[:20]}}},
		"no DG": {HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256}},
	} {
		der, err := lds.EncodeLDSSecurityObject(l)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lds.ParseLDSSecurityObject(der); !errors.Is(err, lds.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseSODMalformed(t *testing.T) {
	sod, _, _ := issuedSOD(t, issuer.SigECDSAP256)
	flip := func(off int) []byte {
		b := append([]byte(nil), sod...)
		b[off] ^= 0xFF
		return b
	}
	for name, b := range map[string][]byte{
		"empty":        {},
		"truncated":    sod[:len(sod)-1],
		"trailing":     append(append([]byte(nil), sod...), 0),
		"wrong tag":    append([]byte{0x76}, sod[1:]...),
		"not signed":   flip(bytes.Index(sod, []byte{0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02}) + 8),
		"eContentType": flip(bytes.Index(sod, []byte{0x67, 0x81, 0x08, 0x01, 0x01, 0x01}) + 5),
	} {
		if _, err := lds.ParseSOD(b); !errors.Is(err, lds.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseSOD(f *testing.F) {
	for _, alg := range []issuer.SignatureAlg{issuer.SigECDSAP256, issuer.SigRSAPSS} {
		sod, _, _ := issuedSOD(f, alg)
		f.Add(sod)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := lds.ParseSOD(b)
		if err != nil {
			return
		}
		if s.LDS == nil || len(s.Signers) == 0 || len(s.Content) > len(b) {
			t.Fatal("inconsistent SOD")
		}
		for _, si := range s.Signers {
			if len(si.SignedAttrsDER) > 0 && si.SignedAttrsDER[0] != 0x31 {
				t.Fatal("signed attributes not re-tagged")
			}
		}
	})
}
