package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/tlv"
)

var (
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidRSASSAPSS     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSAWithSHA  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type pssParams struct {
	Hash       pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
	MGF        pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
	SaltLength int                      `asn1:"explicit,tag:2"`
}

// signatureAlgorithm returns the SignerInfo signatureAlgorithm for alg.
func signatureAlgorithm(alg SignatureAlg) (pkix.AlgorithmIdentifier, error) {
	sha256 := pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256, Parameters: asn1.NullRawValue}
	switch alg {
	case SigECDSAP256, SigECDSABrainpool:
		return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA}, nil
	case SigRSA2048:
		return pkix.AlgorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}, nil
	case SigRSAPSS:
		mgfParams, err := asn1.Marshal(sha256)
		if err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		p, err := asn1.Marshal(pssParams{Hash: sha256,
			MGF:        pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
			SaltLength: 32})
		if err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		return pkix.AlgorithmIdentifier{Algorithm: oidRSASSAPSS, Parameters: asn1.RawValue{FullBytes: p}}, nil
	}
	return pkix.AlgorithmIdentifier{}, fmt.Errorf("signature algorithm %q", alg)
}

func attribute(oid asn1.ObjectIdentifier, value any) ([]byte, error) {
	v, err := asn1.Marshal(value)
	if err != nil {
		return nil, err
	}
	o, err := asn1.Marshal(oid)
	if err != nil {
		return nil, err
	}
	return tlv.Encode(0x30, tlv.Concat(o, tlv.Encode(0x31, v))), nil
}

// buildSOD signs content (a DER LDSSecurityObject) as CMS SignedData
// (RFC 5652 §5; profile of 9303-10 §4.6.2): SHA-256 digest, signed
// attributes content-type, message-digest and signing-time, the DS
// certificate embedded, and wraps it in the EF.SOD tag 77.
func buildSOD(content []byte, ds *x509.Certificate, key crypto.Signer, alg SignatureAlg, signingTime time.Time) ([]byte, error) {
	ci, err := buildSignedData(lds.OIDLDSSecurityObject, content, ds, key, alg, signingTime)
	if err != nil {
		return nil, err
	}
	return tlv.Encode(lds.TagSOD, ci), nil
}

// buildSignedData signs content of type contentType as a CMS
// ContentInfo(SignedData) with the profile above (also used for master
// lists, 9303-12 §9).
func buildSignedData(contentType asn1.ObjectIdentifier, content []byte, ds *x509.Certificate, key crypto.Signer, alg SignatureAlg, signingTime time.Time) ([]byte, error) {
	digestAlg := pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256}
	sigAlg, err := signatureAlgorithm(alg)
	if err != nil {
		return nil, err
	}
	md := crypto.SHA256.New()
	md.Write(content)
	var attrs [][]byte
	for _, a := range []struct {
		oid asn1.ObjectIdentifier
		v   any
	}{
		{lds.OIDContentType, contentType},
		{lds.OIDMessageDigest, md.Sum(nil)},
		{lds.OIDSigningTime, signingTime.UTC()},
	} {
		enc, err := attribute(a.oid, a.v)
		if err != nil {
			return nil, fmt.Errorf("signed attribute %v: %w", a.oid, err)
		}
		attrs = append(attrs, enc)
	}
	// DER SET OF: elements in ascending order of their encodings.
	signedAttrs := tlv.Encode(0x31, tlv.Concat(sortDER(attrs)...))

	h := crypto.SHA256.New()
	h.Write(signedAttrs)
	var sig []byte
	switch alg {
	case SigRSAPSS:
		rk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("RSA-PSS needs an RSA key, have %T", key)
		}
		sig, err = rsa.SignPSS(rand.Reader, rk, crypto.SHA256, h.Sum(nil), &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256})
	case SigECDSAP256, SigECDSABrainpool:
		if _, ok := key.(*ecdsa.PrivateKey); !ok {
			return nil, fmt.Errorf("ECDSA needs an EC key, have %T", key)
		}
		sig, err = key.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
	default:
		sig, err = key.Sign(rand.Reader, h.Sum(nil), crypto.SHA256) // PKCS #1 v1.5 for RSA keys
	}
	if err != nil {
		return nil, fmt.Errorf("sign SOD: %w", err)
	}

	version, _ := asn1.Marshal(1) // SignerInfo v1: issuerAndSerialNumber
	sid, err := asn1.Marshal(issuerAndSerial{Issuer: asn1.RawValue{FullBytes: ds.RawIssuer}, Serial: ds.SerialNumber})
	if err != nil {
		return nil, err
	}
	da, _ := asn1.Marshal(digestAlg)
	sa, err := asn1.Marshal(sigAlg)
	if err != nil {
		return nil, err
	}
	sigOct, _ := asn1.Marshal(sig)
	// [0] IMPLICIT SET OF Attribute: same bytes with the context tag.
	implicitAttrs := append([]byte{0xA0}, signedAttrs[1:]...)
	signerInfo := tlv.Encode(0x30, tlv.Concat(version, sid, da, implicitAttrs, sa, sigOct))

	eContentType, _ := asn1.Marshal(contentType)
	eContent, _ := asn1.Marshal(content)
	encap := tlv.Encode(0x30, tlv.Concat(eContentType, tlv.Encode(0xA0, eContent)))
	sdVersion, _ := asn1.Marshal(3) // RFC 5652 §5.1: v3 when eContentType is not id-data
	signedData := tlv.Encode(0x30, tlv.Concat(
		sdVersion,
		tlv.Encode(0x31, da),
		encap,
		tlv.Encode(0xA0, ds.Raw),
		tlv.Encode(0x31, signerInfo),
	))
	ct, _ := asn1.Marshal(lds.OIDSignedData)
	return tlv.Encode(0x30, tlv.Concat(ct, tlv.Encode(0xA0, signedData))), nil
}
