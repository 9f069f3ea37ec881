package pa

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/lds"
)

// Signature algorithm identifiers found in SignerInfos that are key
// algorithms rather than signature algorithms (RFC 5652 §10.1.2 allows
// rsaEncryption; some issuers use id-ecPublicKey the same way): the
// digest algorithm completes them.
var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// sigAlg is a resolved SignerInfo signature algorithm.
type sigAlg struct {
	cert.Algorithm
	name      string
	smallstep bool // github.com/smallstep/pkcs7 can verify it
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
		return sigAlg{Algorithm: cert.Algorithm{Kind: cert.PKCS1v15, Hash: digest}, name: "RSA PKCS#1 v1.5/" + digest.String(), smallstep: ssHash(digest)}, nil
	case a.Equal(oidECPublicKey):
		if !digestOK {
			return sigAlg{}, fmt.Errorf("id-ecPublicKey with digest %v", si.DigestAlgorithm.Algorithm)
		}
		return sigAlg{Algorithm: cert.Algorithm{Kind: cert.ECDSA, Hash: digest}, name: "ECDSA/" + digest.String()}, nil
	}
	alg, err := cert.ResolveAlgorithm(si.SignatureAlgorithm)
	if err != nil {
		return sigAlg{}, err
	}
	s := sigAlg{Algorithm: alg, name: alg.String()}
	if alg.Kind == cert.PKCS1v15 {
		s.name = "RSA PKCS#1 v1.5/" + alg.Hash.String()
	}
	s.smallstep = (alg.Kind == cert.PKCS1v15 || alg.Kind == cert.ECDSA) && ssHash(alg.Hash) && digestOK && ssHash(digest)
	return s, nil
}

// checkSignature verifies the SignerInfo signature over the signed
// attributes (RFC 5652 §5.4) with the DS key. github.com/smallstep/pkcs7
// does it where it supports the algorithm and the certificate (RSA
// PKCS#1 v1.5 and X9.62 ECDSA with SHA-1/256/384/512 on the curves
// crypto/x509 knows, the signer named by the certificate's exact issuer
// bytes); everything else — RSA-PSS, the BSI plain ECDSA format,
// brainpool and explicit-parameter keys, SHA-224, a signer named with
// its RDNs in another order — is verified here (package cert).
func checkSignature(r *Result, s *lds.SOD, si *lds.SignerInfo, ds *x509.Certificate) {
	alg, err := resolveSigAlg(si)
	if err != nil {
		r.fail(CheckSignature, CodeSignatureAlgorithmUnsupported, "%v", err)
		return
	}
	r.SignatureAlgorithm = alg.name
	if alg.smallstep && si.SerialNumber != nil && bytes.Equal(ds.RawIssuer, si.IssuerRaw) {
		if err, used := verifySmallstep(s); used {
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
	if err := cert.Verify(alg.Algorithm, ds.PublicKey, si.SignedAttrsDER, si.Signature); err != nil {
		r.fail(CheckSignature, CodeSignatureInvalid, "%s signature: %v", alg.name, err)
		return
	}
	r.pass(CheckSignature, alg.name+" by the document signer")
}

// verifySmallstep returns used=false when the library cannot decide the
// signature on its own: it could not parse the CMS (e.g. a certificate
// crypto/x509 rejects, such as a brainpool key) or it stopped at its
// signing-time rule (reported by checkSigningTime) before checking the
// signature. It is only asked when the signer's issuer is named with the
// certificate's exact bytes, as the library matches them.
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
