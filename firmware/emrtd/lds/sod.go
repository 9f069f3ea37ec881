package lds

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sort"

	// Hash implementations for the OIDs LDSSecurityObject may name.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"

	"kiosk/firmware/emrtd/ber"
	"kiosk/firmware/emrtd/tlv"
)

// Object identifiers of EF.SOD (9303-10 §4.6.2, RFC 5652, RFC 5754).
var (
	OIDLDSSecurityObject = asn1.ObjectIdentifier{2, 23, 136, 1, 1, 1}
	OIDSignedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	OIDData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDContentType       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	OIDMessageDigest     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	OIDSigningTime       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	OIDSHA1              = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	OIDSHA224            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	OIDSHA256            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	OIDSHA384            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	OIDSHA512            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// HashForOID maps a digest algorithm OID to its hash (9303-12 §4 allows
// SHA-1 and the SHA-2 family).
func HashForOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(OIDSHA1):
		return crypto.SHA1, true
	case oid.Equal(OIDSHA224):
		return crypto.SHA224, true
	case oid.Equal(OIDSHA256):
		return crypto.SHA256, true
	case oid.Equal(OIDSHA384):
		return crypto.SHA384, true
	case oid.Equal(OIDSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// OIDForHash is the inverse of HashForOID.
func OIDForHash(h crypto.Hash) (asn1.ObjectIdentifier, bool) {
	switch h {
	case crypto.SHA1:
		return OIDSHA1, true
	case crypto.SHA224:
		return OIDSHA224, true
	case crypto.SHA256:
		return OIDSHA256, true
	case crypto.SHA384:
		return OIDSHA384, true
	case crypto.SHA512:
		return OIDSHA512, true
	}
	return nil, false
}

// DataGroupHash is one entry of dataGroupHashValues.
type DataGroupHash struct {
	DataGroupNumber int
	Hash            []byte
}

// LDSSecurityObject is the signed content of EF.SOD (9303-10 §4.6.2.2).
type LDSSecurityObject struct {
	Version        int // 0, or 1 with the LDS version info
	HashAlgorithm  pkix.AlgorithmIdentifier
	Hashes         []DataGroupHash
	LDSVersion     string // v1 only, e.g. "0108"
	UnicodeVersion string // v1 only
}

// HashOf returns the hash listed for data group n.
func (l *LDSSecurityObject) HashOf(n int) ([]byte, bool) {
	for _, h := range l.Hashes {
		if h.DataGroupNumber == n {
			return h.Hash, true
		}
	}
	return nil, false
}

type ldsVersionInfo struct {
	LDSVersion     string `asn1:"printable"`
	UnicodeVersion string `asn1:"printable"`
}

type ldsSecurityObjectASN1 struct {
	Version       int
	HashAlgorithm pkix.AlgorithmIdentifier
	Hashes        []dataGroupHashASN1
	VersionInfo   ldsVersionInfo `asn1:"optional"`
}

type dataGroupHashASN1 struct {
	Number int
	Hash   []byte
}

// ParseLDSSecurityObject parses the DER LDSSecurityObject.
func ParseLDSSecurityObject(der []byte) (*LDSSecurityObject, error) {
	if d, err := ber.ToDER(der); err == nil {
		der = d // the hash covers the bytes as signed; parsing wants DER
	}
	var a ldsSecurityObjectASN1
	rest, err := asn1.Unmarshal(der, &a)
	if err != nil {
		return nil, malformed("LDSSecurityObject: %v", err)
	}
	if len(rest) != 0 {
		return nil, malformed("LDSSecurityObject: %d trailing bytes", len(rest))
	}
	if a.Version != 0 && a.Version != 1 {
		return nil, malformed("LDSSecurityObject version %d", a.Version)
	}
	// ub-DataGroups is 16. The ASN.1 says SIZE (2..16); one entry is
	// accepted because PA checks each read DG against the list anyway.
	if len(a.Hashes) < 1 || len(a.Hashes) > 16 {
		return nil, malformed("LDSSecurityObject lists %d data groups", len(a.Hashes))
	}
	l := &LDSSecurityObject{Version: a.Version, HashAlgorithm: a.HashAlgorithm,
		LDSVersion: a.VersionInfo.LDSVersion, UnicodeVersion: a.VersionInfo.UnicodeVersion}
	h, known := HashForOID(a.HashAlgorithm.Algorithm)
	seen := map[int]bool{}
	for _, e := range a.Hashes {
		if e.Number < 1 || e.Number > 16 || seen[e.Number] {
			return nil, malformed("LDSSecurityObject: data group number %d invalid or repeated", e.Number)
		}
		seen[e.Number] = true
		if known && len(e.Hash) != h.Size() {
			return nil, malformed("LDSSecurityObject: DG%d hash of %d bytes for %v", e.Number, len(e.Hash), h)
		}
		l.Hashes = append(l.Hashes, DataGroupHash{DataGroupNumber: e.Number, Hash: e.Hash})
	}
	return l, nil
}

// EncodeLDSSecurityObject builds the DER LDSSecurityObject (v1 when the
// LDS version is set).
func EncodeLDSSecurityObject(l *LDSSecurityObject) ([]byte, error) {
	a := ldsSecurityObjectASN1{Version: 0, HashAlgorithm: l.HashAlgorithm}
	if l.LDSVersion != "" {
		a.Version = 1
		a.VersionInfo = ldsVersionInfo{LDSVersion: l.LDSVersion, UnicodeVersion: l.UnicodeVersion}
	}
	for _, h := range l.Hashes {
		a.Hashes = append(a.Hashes, dataGroupHashASN1{Number: h.DataGroupNumber, Hash: h.Hash})
	}
	der, err := asn1.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode LDSSecurityObject: %w", err)
	}
	return der, nil
}

// Attribute is a CMS attribute (RFC 5652 §5.3) with its values as DER.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values [][]byte
}

