package cert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/emrtd/pubkey"
	"kiosk/internal/testmedia"
)

// The German CSCA (../shared/data/trust) has a brainpoolP512r1 key with
// explicit domain parameters: crypto/x509 refuses it, Parse reads it and
// its self-signature verifies.
func TestParseRealBrainpoolRoot(t *testing.T) {
	dir := testmedia.TrustData(t)
	der, err := os.ReadFile(filepath.Join(dir, "DE_ROOT_CA_CSCA07.cer"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Fatal("crypto/x509 parses it now: the fallback is no longer exercised here")
	}
	c, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	bp512, _ := pubkey.CurveByParameterID(17)
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != bp512.Curve {
		t.Fatalf("key %T %v", c.PublicKey, c.PublicKey)
	}
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 || Country(c.RawSubject) != "DE" || len(c.SubjectKeyId) == 0 {
		t.Fatalf("profile: CA %v KU %v C %q", c.IsCA, c.KeyUsage, Country(c.RawSubject))
	}
	if err := CheckSignedBy(c, c); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), der...)
	bad[len(bad)-3] ^= 1
	if cb, err := Parse(bad); err == nil && CheckSignedBy(cb, c) == nil {
		t.Fatal("altered signature verified")
	}
}

func TestSameName(t *testing.T) {
	a := pkix.Name{Country: []string{"DE"}, Organization: []string{"bund"}, OrganizationalUnit: []string{"bsi"}, CommonName: "csca-germany"}
	seq := a.ToRDNSequence()
	der, _ := asn1.Marshal(seq)
	rev := make(pkix.RDNSequence, len(seq))
	for i := range seq {
		rev[len(seq)-1-i] = seq[i]
	}
	revDER, _ := asn1.Marshal(rev)
	// Another string type and case for one value.
	utf := pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "de"}}, seq[1], seq[2], seq[3]}
	utfDER, _ := asn1.Marshal(utf)
	other, _ := asn1.Marshal(pkix.Name{Country: []string{"DE"}, CommonName: "csca-germany"}.ToRDNSequence())
	switch {
	case !SameName(der, der), !SameName(der, revDER), !SameName(revDER, utfDER):
		t.Fatal("equal names differ")
	case SameName(der, other), SameName(der, []byte{0x30, 0x00}), SameName(der, []byte{0x01}):
		t.Fatal("different names equal")
	}
	if Country(revDER) != "DE" || Country(other) != "DE" || Country([]byte{0x30, 0x00}) != "" {
		t.Fatal("Country")
	}
}

// A brainpool certificate made here: explicit parameters, negative
// serial, RSA-PSS-free. Parse must read what crypto/x509 refuses.
func TestParseFallbackFields(t *testing.T) {
	c := selfSigned(t, true)
	if c.SerialNumber.Sign() >= 0 || !c.IsCA || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign ||
		c.Subject.CommonName != "Test" || c.NotAfter.Year() != 2040 {
		t.Fatalf("%+v", c)
	}
	if err := CheckSignedBy(c, c); err != nil {
		t.Fatal(err)
	}
	if listed, present := HasExtKeyUsage(c, asn1.ObjectIdentifier{2, 23, 136, 1, 1, 3}); !listed || !present {
		t.Fatal("extKeyUsage")
	}
}

