package pubkey

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
)

func TestECRoundTrip(t *testing.T) {
	for _, c := range Curves() {
		for _, explicit := range []bool{false, true} {
			k, err := GenerateEC(rand.Reader, c)
			if err != nil {
				t.Fatal(err)
			}
			der, err := MarshalECSPKI(c, k.Public.X, k.Public.Y, explicit)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSPKI(der)
			if err != nil {
				t.Fatalf("%s explicit=%v: %v", c.Name, explicit, err)
			}
			if got.EC == nil || got.EC.Curve.ParameterID != c.ParameterID || got.EC.X.Cmp(k.Public.X) != 0 || got.EC.Y.Cmp(k.Public.Y) != 0 {
				t.Fatalf("%s explicit=%v: got %+v", c.Name, explicit, got)
			}
			pemb, err := (&PrivateKey{EC: k}).MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			pk, err := ParsePrivateKeyPEM(pemb)
			if err != nil || pk.EC == nil || pk.EC.Public.X.Cmp(k.Public.X) != 0 {
				t.Fatalf("%s private: %v", c.Name, err)
			}
		}
	}
}

func TestRSAAndDH(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := MarshalRSASPKI(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseSPKI(der)
	if err != nil || k.RSA == nil || k.RSA.N.Cmp(rk.N) != 0 || k.Describe() != "RSA-2048" {
		t.Fatalf("RSA: %v %+v", err, k)
	}
	p := testDHGroup(t)
	dk, err := GenerateDH(rand.Reader, p)
	if err != nil {
		t.Fatal(err)
	}
	der, err = MarshalDHSPKI(&dk.Public)
	if err != nil {
		t.Fatal(err)
	}
	k, err = ParseSPKI(der)
	if err != nil || k.DH == nil || k.DH.Y.Cmp(dk.Public.Y) != 0 {
		t.Fatalf("DH: %v", err)
	}
	// A value outside the subgroup is rejected (small-subgroup attack).
	bad := DHKey{Params: p, Y: new(big.Int).Sub(p.P, big.NewInt(1))}
	der, _ = MarshalDHSPKI(&bad)
	if _, err := ParseSPKI(der); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DH p-1: %v", err)
	}
	pemb, _ := (&PrivateKey{DH: dk}).MarshalPEM()
	if pk, err := ParsePrivateKeyPEM(pemb); err != nil || pk.DH.Public.Y.Cmp(dk.Public.Y) != 0 {
		t.Fatalf("DH private: %v", err)
	}
}

func TestHostileKeys(t *testing.T) {
	c, _ := CurveByParameterID(13)
	k, _ := GenerateEC(rand.Reader, c)
	der, _ := MarshalECSPKI(c, k.Public.X, new(big.Int).Add(k.Public.Y, big.NewInt(1)), true)
	if _, err := ParseSPKI(der); !errors.Is(err, ErrMalformed) {
		t.Fatalf("point off the curve: %v", err)
	}
	for _, b := range [][]byte{nil, {0x30}, {0x30, 0x00}, {0x30, 0x03, 0x30, 0x01, 0x06}} {
		if _, err := ParseSPKI(b); err == nil {
			t.Fatalf("%X parsed", b)
		}
	}
	if _, err := ParsePrivateKeyPEM([]byte("-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n")); err == nil {
		t.Fatal("empty EC key parsed")
	}
}

func FuzzParseSPKI(f *testing.F) {
	for _, c := range Curves()[3:5] {
		k, _ := GenerateEC(rand.Reader, c)
		for _, e := range []bool{false, true} {
			der, _ := MarshalECSPKI(c, k.Public.X, k.Public.Y, e)
			f.Add(der)
		}
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := MarshalRSASPKI(&rk.PublicKey)
	f.Add(der)
	// An id-RSASSA-PSS key (RFC 4055 §1.2), as some CSCAs carry.
	var s spki
	if _, err := asn1.Unmarshal(der, &s); err == nil {
		s.Algorithm.Algorithm, s.Algorithm.Parameters = OIDRSASSAPSS, asn1.RawValue{}
		pss, _ := asn1.Marshal(s)
		f.Add(pss)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseSPKI(b)
		if err == nil && k.EC == nil && k.RSA == nil && k.DH == nil {
			t.Fatal("nil key without error")
		}
	})
}

// The derived coefficients equal the published ones: NIST P-256 (a = −3,
// b from FIPS 186-4) and brainpoolP256r1 (RFC 5639 §3.4).
func TestCoefficients(t *testing.T) {
	c, _ := CurveByParameterID(12)
	a, b := coefficients(c)
	if a.Cmp(new(big.Int).Sub(c.Params().P, big.NewInt(3))) != 0 || b.Cmp(c.Params().B) != 0 {
		t.Fatalf("P-256: a %X b %X", a, b)
	}
	c, _ = CurveByParameterID(13)
	a, b = coefficients(c)
	wa, _ := new(big.Int).SetString("7D5A0975FC2C3057EEF67530417AFFE7FB8055C126DC5C6CE94A4B44F330B5D9", 16)
	wb, _ := new(big.Int).SetString("26DC5C6CE94A4B44F330B5D9BBD77CBF958416295CF7E1CE6BCCDC18FF8C07B6", 16)
	if a.Cmp(wa) != 0 || b.Cmp(wb) != 0 {
		t.Fatalf("brainpoolP256r1: a %X b %X", a, b)
	}
}

// Real CSCAs: an id-RSASSA-PSS key (RFC 4055 §1.2) reads as RSA, and
// explicit parameters whose a and b carry a leading zero octet (as the
// UAE CSCA's P-384 key does) still match their named curve.
func TestCSCAKeyEncodings(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := MarshalRSASPKI(&rk.PublicKey)
	var s spki
	if _, err := asn1.Unmarshal(der, &s); err != nil {
		t.Fatal(err)
	}
	s.Algorithm.Algorithm, s.Algorithm.Parameters = OIDRSASSAPSS, asn1.RawValue{}
	pss, _ := asn1.Marshal(s)
	if k, err := ParseSPKI(pss); err != nil || k.RSA == nil || k.RSA.N.Cmp(rk.N) != 0 {
		t.Fatalf("RSA-PSS key: %v", err)
	}

	c, _ := CurveByParameterID(15) // P-384
	k, _ := GenerateEC(rand.Reader, c)
	cp := c.Params()
	a, b := coefficients(c)
	var e ecParameters
	e.Version = 1
	e.FieldID.FieldType, e.FieldID.Prime = oidPrimeField, cp.P
	e.Curve.A = append([]byte{0}, a.FillBytes(make([]byte, c.ByteLen()))...)
	e.Curve.B = append([]byte{0}, b.FillBytes(make([]byte, c.ByteLen()))...)
	e.Base = EncodePoint(c, cp.Gx, cp.Gy)
	e.Order, e.Cofactor = cp.N, big.NewInt(1)
	params, _ := asn1.Marshal(e)
	var es spki
	es.Algorithm.Algorithm = OIDECPublicKey
	es.Algorithm.Parameters = asn1.RawValue{FullBytes: params}
	pt := EncodePoint(c, k.Public.X, k.Public.Y)
	es.PublicKey = asn1.BitString{Bytes: pt, BitLength: 8 * len(pt)}
	der, _ = asn1.Marshal(es)
	if got, err := ParseSPKI(der); err != nil || got.EC == nil || got.EC.Curve.Name != "NIST P-384" {
		t.Fatalf("leading-zero coefficients: %v", err)
	}
}