// SignerInfo is a parsed CMS SignerInfo (RFC 5652 §5.3). Verifying it is
// package pa's job.
type SignerInfo struct {
	Version int
	// The signer is named either by issuer and serial number or by a
	// subject key identifier ([0]).
	IssuerRaw          []byte
	SerialNumber       *big.Int
	SubjectKeyID       []byte
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        []Attribute
	SignedAttrsDER     []byte // re-tagged as SET OF (0x31): what was signed (RFC 5652 §5.4)
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
}

// Attr returns the values of the signed attribute t.
func (s *SignerInfo) Attr(t asn1.ObjectIdentifier) ([][]byte, bool) {
	for _, a := range s.SignedAttrs {
		if a.Type.Equal(t) {
			return a.Values, true
		}
	}
	return nil, false
}

// SOD is EF.SOD parsed down to its LDSSecurityObject (9303-10 §4.6.2).
type SOD struct {
	DigestAlgorithms []pkix.AlgorithmIdentifier
	ContentType      asn1.ObjectIdentifier // eContentType
	Content          []byte                // eContent: the DER LDSSecurityObject
	Certificates     [][]byte              // DER, the document signer among them
	Signers          []SignerInfo
	LDS              *LDSSecurityObject
	// CMS is the ContentInfo (without the 77 wrapper) in DER, for CMS
	// libraries.
	CMS []byte
	// BER is set when the ContentInfo was BER and converted to DER.
	BER bool
	// ContentTypeIsData is set when the eContentType is id-data rather
	// than id-icao-mrtd-security-ldsSecurityObject (a deviation some
	// issuers make).
	ContentTypeIsData bool
}

// elem is an object with its full encoding.
type elem struct {
	tlv.Object
	Raw []byte
}

func elems(b []byte) ([]elem, error) {
	var out []elem
	for len(b) > 0 {
		o, rest, err := tlv.Read(b)
		if err != nil {
			return nil, err
		}
		out = append(out, elem{o, b[:len(b)-len(rest)]})
		b = rest
	}
	return out, nil
}

