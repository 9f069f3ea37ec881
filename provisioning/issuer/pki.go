package issuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"time"

	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/tlv"
)

// CRLOptions describe a test CRL of a CSCA (9303-12 §7.1.4). A zero
// NextUpdate leaves the field out (RFC 5280 §5.1.2.5 wants it; some CAs
// omit it), for ECDSA CSCAs.
type CRLOptions struct {
	ThisUpdate, NextUpdate time.Time
	Revoked                []*big.Int // serial numbers, revoked at ThisUpdate
	Number                 int64      // cRLNumber; 0 means 1
}

// NewCRL creates a DER CRL issued and signed by the CSCA.
func NewCRL(csca *x509.Certificate, key crypto.Signer, o CRLOptions) ([]byte, error) {
	if o.Number == 0 {
		o.Number = 1
	}
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(o.Number),
		ThisUpdate: o.ThisUpdate,
		NextUpdate: o.NextUpdate,
	}
	for _, sn := range o.Revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: sn, RevocationTime: o.ThisUpdate})
	}
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		switch {
		case o.NextUpdate.IsZero(): // crypto/x509 requires nextUpdate
			return newRawCRL(csca, key, o)
		case k.Curve == elliptic.P224(), k.Curve == elliptic.P256(), k.Curve == elliptic.P384(), k.Curve == elliptic.P521():
		default: // brainpool: crypto/x509 cannot sign with it
			return newRawCRL(csca, key, o)
		}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, csca, key)
	if err != nil {
		return nil, fmt.Errorf("create CRL: %w", err)
	}
	return der, nil
}

// NewMasterListSigner issues a master list signer certificate (9303-12
// §7.1.1: keyUsage digitalSignature, extKeyUsage
// id-icao-cscaMasterListSigningKey) from the CSCA.
func NewMasterListSigner(csca *x509.Certificate, cscaKey crypto.Signer, alg SignatureAlg, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	return newCert("master list signer", alg, &x509.Certificate{
		Subject:            pkix.Name{Country: csca.Subject.Country, Organization: []string{"Kiosk Test Issuer"}, CommonName: "Test Master List Signer"},
		NotBefore:          now.Add(-time.Hour),
		NotAfter:           now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{pa.OIDMasterListSigning},
	}, csca, cscaKey)
}

// NewMasterList builds a CSCA master list (9303-12 §9): CMS SignedData of
// type id-icao-cscaMasterList over CscaMasterList { v0, SET OF
// Certificate }, signed by signer. badSignature flips a bit of the
// signature (a defective list for tests).
func NewMasterList(signer *x509.Certificate, key crypto.Signer, alg SignatureAlg, cscas []*x509.Certificate, now time.Time, badSignature bool) ([]byte, error) {
	var certs [][]byte
	for _, c := range cscas {
		certs = append(certs, c.Raw)
	}
	version, _ := asn1.Marshal(0)
	content := tlv.Encode(0x30, tlv.Concat(version, tlv.Encode(0x31, tlv.Concat(sortDER(certs)...))))
	ci, err := buildSignedData(pa.OIDCSCAMasterList, content, signer, key, alg, now)
	if err != nil {
		return nil, err
	}
	if badSignature {
		// The signature OCTET STRING ends the last SignerInfo, which ends
		// the ContentInfo: its last byte is signature material.
		ci[len(ci)-1] ^= 0x01
	}
	return ci, nil
}

// sortDER orders a DER SET OF's elements.
func sortDER(els [][]byte) [][]byte {
	out := slices.Clone(els)
	slices.SortFunc(out, bytes.Compare)
	return out
}