func selfSigned(t testing.TB, explicit bool) *x509.Certificate {
	t.Helper()
	curve, _ := pubkey.CurveByParameterID(13)
	k, err := pubkey.GenerateEC(rand.Reader, curve)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := pubkey.MarshalECSPKI(curve, k.Public.X, k.Public.Y, explicit)
	name, _ := asn1.Marshal(pkix.Name{CommonName: "Test", Country: []string{"UT"}}.ToRDNSequence())
	ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7})
	bc, _ := asn1.Marshal(struct{ CA bool }{true})
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{2, 23, 136, 1, 1, 3}})
	sigAlg := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}
	tbs, err := asn1.Marshal(struct {
		Version  int `asn1:"explicit,tag:0"`
		Serial   *big.Int
		SigAlg   pkix.AlgorithmIdentifier
		Issuer   asn1.RawValue
		Validity struct{ A, B time.Time }
		Subject  asn1.RawValue
		SPKI     asn1.RawValue
		Exts     []pkix.Extension `asn1:"explicit,tag:3"`
	}{2, big.NewInt(-12345), sigAlg, asn1.RawValue{FullBytes: name},
		struct{ A, B time.Time }{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)},
		asn1.RawValue{FullBytes: name}, asn1.RawValue{FullBytes: spki},
		[]pkix.Extension{{Id: OIDKeyUsage, Critical: true, Value: ku}, {Id: OIDBasicConstraints, Critical: true, Value: bc}, {Id: OIDExtKeyUsage, Value: eku}}})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256Sum(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, k.ECDSA(), d)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := asn1.Marshal(struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, sigAlg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	c, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckSignedRejects(t *testing.T) {
	c := selfSigned(t, false)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if CheckSigned(c.Raw, &ek.PublicKey) == nil || CheckSigned(c.Raw, "not a key") == nil || CheckSigned([]byte{0x30, 0x00}, c.PublicKey) == nil {
		t.Fatal("accepted")
	}
}

// A certificate crypto/x509 reads with a key algorithm it does not know
// (no key) is refused, not returned keyless (found by FuzzParse).
func TestParseRefusesUnknownKeyAlgorithm(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "CSCA", Country: []string{"UT"}},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	// id-ecPublicKey (1.2.840.10045.2.1) → 1.2.840.10045.2.9, unknown.
	oid := []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}
	i := bytes.Index(der, oid)
	if i < 0 {
		t.Fatal("test set-up: no id-ecPublicKey in the certificate")
	}
	der[i+len(oid)-1] = 0x09
	if c, err := x509.ParseCertificate(der); err != nil || c.PublicKey != nil {
		t.Fatalf("test set-up: crypto/x509 gave %v (want a keyless certificate)", err)
	}
	if c, err := Parse(der); err == nil || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Parse: %+v, err %v; want ErrMalformed", c, err)
	}
}

// FuzzParse: certificate keys (brainpool, explicit parameters, RSA,
// RSA-PSS) and the lenient TBS reader never panic; what parses has a
// key of a supported type, and signature checks on it fail cleanly.
func FuzzParse(f *testing.F) {
	f.Add(selfSigned(f, true).Raw)
	f.Add(selfSigned(f, false).Raw)
	// What crypto/x509 itself makes: P-256 and RSA-PSS.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, k := range []struct {
		pub, priv any
		alg       x509.SignatureAlgorithm
	}{{&ek.PublicKey, ek, x509.ECDSAWithSHA256}, {&rk.PublicKey, rk, x509.SHA256WithRSAPSS}} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "CSCA", Country: []string{"UT"}},
			NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign, SignatureAlgorithm: k.alg}
		if der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.pub, k.priv); err == nil {
			f.Add(der)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		switch c.PublicKey.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey:
		default:
			t.Fatalf("key %T (algorithm %v)", c.PublicKey, c.PublicKeyAlgorithm)
		}
		_ = CheckSignedBy(c, c)
		_, _ = ParseName(c.RawSubject)
		_ = SameName(c.RawSubject, c.RawIssuer)
	})
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// A certificate whose outer SEQUENCE and TBS use indefinite lengths
// (BER) reads as its DER form, and its signature verifies.
func TestParseBER(t *testing.T) {
	c := selfSigned(t, true)
	tbs := c.RawTBSCertificate
	if c.Raw[1] != 0x82 || tbs[1] != 0x82 {
		t.Fatal("want 4-byte headers")
	}
	rest := c.Raw[4+len(tbs):] // signatureAlgorithm and signatureValue
	body := tbs[4:]            // the TBS content
	berTBS := append(append([]byte{0x30, 0x80}, body...), 0, 0)
	in := append(append(append([]byte{0x30, 0x80}, berTBS...), rest...), 0, 0)
	got, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Raw, c.Raw) || CheckSignedBy(got, got) != nil {
		t.Fatal("BER certificate differs from its DER form")
	}
}
