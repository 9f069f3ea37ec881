package pa

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/lds"
)

var (
	oidRSASSAPSS  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSAPlain = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 1, 1, 4, 1}
)

func verifyBuiltin(alg sigAlg, si *lds.SignerInfo, pub any) error {
	return cert.Verify(alg.Algorithm, pub, si.SignedAttrsDER, si.Signature)
}

// TestBuiltinVerifier covers the algorithms smallstep/pkcs7 does not
// verify (plain-format ECDSA, id-ecPublicKey as signature algorithm,
// SHA-224) and the builtin PKCS #1 v1.5 path, with fresh keys.
func TestBuiltinVerifier(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	attrs := []byte{0x31, 0x03, 0x02, 0x01, 0x05}
	d256 := sha256.Sum256(attrs)
	h224 := crypto.SHA224.New()
	h224.Write(attrs)
	d224 := h224.Sum(nil)

	ecASN1, _ := ecdsa.SignASN1(rand.Reader, ek, d256[:])
	r, s, _ := ecdsa.Sign(rand.Reader, ek, d256[:])
	plain := make([]byte, 64)
	r.FillBytes(plain[:32])
	s.FillBytes(plain[32:])
	ec224, _ := ecdsa.SignASN1(rand.Reader, ek, d224)
	rsa224, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA224, d224)

	sha256ID := pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256}
	tests := []struct {
		name string
		alg  asn1.ObjectIdentifier
		sig  []byte
		pub  any
		kind cert.Kind
	}{
		{"id-ecPublicKey", oidECPublicKey, ecASN1, &ek.PublicKey, cert.ECDSA},
		{"ecdsa-plain-SHA256", append(append(asn1.ObjectIdentifier{}, oidECDSAPlain...), 3), plain, &ek.PublicKey, cert.ECDSAPlain},
		{"ecdsa-with-SHA224", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}, ec224, &ek.PublicKey, cert.ECDSA},
		{"sha224WithRSA", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}, rsa224, &rk.PublicKey, cert.PKCS1v15},
	}
	for _, tt := range tests {
		si := &lds.SignerInfo{DigestAlgorithm: sha256ID, SignatureAlgorithm: pkix.AlgorithmIdentifier{Algorithm: tt.alg},
			SignedAttrsDER: attrs, Signature: tt.sig}
		alg, err := resolveSigAlg(si)
		if err != nil || alg.Kind != tt.kind || alg.smallstep {
			t.Fatalf("%s: %+v %v", tt.name, alg, err)
		}
		ds := &x509.Certificate{PublicKey: tt.pub}
		if err := verifyBuiltin(alg, si, ds.PublicKey); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		bad := append([]byte(nil), tt.sig...)
		bad[len(bad)-1] ^= 1
		si.Signature = bad
		if err := verifyBuiltin(alg, si, ds.PublicKey); err == nil {
			t.Errorf("%s: altered signature verified", tt.name)
		}
		// The wrong key type fails instead of panicking.
		other := any(&rk.PublicKey)
		if _, ok := tt.pub.(*rsa.PublicKey); ok {
			other = &ek.PublicKey
		}
		if err := verifyBuiltin(alg, si, other); err == nil {
			t.Errorf("%s: wrong key type verified", tt.name)
		}
	}
}

func TestResolveSigAlgRejects(t *testing.T) {
	for name, ai := range map[string]pkix.AlgorithmIdentifier{
		"dsa":              {Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 3}},
		"md5WithRSA":       {Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}},
		"pss no params":    {Algorithm: oidRSASSAPSS},
		"ecdsa-plain-9":    {Algorithm: append(append(asn1.ObjectIdentifier{}, oidECDSAPlain...), 9)},
		"ecdsa unknown":    {Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 9}},
		"pss mgf mismatch": pssAlg(t, lds.OIDSHA256, lds.OIDSHA1),
	} {
		si := &lds.SignerInfo{DigestAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256}, SignatureAlgorithm: ai}
		if alg, err := resolveSigAlg(si); err == nil {
			t.Errorf("%s: resolved %+v", name, alg)
		}
	}
	if h, salt, err := cert.PSSParams(pssAlg(t, lds.OIDSHA384, lds.OIDSHA384)); err != nil || h != crypto.SHA384 || salt != 48 {
		t.Errorf("PSS SHA-384: %v %d %v", h, salt, err)
	}
	// Empty parameters mean the RFC 8017 defaults: SHA-1, MGF1-SHA-1, salt 20.
	if h, salt, err := cert.PSSParams(pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS,
		Parameters: asn1.RawValue{FullBytes: []byte{0x30, 0x00}}}); err != nil || h != crypto.SHA1 || salt != 20 {
		t.Errorf("PSS defaults: %v %d %v", h, salt, err)
	}
}

func pssAlg(t *testing.T, hash, mgfHash asn1.ObjectIdentifier) pkix.AlgorithmIdentifier {
	t.Helper()
	mh, _ := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: mgfHash})
	p, err := asn1.Marshal(struct {
		Hash pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
		MGF  pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
		Salt int                      `asn1:"explicit,tag:2"`
	}{pkix.AlgorithmIdentifier{Algorithm: hash}, pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mh}}, 48})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS, Parameters: asn1.RawValue{FullBytes: p}}
}