func expect(e []elem, i int, t tlv.Tag, what string) (elem, error) {
	if i >= len(e) {
		return elem{}, malformed("SOD: %s missing", what)
	}
	if e[i].Tag != t {
		return elem{}, malformed("SOD: %s has tag %s, want %s", what, e[i].Tag, t)
	}
	return e[i], nil
}

func unmarshalExact(raw []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(raw, v)
	if err != nil {
		return malformed("SOD: %s: %v", what, err)
	}
	if len(rest) != 0 {
		return malformed("SOD: %s: trailing bytes", what)
	}
	return nil
}

// ParseSOD parses EF.SOD: 77 { ContentInfo { signedData, [0] SignedData {
// version, digestAlgorithms, encapContentInfo { ldsSecurityObject, [0]
// OCTET STRING }, [0] certificates, [1] crls, signerInfos } } }.
//
// Indefinite lengths and constructed strings (BER, X.690 §8.1.3.6,
// §8.7.3), which some issuers' CMS libraries produce, are converted to
// DER first (package ber); BER reports whether that changed anything.
func ParseSOD(b []byte) (*SOD, error) {
	converted := false
	if der, err := ber.ToDER(b); err == nil && !bytes.Equal(der, b) {
		b, converted = der, true
	}
	ci, err := tlv.Unwrap(b, TagSOD)
	if err != nil {
		return nil, malformed("EF.SOD: %v", err)
	}
	s, err := ParseSignedData(ci)
	if err != nil {
		return nil, err
	}
	s.BER = s.BER || converted
	// 9303-10 §4.6.2 names id-icao-mrtd-security-ldsSecurityObject;
	// some issuers (Chinese passports among them) use id-data (RFC 5652
	// §4) for the same content. Both are read as an LDSSecurityObject;
	// the content-type signed attribute must still name the same type.
	switch {
	case s.ContentType.Equal(OIDLDSSecurityObject):
	case s.ContentType.Equal(OIDData):
		s.ContentTypeIsData = true
	default:
		return nil, malformed("eContentType %v is not id-icao-mrtd-security-ldsSecurityObject", s.ContentType)
	}
	if s.LDS, err = ParseLDSSecurityObject(s.Content); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseSignedData parses a CMS ContentInfo holding SignedData (RFC 5652
// §5) with any eContentType: the SOD's LDSSecurityObject or an ICAO
// master list (9303-12 §9). LDS stays nil; the caller interprets Content.
//
// BER input is converted to DER first, as for ParseSOD.
func ParseSignedData(ci []byte) (*SOD, error) {
	converted := false
	if der, err := ber.ToDER(ci); err == nil && !bytes.Equal(der, ci) {
		ci, converted = der, true
	}
	s := &SOD{CMS: ci, BER: converted}
	seq, err := tlv.Unwrap(ci, 0x30)
	if err != nil {
		return nil, malformed("SOD ContentInfo: %v", err)
	}
	ce, err := elems(seq)
	if err != nil {
		return nil, malformed("SOD ContentInfo: %v", err)
	}
	if len(ce) != 2 {
		return nil, malformed("SOD ContentInfo has %d elements", len(ce))
	}
	var ct asn1.ObjectIdentifier
	if err := unmarshalExact(ce[0].Raw, &ct, "content type"); err != nil {
		return nil, err
	}
	if !ct.Equal(OIDSignedData) {
		return nil, malformed("SOD content type %v is not signedData", ct)
	}
	if ce[1].Tag != 0xA0 {
		return nil, malformed("SOD content tag %s", ce[1].Tag)
	}
	sdv, err := tlv.Unwrap(ce[1].Value, 0x30)
	if err != nil {
		return nil, malformed("SignedData: %v", err)
	}
	sd, err := elems(sdv)
	if err != nil {
		return nil, malformed("SignedData: %v", err)
	}
	i := 0
	if _, err := expect(sd, i, 0x02, "SignedData version"); err != nil {
		return nil, err
	}
	i++
	da, err := expect(sd, i, 0x31, "digestAlgorithms")
	if err != nil {
		return nil, err
	}
	i++
	das, err := elems(da.Value)
	if err != nil {
		return nil, malformed("digestAlgorithms: %v", err)
	}
	for _, d := range das {
		var ai pkix.AlgorithmIdentifier
		if err := unmarshalExact(d.Raw, &ai, "digest algorithm"); err != nil {
			return nil, err
		}
		s.DigestAlgorithms = append(s.DigestAlgorithms, ai)
	}
	eci, err := expect(sd, i, 0x30, "encapContentInfo")
	if err != nil {
		return nil, err
	}
	i++
	if err := parseEncap(s, eci.Value); err != nil {
		return nil, err
	}
	if i < len(sd) && sd[i].Tag == 0xA0 {
		certs, err := elems(sd[i].Value)
		if err != nil {
			return nil, malformed("certificates: %v", err)
		}
		for _, c := range certs {
			if c.Tag != 0x30 {
				return nil, malformed("certificate choice %s is not a certificate", c.Tag)
			}
			s.Certificates = append(s.Certificates, c.Raw)
		}
		i++
	}
	if i < len(sd) && sd[i].Tag == 0xA1 {
		i++ // CRLs are not used by 9303
	}
	sis, err := expect(sd, i, 0x31, "signerInfos")
	if err != nil {
		return nil, err
	}
	if i+1 != len(sd) {
		return nil, malformed("SignedData: %d elements after signerInfos", len(sd)-i-1)
	}
	sie, err := elems(sis.Value)
	if err != nil {
		return nil, malformed("signerInfos: %v", err)
	}
	for n, e := range sie {
		if e.Tag != 0x30 {
			return nil, malformed("signerInfo %d tag %s", n, e.Tag)
		}
		si, err := parseSignerInfo(e.Value)
		if err != nil {
			return nil, fmt.Errorf("signerInfo %d: %w", n, err)
		}
		s.Signers = append(s.Signers, si)
	}
	if len(s.Signers) == 0 {
		return nil, malformed("SOD without signerInfo")
	}
	return s, nil
}

func parseEncap(s *SOD, v []byte) error {
	e, err := elems(v)
	if err != nil {
		return malformed("encapContentInfo: %v", err)
	}
	if len(e) != 2 {
		return malformed("encapContentInfo without eContent")
	}
	if err := unmarshalExact(e[0].Raw, &s.ContentType, "eContentType"); err != nil {
		return err
	}
	if e[1].Tag != 0xA0 {
		return malformed("eContent tag %s", e[1].Tag)
	}
	oct, err := tlv.Unwrap(e[1].Value, 0x04)
	if err != nil {
		return malformed("eContent: %v", err)
	}
	s.Content = oct
	return nil
}

func parseSignerInfo(v []byte) (SignerInfo, error) {
	var si SignerInfo
	e, err := elems(v)
	if err != nil {
		return si, malformed("%v", err)
	}
	i := 0
	ver, err := expect(e, i, 0x02, "SignerInfo version")
	if err != nil {
		return si, err
	}
	if err := unmarshalExact(ver.Raw, &si.Version, "SignerInfo version"); err != nil {
		return si, err
	}
	i++
	if i >= len(e) {
		return si, malformed("SignerInfo sid missing")
	}
	switch e[i].Tag {
	case 0x30: // IssuerAndSerialNumber
		ias, err := elems(e[i].Value)
		if err != nil || len(ias) != 2 || ias[0].Tag != 0x30 || ias[1].Tag != 0x02 {
			return si, malformed("SignerInfo issuerAndSerialNumber")
		}
		si.IssuerRaw = ias[0].Raw
		si.SerialNumber = new(big.Int)
		if err := unmarshalExact(ias[1].Raw, &si.SerialNumber, "serial number"); err != nil {
			return si, err
		}
	case 0x80: // [0] SubjectKeyIdentifier
		si.SubjectKeyID = e[i].Value
	default:
		return si, malformed("SignerInfo sid tag %s", e[i].Tag)
	}
	i++
	da, err := expect(e, i, 0x30, "SignerInfo digestAlgorithm")
	if err != nil {
		return si, err
	}
	if err := unmarshalExact(da.Raw, &si.DigestAlgorithm, "digestAlgorithm"); err != nil {
		return si, err
	}
	i++
	if i < len(e) && e[i].Tag == 0xA0 {
		// RFC 5652 §5.4: the signature covers the DER of the attributes
		// with the SET OF tag, not the [0] IMPLICIT tag.
		si.SignedAttrsDER = append([]byte{0x31}, e[i].Raw[1:]...)
		attrs, err := elems(e[i].Value)
		if err != nil {
			return si, malformed("signedAttrs: %v", err)
		}
		for _, a := range attrs {
			at, err := parseAttribute(a)
			if err != nil {
				return si, err
			}
			si.SignedAttrs = append(si.SignedAttrs, at)
		}
		i++
	}
	sa, err := expect(e, i, 0x30, "signatureAlgorithm")
	if err != nil {
		return si, err
	}
	if err := unmarshalExact(sa.Raw, &si.SignatureAlgorithm, "signatureAlgorithm"); err != nil {
		return si, err
	}
	i++
	sig, err := expect(e, i, 0x04, "signature")
	if err != nil {
		return si, err
	}
	si.Signature = sig.Value
	i++
	if i < len(e) && e[i].Tag == 0xA1 {
		i++ // unsigned attributes
	}
	if i != len(e) {
		return si, malformed("SignerInfo: unexpected trailing element %s", e[i].Tag)
	}
	return si, nil
}

func parseAttribute(a elem) (Attribute, error) {
	var at Attribute
	if a.Tag != 0x30 {
		return at, malformed("attribute tag %s", a.Tag)
	}
	p, err := elems(a.Value)
	if err != nil || len(p) != 2 || p[1].Tag != 0x31 {
		return at, malformed("attribute structure")
	}
	if err := unmarshalExact(p[0].Raw, &at.Type, "attribute type"); err != nil {
		return at, err
	}
	vals, err := elems(p[1].Value)
	if err != nil || len(vals) == 0 {
		return at, malformed("attribute %v values", at.Type)
	}
	for _, v := range vals {
		at.Values = append(at.Values, v.Raw)
	}
	return at, nil
}

// PACEInfo is the SecurityInfo announcing PACE support (9303-11 §9.2.1).
type PACEInfo struct {
	Protocol       asn1.ObjectIdentifier
	Version        int // 2
	ParameterID    int // standardized domain parameters (9303-11 §9.5.1)
	HasParameterID bool
}

// EncodeSecurityInfos builds EF.CardAccess content: SecurityInfos ::= SET
// OF SecurityInfo (9303-11 §9.2), here PACEInfos only. The SET OF is
// sorted as DER requires.
func EncodeSecurityInfos(infos []PACEInfo) ([]byte, error) {
	if len(infos) == 0 {
		return nil, malformed("no SecurityInfo")
	}
	var encs [][]byte
	for _, p := range infos {
		oid, err := asn1.Marshal(p.Protocol)
		if err != nil {
			return nil, fmt.Errorf("PACEInfo protocol: %w", err)
		}
		ver, _ := asn1.Marshal(p.Version)
		parts := [][]byte{oid, ver}
		if p.HasParameterID {
			pid, _ := asn1.Marshal(p.ParameterID)
			parts = append(parts, pid)
		}
		encs = append(encs, tlv.Encode(0x30, tlv.Concat(parts...)))
	}
	sort.Slice(encs, func(i, j int) bool { return string(encs[i]) < string(encs[j]) })
	return tlv.Encode(0x31, tlv.Concat(encs...)), nil
}
