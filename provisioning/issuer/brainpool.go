package issuer

//lint:file-ignore SA1019 brainpool keys exist only as elliptic.Curve; crypto/ecdsa signs them on its generic path.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/pubkey"
)

// crypto/x509 neither encodes brainpool public keys nor signs with
// them, so certificates and CRLs of the brainpool profile are built here
// (RFC 5280 §4.1, §5.1), the way many CSCAs issue them: the CSCA's key
// with explicit domain parameters (RFC 3279 §2.3.5), the document
// signer's with the named curve, ecdsa-with-SHA256 signatures.

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidCRLNumber       = asn1.ObjectIdentifier{2, 5, 29, 20}
)

type validity struct{ NotBefore, NotAfter time.Time }

type tbsCertificate struct {
	Version    int `asn1:"explicit,tag:0"`
	Serial     *big.Int
	SigAlg     pkix.AlgorithmIdentifier
	Issuer     asn1.RawValue
	Validity   validity
	Subject    asn1.RawValue
	SPKI       asn1.RawValue
	Extensions []pkix.Extension `asn1:"explicit,tag:3"`
}

type signed struct {
	TBS    asn1.RawValue
	SigAlg pkix.AlgorithmIdentifier
	Sig    asn1.BitString
}

// newBrainpoolKey generates a brainpoolP256r1 key.
func newBrainpoolKey() (*ecdsa.PrivateKey, error) {
	c, err := pubkey.CurveByParameterID(ParamBrainpoolP256)
	if err != nil {
		return nil, err
	}
	k, err := pubkey.GenerateEC(rand.Reader, c)
	if err != nil {
		return nil, err
	}
	return k.ECDSA(), nil
}

// signDER signs tbs (DER) with key, ECDSA with SHA-256, and wraps it as
// SEQUENCE { tbs, algorithm, BIT STRING }.
func signDER(tbs []byte, key crypto.Signer) ([]byte, error) {
	if _, ok := key.(*ecdsa.PrivateKey); !ok {
		return nil, fmt.Errorf("brainpool profile needs an ECDSA issuer key, have %T", key)
	}
	d := sha256.Sum256(tbs)
	sig, err := key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(signed{TBS: asn1.RawValue{FullBytes: tbs}, SigAlg: pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256},
		Sig: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
}

// keyUsageExt encodes keyUsage (RFC 5280 §4.2.1.3) as a DER named bit
// list (trailing zero bits dropped).
func keyUsageExt(ku x509.KeyUsage) (pkix.Extension, error) {
	var b [2]byte
	n := 0
	for i := range 9 {
		if ku&(1<<uint(i)) != 0 {
			b[i/8] |= 0x80 >> uint(i%8)
			n = i + 1
		}
	}
	v, err := asn1.Marshal(asn1.BitString{Bytes: b[:(n+7)/8], BitLength: n})
	return pkix.Extension{Id: cert.OIDKeyUsage, Critical: true, Value: v}, err
}

// createBrainpoolCert issues tmpl for pub (a brainpool *ecdsa.PublicKey)
// signed by parentKey; a nil parent makes it self-signed (parentKey is
// then pub's own private key). The key is encoded with explicit
// parameters when explicit is set.
func createBrainpoolCert(tmpl *x509.Certificate, pub *ecdsa.PublicKey, explicit bool, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	c, err := pubkey.CurveByParameterID(ParamBrainpoolP256)
	if err != nil {
		return nil, err
	}
	spki, err := pubkey.MarshalECSPKI(c, pub.X, pub.Y, explicit)
	if err != nil {
		return nil, err
	}
	subject, err := asn1.Marshal(tmpl.Subject.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(pubkey.EncodePoint(c, pub.X, pub.Y)) // RFC 5280 §4.2.1.2 method (1)
	issuer, aki := subject, ski[:]
	if parent != nil {
		issuer, aki = parent.RawSubject, parent.SubjectKeyId
	}
	ku, err := keyUsageExt(tmpl.KeyUsage)
	if err != nil {
		return nil, err
	}
	skiV, _ := asn1.Marshal(ski[:])
	akiV, _ := asn1.Marshal(struct {
		ID []byte `asn1:"optional,tag:0"`
	}{aki})
	exts := []pkix.Extension{ku, {Id: cert.OIDSubjectKeyID, Value: skiV}, {Id: cert.OIDAuthorityKeyID, Value: akiV}}
	if tmpl.IsCA {
		bc, _ := asn1.Marshal(struct {
			CA      bool
			PathLen int
		}{true, 0})
		exts = append(exts, pkix.Extension{Id: cert.OIDBasicConstraints, Critical: true, Value: bc})
	}
	if len(tmpl.UnknownExtKeyUsage) > 0 {
		v, err := asn1.Marshal(tmpl.UnknownExtKeyUsage)
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: cert.OIDExtKeyUsage, Value: v})
	}
	tbs, err := asn1.Marshal(tbsCertificate{Version: 2, Serial: tmpl.SerialNumber,
		SigAlg: pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256},
		Issuer: asn1.RawValue{FullBytes: issuer}, Validity: validity{tmpl.NotBefore.UTC(), tmpl.NotAfter.UTC()},
		Subject: asn1.RawValue{FullBytes: subject}, SPKI: asn1.RawValue{FullBytes: spki}, Extensions: exts})
	if err != nil {
		return nil, err
	}
	der, err := signDER(tbs, parentKey)
	if err != nil {
		return nil, err
	}
	return cert.Parse(der)
}

type revoked struct {
	Serial *big.Int
	Time   time.Time
}

type tbsCertList struct {
	Version    int
	SigAlg     pkix.AlgorithmIdentifier
	Issuer     asn1.RawValue
	ThisUpdate time.Time
	NextUpdate asn1.RawValue    `asn1:"optional"`
	Revoked    []revoked        `asn1:"optional"`
	Extensions []pkix.Extension `asn1:"optional,explicit,tag:0"`
}

// newRawCRL is NewCRL for what crypto/x509 cannot make: a CRL of a
// brainpool CSCA, or one without nextUpdate (ECDSA CSCAs).
func newRawCRL(csca *x509.Certificate, key crypto.Signer, o CRLOptions) ([]byte, error) {
	num, _ := asn1.Marshal(big.NewInt(o.Number))
	akiV, _ := asn1.Marshal(struct {
		ID []byte `asn1:"optional,tag:0"`
	}{csca.SubjectKeyId})
	l := tbsCertList{Version: 1, SigAlg: pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256},
		Issuer: asn1.RawValue{FullBytes: csca.RawSubject}, ThisUpdate: o.ThisUpdate.UTC(),
		Extensions: []pkix.Extension{{Id: oidCRLNumber, Value: num}, {Id: cert.OIDAuthorityKeyID, Value: akiV}}}
	if !o.NextUpdate.IsZero() {
		nu, err := asn1.Marshal(o.NextUpdate.UTC())
		if err != nil {
			return nil, err
		}
		l.NextUpdate = asn1.RawValue{FullBytes: nu}
	}
	for _, sn := range o.Revoked {
		l.Revoked = append(l.Revoked, revoked{sn, o.ThisUpdate.UTC()})
	}
	tbs, err := asn1.Marshal(l)
	if err != nil {
		return nil, err
	}
	return signDER(tbs, key)
}
