package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	_ "crypto/sha1"   // SHA-1 signed certificates of older CSCAs
	_ "crypto/sha256" // SHA-224, SHA-256
	_ "crypto/sha512" // SHA-384, SHA-512
)

// Signature algorithm identifiers (RFC 8017 §A.2, RFC 4055 §3.1,
// RFC 5758 §3.2, BSI TR-03111 §5.2.1 plain ECDSA).
var (
	oidRSASSAPSS  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSAPlain = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 1, 1, 4, 1} // .1 SHA-1 … .5 SHA-512

	hashOIDs = []struct {
		oid asn1.ObjectIdentifier
		h   crypto.Hash
	}{
		{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}, crypto.SHA224},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
		{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
	}
	sigOIDs = []struct {
		oid  asn1.ObjectIdentifier
		kind Kind
		h    crypto.Hash
		x509 x509.SignatureAlgorithm
	}{
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, PKCS1v15, crypto.SHA1, x509.SHA1WithRSA},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}, PKCS1v15, crypto.SHA224, x509.UnknownSignatureAlgorithm},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, PKCS1v15, crypto.SHA256, x509.SHA256WithRSA},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, PKCS1v15, crypto.SHA384, x509.SHA384WithRSA},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, PKCS1v15, crypto.SHA512, x509.SHA512WithRSA},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}, ECDSA, crypto.SHA1, x509.ECDSAWithSHA1},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}, ECDSA, crypto.SHA224, x509.UnknownSignatureAlgorithm},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, ECDSA, crypto.SHA256, x509.ECDSAWithSHA256},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, ECDSA, crypto.SHA384, x509.ECDSAWithSHA384},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, ECDSA, crypto.SHA512, x509.ECDSAWithSHA512},
	}
)

// HashForOID maps a digest algorithm OID to its hash.
func HashForOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for _, e := range hashOIDs {
		if e.oid.Equal(oid) {
			return e.h, true
		}
	}
	return 0, false
}

// Kind is a signature scheme.
type Kind int

// Signature schemes.
const (
	PKCS1v15   Kind = iota + 1 // RSASSA-PKCS1-v1_5 (RFC 8017 §8.2)
	PSS                        // RSASSA-PSS (RFC 8017 §8.1)
	ECDSA                      // X9.62 DER Ecdsa-Sig-Value
	ECDSAPlain                 // BSI TR-03111 §5.2.1: r || s
)

// Algorithm is a resolved signature AlgorithmIdentifier.
type Algorithm struct {
	Kind Kind
	Hash crypto.Hash
	Salt int // PSS
}

func (a Algorithm) String() string {
	switch a.Kind {
	case PKCS1v15:
		return "RSA PKCS#1 v1.5/" + a.Hash.String()
	case PSS:
		return "RSASSA-PSS/" + a.Hash.String()
	case ECDSA:
		return "ecdsa-with-" + a.Hash.String()
	case ECDSAPlain:
		return "ecdsa-plain-" + a.Hash.String()
	}
	return "unknown"
}

func signatureAlgorithm(ai pkix.AlgorithmIdentifier) x509.SignatureAlgorithm {
	for _, e := range sigOIDs {
		if e.oid.Equal(ai.Algorithm) {
			return e.x509
		}
	}
	return x509.UnknownSignatureAlgorithm
}

// ResolveAlgorithm reads a signature AlgorithmIdentifier of a
// certificate, CRL or SignerInfo.
func ResolveAlgorithm(ai pkix.AlgorithmIdentifier) (Algorithm, error) {
	for _, e := range sigOIDs {
		if e.oid.Equal(ai.Algorithm) {
			return Algorithm{Kind: e.kind, Hash: e.h}, nil
		}
	}
	a := ai.Algorithm
	switch {
	case a.Equal(oidRSASSAPSS):
		h, salt, err := PSSParams(ai)
		if err != nil {
			return Algorithm{}, err
		}
		return Algorithm{Kind: PSS, Hash: h, Salt: salt}, nil
	case len(a) == 11 && a[:10].Equal(oidECDSAPlain) && a[10] >= 1 && a[10] <= 5:
		hs := []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512}
		return Algorithm{Kind: ECDSAPlain, Hash: hs[a[10]-1]}, nil
	}
	return Algorithm{}, fmt.Errorf("signature algorithm %v", a)
}

// pssParams is RSASSA-PSS-params (RFC 8017 §A.2.3).
type pssParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:0"`
	MGF          pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:1"`
	SaltLength   int                      `asn1:"optional,explicit,tag:2,default:20"`
	TrailerField int                      `asn1:"optional,explicit,tag:3,default:1"`
}

