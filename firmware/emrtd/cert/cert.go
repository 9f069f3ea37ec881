// Package cert reads the X.509 certificates of the eMRTD PKI (ICAO
// 9303-12 §7.1: CSCA, document signer, master-list signer, link
// certificates) and verifies signatures made with their keys.
//
// Parse uses crypto/x509 first. About a quarter of the CSCAs countries
// publish are refused by it: brainpool curves, explicit EC domain
// parameters (RFC 3279 §2.3.5 ECParameters), id-RSASSA-PSS keys, an
// rsaEncryption key without its NULL parameters, negative serial
// numbers, basicConstraints encodings Go finds invalid. For those, Parse
// reads the TBSCertificate itself (RFC 5280 §4.1) and fills an
// *x509.Certificate with the fields the PKI checks use; the key comes
// from package pubkey, which matches explicit EC parameters to a named
// curve by comparing p, a, b, G and n (a curve it does not know is
// refused, not verified generically).
//
// Such a certificate must not be handed to crypto/x509's chain or
// signature methods: CheckSigned verifies a certificate or CRL signature
// with any key Parse returns (RSA PKCS #1 v1.5, RSASSA-PSS with explicit
// parameters, ECDSA X9.62 and BSI TR-03111 plain format on any curve of
// package pubkey).
package cert

//lint:file-ignore SA1019 brainpool curves exist only as elliptic.Curve; crypto/ecdsa verifies them on its generic path.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode/utf16"

	"kiosk/firmware/emrtd/ber"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/tlv"
)

// ErrMalformed is wrapped by every error of Parse.
var ErrMalformed = errors.New("malformed certificate")

// Extension OIDs (RFC 5280 §4.2.1).
var (
	OIDKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	OIDBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	OIDSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	OIDAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	OIDExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
)

type certificate struct {
	TBS    asn1.RawValue
	SigAlg pkix.AlgorithmIdentifier
	Sig    asn1.BitString
}

type tbsCertificate struct {
	Version  int `asn1:"optional,explicit,default:0,tag:0"`
	Serial   asn1.RawValue
	SigAlg   pkix.AlgorithmIdentifier
	Issuer   asn1.RawValue
	Validity struct {
		NotBefore, NotAfter asn1.RawValue
	}
	Subject    asn1.RawValue
	SPKI       asn1.RawValue
	IssuerUID  asn1.BitString   `asn1:"optional,tag:1"`
	SubjectUID asn1.BitString   `asn1:"optional,tag:2"`
	Extensions []pkix.Extension `asn1:"optional,explicit,tag:3"`
}

// Parse parses one DER certificate: with crypto/x509 when it can, else
// with this package's reader (see the package comment). The result's
// PublicKey is an *rsa.PublicKey or *ecdsa.PublicKey.
//
// A certificate in BER (indefinite lengths, constructed strings) is
// converted to DER first (package ber): RFC 5280 §4.1.1.3 computes the
// signature over the DER tbsCertificate, so the converted bytes are the
// signed ones.
func Parse(der []byte) (*x509.Certificate, error) {
	if d, err := ber.ToDER(der); err == nil && !bytes.Equal(d, der) {
		der = d
	}
	c, xerr := x509.ParseCertificate(der)
	if xerr == nil {
		switch c.PublicKey.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey:
			return c, nil
		}
		// crypto/x509 takes a key algorithm it does not know (no key) or
		// one no document signs with (DSA, Ed25519): the lenient reader
		// below decides, and refuses what is no signature key here.
		xerr = fmt.Errorf("public key algorithm %v", c.PublicKeyAlgorithm)
	}
	c, err := parse(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (crypto/x509: %v)", ErrMalformed, err, xerr)
	}
	return c, nil
}

