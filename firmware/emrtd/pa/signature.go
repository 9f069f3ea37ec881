package pa

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

	"github.com/smallstep/pkcs7"

	"kiosk/firmware/emrtd/lds"
)

// Signature algorithm identifiers found in SODs (RFC 8017, RFC 5758,
// BSI TR-03111 §5.2.1 for the plain ECDSA format).
var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSASSAPSS     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAPlain    = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 1, 1, 4, 1} // .1 SHA-1 ... .5 SHA-512
)

type sigKind int

const (
	sigPKCS1v15 sigKind = iota + 1
	sigPSS
	sigECDSA
	sigECDSAPlain
)

// sigAlg is a resolved SignerInfo signature algorithm.
type sigAlg struct {
	kind      sigKind
	hash      crypto.Hash
	salt      int
	name      string
	smallstep bool // github.com/smallstep/pkcs7 can verify it
}

func rsaHash(last int) (crypto.Hash, bool) {
	switch last {
	case 5:
		return crypto.SHA1, true
	case 14:
		return crypto.SHA224, true
	case 11:
		return crypto.SHA256, true
	case 12:
		return crypto.SHA384, true
	case 13:
		return crypto.SHA512, true
	}
	return 0, false
}

func resolveSigAlg(si *lds.SignerInfo) (sigAlg, error) {
	a := si.SignatureAlgorithm.Algorithm
	digest, digestOK := lds.HashForOID(si.DigestAlgorithm.Algorithm)
	// smallstep/pkcs7 v0.2.3 maps SHA-1/256/384/512 only.
	ssHash := func(h crypto.Hash) bool {
		return h == crypto.SHA1 || h == crypto.SHA256 || h == crypto.SHA384 || h == crypto.SHA512
	}
	switch {
	case a.Equal(oidRSAEncryption):
		if !digestOK {
			return sigAlg{}, fmt.Errorf("rsaEncryption with digest %v", si.DigestAlgorithm.Algorithm)
		}
		return sigAlg{kind: sigPKCS1v15, hash: digest, name: "RSA PKCS#1 v1.5/" + digest.String(), smallstep: ssHash(digest)}, nil
	case len(a) == 7 && a[:6].Equal(oidRSAEncryption[:6]):
		if h, ok := rsaHash(a[6]); ok {
			return sigAlg{kind: sigPKCS1v15, hash: h, name: "RSA PKCS#1 v1.5/" + h.String(), smallstep: ssHash(h) && digestOK && ssHash(digest)}, nil
		}
		if a.Equal(oidRSASSAPSS) {
			h, salt, err := parsePSSParams(si.SignatureAlgorithm)
			if err != nil {
				return sigAlg{}, err
			}
			return sigAlg{kind: sigPSS, hash: h, salt: salt, name: "RSASSA-PSS/" + h.String()}, nil
		}
	case a.Equal(oidECPublicKey):
		if !digestOK {
			return sigAlg{}, fmt.Errorf("id-ecPublicKey with digest %v", si.DigestAlgorithm.Algorithm)
		}
		return sigAlg{kind: sigECDSA, hash: digest, name: "ECDSA/" + digest.String()}, nil
	case len(a) >= 6 && a[:5].Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4}):
		var h crypto.Hash
		switch {
		case a.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}):
			h = crypto.SHA1
		case a.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}):
			h = crypto.SHA224
		case a.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}):
			h = crypto.SHA256
		case a.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}):
			h = crypto.SHA384
		case a.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}):
			h = crypto.SHA512
		default:
			return sigAlg{}, fmt.Errorf("signature algorithm %v", a)
		}
		return sigAlg{kind: sigECDSA, hash: h, name: "ecdsa-with-" + h.String(), smallstep: ssHash(h) && digestOK && ssHash(digest)}, nil
	case len(a) == 11 && a[:10].Equal(oidECDSAPlain):
		hs := []crypto.Hash{0, crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512}
		if a[10] >= 1 && a[10] <= 5 {
			return sigAlg{kind: sigECDSAPlain, hash: hs[a[10]], name: "ecdsa-plain-" + hs[a[10]].String()}, nil
		}
	}
	return sigAlg{}, fmt.Errorf("signature algorithm %v", a)
}

// pssParams is RSASSA-PSS-params (RFC 8017 appendix A.2.3).
type pssParams struct {
	Hash         pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:0"`
	MGF          pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:1"`
	SaltLength   int                      `asn1:"optional,explicit,tag:2,default:20"`
	TrailerField int                      `asn1:"optional,explicit,tag:3,default:1"`
}