// PSSParams reads RSASSA-PSS-params with the defaults of RFC 8017 §A.2.3
// (SHA-1, MGF1-SHA-1, salt 20). crypto/rsa masks with the message hash,
// so a different MGF1 hash is refused.
func PSSParams(ai pkix.AlgorithmIdentifier) (crypto.Hash, int, error) {
	// RFC 4055 §3.1: in a signature's AlgorithmIdentifier the
	// parameters are present (an empty SEQUENCE means all defaults).
	var p pssParams
	if rest, err := asn1.Unmarshal(ai.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
		return 0, 0, errors.New("RSASSA-PSS parameters missing or unreadable")
	}
	h := crypto.SHA1
	if len(p.Hash.Algorithm) > 0 {
		var ok bool
		if h, ok = HashForOID(p.Hash.Algorithm); !ok {
			return 0, 0, fmt.Errorf("RSASSA-PSS hash %v", p.Hash.Algorithm)
		}
	}
	mgfHash := crypto.SHA1
	if len(p.MGF.Algorithm) > 0 {
		if !p.MGF.Algorithm.Equal(oidMGF1) {
			return 0, 0, fmt.Errorf("RSASSA-PSS mask generation %v", p.MGF.Algorithm)
		}
		var mh pkix.AlgorithmIdentifier
		if rest, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &mh); err != nil || len(rest) != 0 {
			return 0, 0, errors.New("RSASSA-PSS MGF1 parameters unreadable")
		}
		var ok bool
		if mgfHash, ok = HashForOID(mh.Algorithm); !ok {
			return 0, 0, fmt.Errorf("RSASSA-PSS MGF1 hash %v", mh.Algorithm)
		}
	}
	if mgfHash != h {
		return 0, 0, fmt.Errorf("RSASSA-PSS with MGF1-%v under %v", mgfHash, h)
	}
	if p.TrailerField != 1 || p.SaltLength < 0 {
		return 0, 0, fmt.Errorf("RSASSA-PSS trailer %d / salt %d", p.TrailerField, p.SaltLength)
	}
	return h, p.SaltLength, nil
}

// Verify checks sig over msg (hashed here with alg's hash) with pub, an
// *rsa.PublicKey or *ecdsa.PublicKey on any curve.
func Verify(alg Algorithm, pub crypto.PublicKey, msg, sig []byte) error {
	if !alg.Hash.Available() {
		return fmt.Errorf("hash %v unavailable", alg.Hash)
	}
	h := alg.Hash.New()
	h.Write(msg)
	return VerifyDigest(alg, pub, h.Sum(nil), sig)
}

// VerifyDigest is Verify for an already computed digest.
func VerifyDigest(alg Algorithm, pub crypto.PublicKey, digest, sig []byte) error {
	switch alg.Kind {
	case PKCS1v15, PSS:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%v signature with a %T key", alg, pub)
		}
		if alg.Kind == PSS {
			return rsa.VerifyPSS(k, alg.Hash, digest, sig, &rsa.PSSOptions{SaltLength: alg.Salt, Hash: alg.Hash})
		}
		return rsa.VerifyPKCS1v15(k, alg.Hash, digest, sig)
	case ECDSA, ECDSAPlain:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%v signature with a %T key", alg, pub)
		}
		if alg.Kind == ECDSAPlain {
			n := (k.Curve.Params().N.BitLen() + 7) / 8
			if len(sig) != 2*n {
				return fmt.Errorf("plain ECDSA signature of %d bytes, want %d", len(sig), 2*n)
			}
			if !ecdsa.Verify(k, digest, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
				return errors.New("ECDSA verification failed")
			}
			return nil
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	}
	return errors.New("unknown signature scheme")
}

// CheckSigned verifies a signed X.509 structure — a Certificate (RFC
// 5280 §4.1) or CertificateList (§5.1), both SEQUENCE { tbs,
// signatureAlgorithm, signatureValue } — with pub.
func CheckSigned(raw []byte, pub crypto.PublicKey) error {
	var outer certificate
	if rest, err := asn1.Unmarshal(raw, &outer); err != nil || len(rest) != 0 {
		return fmt.Errorf("signed structure: %v", errOr(err, "trailing bytes"))
	}
	alg, err := ResolveAlgorithm(outer.SigAlg)
	if err != nil {
		return err
	}
	if outer.Sig.BitLength%8 != 0 {
		return errors.New("signature bit string not octet aligned")
	}
	return Verify(alg, pub, outer.TBS.FullBytes, outer.Sig.Bytes)
}

// CheckSignedBy verifies that issuer's key signed child (certificate).
func CheckSignedBy(child, issuer *x509.Certificate) error {
	return CheckSigned(child.Raw, issuer.PublicKey)
}