func parse(der []byte) (*x509.Certificate, error) {
	var outer certificate
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("certificate: %v", errOr(err, "trailing bytes"))
	}
	var tbs tbsCertificate
	if rest, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("tbsCertificate: %v", errOr(err, "trailing bytes"))
	}
	if tbs.Serial.Class != asn1.ClassUniversal || tbs.Serial.Tag != asn1.TagInteger || len(tbs.Serial.Bytes) == 0 || len(tbs.Serial.Bytes) > 40 {
		return nil, errors.New("serial number")
	}
	c := &x509.Certificate{
		Raw:                     der,
		RawTBSCertificate:       outer.TBS.FullBytes,
		RawSubjectPublicKeyInfo: tbs.SPKI.FullBytes,
		RawSubject:              tbs.Subject.FullBytes,
		RawIssuer:               tbs.Issuer.FullBytes,
		Version:                 tbs.Version + 1,
		SerialNumber:            signedInt(tbs.Serial.Bytes),
		Signature:               outer.Sig.RightAlign(),
		SignatureAlgorithm:      signatureAlgorithm(outer.SigAlg),
	}
	var err error
	if c.Subject, err = ParseName(c.RawSubject); err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	if c.Issuer, err = ParseName(c.RawIssuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if c.NotBefore, err = parseTime(tbs.Validity.NotBefore); err != nil {
		return nil, fmt.Errorf("notBefore: %w", err)
	}
	if c.NotAfter, err = parseTime(tbs.Validity.NotAfter); err != nil {
		return nil, fmt.Errorf("notAfter: %w", err)
	}
	k, err := pubkey.ParseSPKI(c.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	switch {
	case k.EC != nil:
		c.PublicKeyAlgorithm, c.PublicKey = x509.ECDSA, k.EC.ECDSA()
	case k.RSA != nil:
		c.PublicKeyAlgorithm, c.PublicKey = x509.RSA, k.RSA
	default:
		return nil, fmt.Errorf("public key %s is no signature key", k.Describe())
	}
	for _, e := range tbs.Extensions {
		if err := applyExtension(c, e); err != nil {
			return nil, err
		}
	}
	c.Extensions = tbs.Extensions
	return c, nil
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}

// signedInt reads a two's-complement INTEGER (RFC 5280 §4.1.2.2 wants
// positive serials; some CSCAs have negative ones).
func signedInt(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

func parseTime(v asn1.RawValue) (time.Time, error) {
	var t time.Time
	if rest, err := asn1.Unmarshal(v.FullBytes, &t); err != nil || len(rest) != 0 {
		return time.Time{}, fmt.Errorf("%v", errOr(err, "trailing bytes"))
	}
	return t, nil
}

func applyExtension(c *x509.Certificate, e pkix.Extension) error {
	switch {
	case e.Id.Equal(OIDKeyUsage):
		var bits asn1.BitString
		if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) != 0 {
			return errors.New("keyUsage extension")
		}
		var ku x509.KeyUsage
		for i := range 9 {
			if bits.At(i) != 0 {
				ku |= 1 << uint(i)
			}
		}
		c.KeyUsage = ku
	case e.Id.Equal(OIDBasicConstraints):
		// SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER
		// OPTIONAL }, read leniently: a BOOLEAN any non-zero octet is
		// TRUE (X.690 §8.2.2), which crypto/x509's DER rules refuse.
		body, err := tlv.Unwrap(e.Value, 0x30)
		if err != nil {
			return errors.New("basicConstraints extension")
		}
		objs, err := tlv.ParseAll(body)
		if err != nil {
			return errors.New("basicConstraints extension")
		}
		c.BasicConstraintsValid = true
		c.MaxPathLen = -1
		for _, o := range objs {
			switch {
			case o.Tag == 0x01 && len(o.Value) == 1:
				c.IsCA = o.Value[0] != 0
			case o.Tag == 0x02 && len(o.Value) >= 1 && len(o.Value) <= 4 && o.Value[0]&0x80 == 0:
				c.MaxPathLen = int(new(big.Int).SetBytes(o.Value).Int64())
				c.MaxPathLenZero = c.MaxPathLen == 0
			default:
				return errors.New("basicConstraints extension")
			}
		}
	case e.Id.Equal(OIDSubjectKeyID):
		var id []byte
		if rest, err := asn1.Unmarshal(e.Value, &id); err != nil || len(rest) != 0 {
			return errors.New("subjectKeyIdentifier extension")
		}
		c.SubjectKeyId = id
	case e.Id.Equal(OIDAuthorityKeyID):
		var aki struct {
			ID []byte `asn1:"optional,tag:0"`
		}
		// Only the keyIdentifier is used; issuer and serial may follow.
		if _, err := asn1.UnmarshalWithParams(e.Value, &aki, ""); err == nil {
			c.AuthorityKeyId = aki.ID
		}
	case e.Id.Equal(OIDExtKeyUsage):
		var oids []asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(e.Value, &oids); err != nil || len(rest) != 0 {
			return errors.New("extKeyUsage extension")
		}
		c.UnknownExtKeyUsage = oids
	}
	return nil
}

// HasExtKeyUsage reports whether c's extKeyUsage extension (RFC 5280
// §4.2.1.12) lists oid, and whether c has that extension at all.
func HasExtKeyUsage(c *x509.Certificate, oid asn1.ObjectIdentifier) (listed, present bool) {
	for _, e := range c.Extensions {
		if !e.Id.Equal(OIDExtKeyUsage) {
			continue
		}
		var oids []asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(e.Value, &oids); err != nil {
			return false, true
		}
		for _, o := range oids {
			if o.Equal(oid) {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

// HasExtension reports whether c carries the extension oid.
func HasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

// Name attribute types whose values ParseName keeps as text.
var oidCountry = asn1.ObjectIdentifier{2, 5, 4, 6}

// ParseName reads an RDNSequence leniently (RFC 5280 §4.1.2.4): every
// attribute value that is a string type becomes its text (BMPString
// decoded from UTF-16, the others taken as bytes), whatever characters
// it holds. crypto/x509 refuses names with, e.g., a '_' in a
// PrintableString.
func ParseName(raw []byte) (pkix.Name, error) {
	var name pkix.Name
	rdns, err := parseRDNs(raw)
	if err != nil {
		return name, err
	}
	var seq pkix.RDNSequence
	for _, set := range rdns {
		var rdn pkix.RelativeDistinguishedNameSET
		for _, a := range set {
			rdn = append(rdn, pkix.AttributeTypeAndValue{Type: a.typ, Value: a.text()})
		}
		seq = append(seq, rdn)
	}
	name.FillFromRDNSequence(&seq)
	return name, nil
}

type atv struct {
	typ   asn1.ObjectIdentifier
	tag   tlv.Tag
	value []byte
}

func (a atv) text() string {
	if a.tag == 0x1E { // BMPString
		if len(a.value)%2 != 0 {
			return string(a.value)
		}
		u := make([]uint16, len(a.value)/2)
		for i := range u {
			u[i] = uint16(a.value[2*i])<<8 | uint16(a.value[2*i+1])
		}
		return string(utf16.Decode(u))
	}
	return string(a.value)
}

func parseRDNs(raw []byte) ([][]atv, error) {
	body, err := tlv.Unwrap(raw, 0x30)
	if err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	sets, err := tlv.ParseAll(body)
	if err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	var out [][]atv
	for _, s := range sets {
		if s.Tag != 0x31 {
			return nil, fmt.Errorf("name: RDN tag %s", s.Tag)
		}
		atvs, err := tlv.ParseAll(s.Value)
		if err != nil || len(atvs) == 0 {
			return nil, errors.New("name: empty or malformed RDN")
		}
		var set []atv
		for _, a := range atvs {
			parts, err := a.Children()
			if a.Tag != 0x30 || err != nil || len(parts) != 2 || parts[0].Tag != 0x06 {
				return nil, errors.New("name: malformed AttributeTypeAndValue")
			}
			var oid asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(tlv.Encode(0x06, parts[0].Value), &oid); err != nil {
				return nil, errors.New("name: attribute type")
			}
			set = append(set, atv{typ: oid, tag: parts[1].Tag, value: parts[1].Value})
		}
		out = append(out, set)
	}
	return out, nil
}

// SameName reports whether two DER Names denote the same entity: equal
// bytes, or the same set of attributes (type and value) regardless of
// RDN order and string type, values compared with leading, trailing and
// repeated spaces removed and case ignored (RFC 5280 §7.1 in the small).
// A SignerInfo's issuer often lists the RDNs in another order than the
// certificate.
func SameName(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ra, err1 := parseRDNs(a)
	rb, err2 := parseRDNs(b)
	if err1 != nil || err2 != nil {
		return false
	}
	ka, kb := nameKeys(ra), nameKeys(rb)
	if len(ka) != len(kb) {
		return false
	}
	for k, n := range ka {
		if kb[k] != n {
			return false
		}
	}
	return true
}

func nameKeys(rdns [][]atv) map[string]int {
	m := map[string]int{}
	for _, set := range rdns {
		for _, a := range set {
			v := strings.ToLower(strings.Join(strings.Fields(a.text()), " "))
			m[a.typ.String()+"="+v]++
		}
	}
	return m
}

// Country returns the countryName of a DER Name (upper case), or "".
func Country(raw []byte) string {
	rdns, err := parseRDNs(raw)
	if err != nil {
		return ""
	}
	for _, set := range rdns {
		for _, a := range set {
			if a.typ.Equal(oidCountry) {
				return strings.ToUpper(strings.TrimSpace(a.text()))
			}
		}
	}
	return ""
}