func parsePSSParams(ai pkix.AlgorithmIdentifier) (crypto.Hash, int, error) {
	var p pssParams
	if rest, err := asn1.Unmarshal(ai.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
		return 0, 0, fmt.Errorf("RSASSA-PSS parameters unreadable")
	}
	h := crypto.SHA1 // the defaults of RFC 8017
	if len(p.Hash.Algorithm) > 0 {
		var ok bool
		if h, ok = lds.HashForOID(p.Hash.Algorithm); !ok {
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
			return 0, 0, fmt.Errorf("RSASSA-PSS MGF1 parameters unreadable")
		}
		var ok bool
		if mgfHash, ok = lds.HashForOID(mh.Algorithm); !ok {
			return 0, 0, fmt.Errorf("RSASSA-PSS MGF1 hash %v", mh.Algorithm)
		}
	}
	// crypto/rsa uses the message hash for MGF1.
	if mgfHash != h {
		return 0, 0, fmt.Errorf("RSASSA-PSS with MGF1-%v under %v", mgfHash, h)
	}
	if p.TrailerField != 1 || p.SaltLength < 0 {
		return 0, 0, fmt.Errorf("RSASSA-PSS trailer %d / salt %d", p.TrailerField, p.SaltLength)
	}
	return h, p.SaltLength, nil
}

// checkSignature verifies the SignerInfo signature over the signed
// attributes (RFC 5652 §5.4) with the DS key. github.com/smallstep/pkcs7
// does it where it supports the algorithm (RSA PKCS#1 v1.5 and X9.62
// ECDSA with SHA-1/256/384/512 on the curves crypto/x509 knows); RSA-PSS,
// the BSI plain ECDSA format, id-ecPublicKey as signature algorithm and
// SHA-224 are verified here with crypto/rsa and crypto/ecdsa.
func checkSignature(r *Result, s *lds.SOD, si *lds.SignerInfo, ds *x509.Certificate) {
	alg, err := resolveSigAlg(si)
	if err != nil {
		r.fail(CheckSignature, CodeSignatureAlgorithmUnsupported, "%v", err)
		return
	}
	r.SignatureAlgorithm = alg.name
	if alg.smallstep && si.SerialNumber != nil {
		err, used := verifySmallstep(s)
		if used {
			r.Verifier = "smallstep/pkcs7"
			if err != nil {
				r.fail(CheckSignature, CodeSignatureInvalid, "%s signature: %v", alg.name, err)
			} else {
				r.pass(CheckSignature, alg.name+" by the document signer (smallstep/pkcs7)")
			}
			return
		}
	}
	r.Verifier = "builtin"
	if err := verifyBuiltin(alg, si, ds); err != nil {
		r.fail(CheckSignature, CodeSignatureInvalid, "%s signature: %v", alg.name, err)
		return
	}
	r.pass(CheckSignature, alg.name+" by the document signer")
}

// verifySmallstep returns used=false when the library cannot decide the
// signature on its own: it could not parse the CMS (e.g. an extra
// certificate crypto/x509 rejects) or it stopped at its signing-time rule
// (reported by checkSigningTime) before checking the signature.
func verifySmallstep(s *lds.SOD) (err error, used bool) {
	p7, err := pkcs7.Parse(s.CMS)
	if err != nil {
		return nil, false
	}
	err = p7.Verify()
	var st *pkcs7.SigningTimeNotValidError
	if errors.As(err, &st) {
		return nil, false
	}
	return err, true
}

func verifyBuiltin(alg sigAlg, si *lds.SignerInfo, ds *x509.Certificate) error {
	if !alg.hash.Available() {
		return fmt.Errorf("hash %v unavailable", alg.hash)
	}
	h := alg.hash.New()
	h.Write(si.SignedAttrsDER)
	digest := h.Sum(nil)
	switch alg.kind {
	case sigPKCS1v15, sigPSS:
		pub, ok := ds.PublicKey.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("DS key is %T, not RSA", ds.PublicKey)
		}
		if alg.kind == sigPSS {
			return rsa.VerifyPSS(pub, alg.hash, digest, si.Signature, &rsa.PSSOptions{SaltLength: alg.salt, Hash: alg.hash})
		}
		return rsa.VerifyPKCS1v15(pub, alg.hash, digest, si.Signature)
	case sigECDSA, sigECDSAPlain:
		pub, ok := ds.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("DS key is %T, not ECDSA", ds.PublicKey)
		}
		if alg.kind == sigECDSAPlain {
			n := (pub.Curve.Params().BitSize + 7) / 8
			if len(si.Signature) != 2*n {
				return fmt.Errorf("plain ECDSA signature of %d bytes, want %d", len(si.Signature), 2*n)
			}
			rr := new(big.Int).SetBytes(si.Signature[:n])
			ss := new(big.Int).SetBytes(si.Signature[n:])
			if !ecdsa.Verify(pub, digest, rr, ss) {
				return errors.New("ECDSA verification failed")
			}
			return nil
		}
		if !ecdsa.VerifyASN1(pub, digest, si.Signature) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	}
	return errors.New("unknown signature kind")
}
