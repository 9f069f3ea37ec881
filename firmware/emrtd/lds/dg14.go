package lds

import (
	"bytes"
	"encoding/asn1"
	"fmt"
	"sort"

	"kiosk/firmware/emrtd/tlv"
)

// Object identifiers of the SecurityInfos in DG14 (9303-11 §9.2.5–§9.2.7;
// id-CA and id-PK under bsi-de protocols smartcard 2, BSI TR-03110-3 A.1.1).
var (
	OIDCA    = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 2, 2, 3}    // id-CA; .1 DH, .2 ECDH; then .1 3DES, .2-.4 AES-128/192/256
	OIDPKDH  = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 2, 2, 1, 1} // id-PK-DH
	OIDPKECD = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 2, 2, 1, 2} // id-PK-ECDH
	OIDAA    = asn1.ObjectIdentifier{2, 23, 136, 1, 1, 5}            // id-icao-mrtd-security-aaProtocolObject
)

// ChipAuthenticationInfo (9303-11 §9.2.5):
//
//	ChipAuthenticationInfo ::= SEQUENCE {
//	  protocol OBJECT IDENTIFIER (id-CA-DH-3DES-CBC-CBC | id-CA-ECDH-… ),
//	  version  INTEGER, -- MUST be 1 (or 2)
//	  keyId    INTEGER OPTIONAL }
type ChipAuthenticationInfo struct {
	Protocol asn1.ObjectIdentifier
	Version  int
	KeyID    int
	HasKeyID bool
}

// ChipAuthenticationPublicKeyInfo (9303-11 §9.2.6):
//
//	ChipAuthenticationPublicKeyInfo ::= SEQUENCE {
//	  protocol                     OBJECT IDENTIFIER (id-PK-DH | id-PK-ECDH),
//	  chipAuthenticationPublicKey  SubjectPublicKeyInfo,
//	  keyId                        INTEGER OPTIONAL }
//
// PublicKey is the DER SubjectPublicKeyInfo (package pubkey parses it).
type ChipAuthenticationPublicKeyInfo struct {
	Protocol  asn1.ObjectIdentifier
	PublicKey []byte
	KeyID     int
	HasKeyID  bool
}

// ActiveAuthenticationInfo (9303-11 §9.2.7), present in DG14 when Active
// Authentication uses ECDSA:
//
//	ActiveAuthenticationInfo ::= SEQUENCE {
//	  protocol           id-icao-mrtd-security-aaProtocolObject,
//	  version            INTEGER, -- MUST be 1
//	  signatureAlgorithm OBJECT IDENTIFIER (ecdsa-with-SHA*) }
type ActiveAuthenticationInfo struct {
	Version            int
	SignatureAlgorithm asn1.ObjectIdentifier
}

// OtherSecurityInfo is a SecurityInfo DG14 parsing does not interpret
// (PACEInfo, TerminalAuthenticationInfo, …), kept as DER.
type OtherSecurityInfo struct {
	Protocol asn1.ObjectIdentifier
	Raw      []byte
}

// DG14 is the parsed data group 14: SecurityInfos (9303-11 §9.2) in a
// tag-'6E' wrapper (9303-10 §4.7.14).
type DG14 struct {
	CA     []ChipAuthenticationInfo
	CAKeys []ChipAuthenticationPublicKeyInfo
	AA     []ActiveAuthenticationInfo
	Other  []OtherSecurityInfo
	// Raw holds every SecurityInfo as the DER the chip sent, in order
	// (ParseDG14 only): 9303-11 requires DG14 to hold the SecurityInfos
	// of EF.CardAccess, and the terminal compares them byte for byte.
	Raw [][]byte
}

// maxSecurityInfos bounds the work a hostile DG14 can cause.
const maxSecurityInfos = 64

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) > len(prefix) && oid[:len(prefix)].Equal(prefix)
}

// IsCAProtocol reports whether oid is an id-CA-{DH,ECDH}-{3DES,AES} OID.
func IsCAProtocol(oid asn1.ObjectIdentifier) bool {
	return len(oid) == len(OIDCA)+2 && hasPrefix(oid, OIDCA)
}

// ParseDG14 parses DG14. Every SecurityInfo must be well-formed; unknown
// ones are kept in Other.
func ParseDG14(b []byte) (*DG14, error) {
	v, err := tlv.Unwrap(b, TagDG14)
	if err != nil {
		return nil, fmt.Errorf("%w: DG14: %w", ErrMalformed, err)
	}
	return parseSecurityInfos(v, "DG14")
}

// parseSecurityInfos parses a DER SecurityInfos (9303-11 §9.2: SET OF
// SecurityInfo), the content of DG14 and of EF.CardSecurity; what names
// the file in errors.
func parseSecurityInfos(v []byte, what string) (*DG14, error) {
	var set asn1.RawValue
	rest, err := asn1.Unmarshal(v, &set)
	if err != nil {
		return nil, malformed("%s SecurityInfos: %v", what, err)
	}
	if len(rest) != 0 || set.Class != asn1.ClassUniversal || set.Tag != asn1.TagSet || !set.IsCompound {
		return nil, malformed("%s is not one SET OF SecurityInfo", what)
	}
	d := &DG14{}
	data := set.Bytes
	for n := 0; len(data) > 0; n++ {
		if n == maxSecurityInfos {
			return nil, malformed("%s holds more than %d SecurityInfos", what, maxSecurityInfos)
		}
		var seq asn1.RawValue
		if data, err = asn1.Unmarshal(data, &seq); err != nil {
			return nil, malformed("%s SecurityInfo: %v", what, err)
		}
		if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, malformed("%s SecurityInfo is not a SEQUENCE", what)
		}
		d.Raw = append(d.Raw, append([]byte(nil), seq.FullBytes...))
		var oid asn1.ObjectIdentifier
		body, err := asn1.Unmarshal(seq.Bytes, &oid)
		if err != nil {
			return nil, malformed("%s SecurityInfo protocol: %v", what, err)
		}
		if len(body) == 0 {
			return nil, malformed("%s SecurityInfo %s without requiredData", what, oid)
		}
		switch {
		case IsCAProtocol(oid):
			ci := ChipAuthenticationInfo{Protocol: oid}
			if ci.KeyID, ci.HasKeyID, err = versionAndKeyID(body, &ci.Version); err != nil {
				return nil, fmt.Errorf("ChipAuthenticationInfo: %w", err)
			}
			d.CA = append(d.CA, ci)
		case oid.Equal(OIDPKDH) || oid.Equal(OIDPKECD):
			var spki asn1.RawValue
			rest, err := asn1.Unmarshal(body, &spki)
			if err != nil || spki.Tag != asn1.TagSequence || !spki.IsCompound {
				return nil, malformed("ChipAuthenticationPublicKeyInfo: no SubjectPublicKeyInfo")
			}
			pk := ChipAuthenticationPublicKeyInfo{Protocol: oid, PublicKey: append([]byte(nil), spki.FullBytes...)}
			if len(rest) > 0 {
				if rest, err = asn1.Unmarshal(rest, &pk.KeyID); err != nil {
					return nil, malformed("ChipAuthenticationPublicKeyInfo keyId: %v", err)
				}
				pk.HasKeyID = true
			}
			if len(rest) != 0 {
				return nil, malformed("ChipAuthenticationPublicKeyInfo: %d trailing bytes", len(rest))
			}
			d.CAKeys = append(d.CAKeys, pk)
		case oid.Equal(OIDAA):
			var ai ActiveAuthenticationInfo
			rest, err := asn1.Unmarshal(body, &ai.Version)
			if err == nil {
				rest, err = asn1.Unmarshal(rest, &ai.SignatureAlgorithm)
			}
			if err != nil {
				return nil, malformed("ActiveAuthenticationInfo: %v", err)
			}
			if len(rest) != 0 {
				return nil, malformed("ActiveAuthenticationInfo: %d trailing bytes", len(rest))
			}
			d.AA = append(d.AA, ai)
		default:
			d.Other = append(d.Other, OtherSecurityInfo{Protocol: oid, Raw: append([]byte(nil), seq.FullBytes...)})
		}
	}
	return d, nil
}

// SecurityInfoElements splits a DER SecurityInfos (SET OF SecurityInfo,
// 9303-11 §9.2: EF.CardAccess, or DG14's content) into its elements, each
// a whole SEQUENCE as encoded. Only the outer structure is checked.
func SecurityInfoElements(set []byte) ([][]byte, error) {
	var s asn1.RawValue
	rest, err := asn1.Unmarshal(set, &s)
	if err != nil {
		return nil, malformed("SecurityInfos: %v", err)
	}
	if len(rest) != 0 || s.Class != asn1.ClassUniversal || s.Tag != asn1.TagSet || !s.IsCompound {
		return nil, malformed("SecurityInfos is not one SET")
	}
	var out [][]byte
	for data := s.Bytes; len(data) > 0; {
		if len(out) == maxSecurityInfos {
			return nil, malformed("more than %d SecurityInfos", maxSecurityInfos)
		}
		var seq asn1.RawValue
		if data, err = asn1.Unmarshal(data, &seq); err != nil {
			return nil, malformed("SecurityInfo: %v", err)
		}
		if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, malformed("SecurityInfo is not a SEQUENCE")
		}
		out = append(out, append([]byte(nil), seq.FullBytes...))
	}
	return out, nil
}

func versionAndKeyID(body []byte, version *int) (keyID int, has bool, err error) {
	rest, err := asn1.Unmarshal(body, version)
	if err != nil {
		return 0, false, malformed("version: %v", err)
	}
	if len(rest) > 0 {
		if rest, err = asn1.Unmarshal(rest, &keyID); err != nil {
			return 0, false, malformed("keyId: %v", err)
		}
		has = true
	}
	if len(rest) != 0 {
		return 0, false, malformed("%d trailing bytes", len(rest))
	}
	return keyID, has, nil
}

// CAKey returns the ChipAuthenticationPublicKeyInfo that goes with a
// ChipAuthenticationInfo (9303-11 §9.2.5: matched by keyId when there
// are several keys; a DH protocol needs an id-PK-DH key, ECDH id-PK-ECDH).
func (d *DG14) CAKey(ci ChipAuthenticationInfo) (ChipAuthenticationPublicKeyInfo, bool) {
	want := OIDPKECD
	if ci.Protocol[len(OIDCA)] == 1 {
		want = OIDPKDH
	}
	var found []ChipAuthenticationPublicKeyInfo
	for _, k := range d.CAKeys {
		if !k.Protocol.Equal(want) {
			continue
		}
		if ci.HasKeyID && (!k.HasKeyID || k.KeyID != ci.KeyID) {
			continue
		}
		found = append(found, k)
	}
	if len(found) != 1 {
		return ChipAuthenticationPublicKeyInfo{}, false
	}
	return found[0], true
}

// EncodeDG14 builds DG14 (DER SET OF, sorted).
func EncodeDG14(d *DG14) ([]byte, error) {
	var elems [][]byte
	add := func(parts ...any) error {
		var content []byte
		for _, p := range parts {
			if raw, ok := p.([]byte); ok {
				content = append(content, raw...)
				continue
			}
			b, err := asn1.Marshal(p)
			if err != nil {
				return fmt.Errorf("encode DG14: %w", err)
			}
			content = append(content, b...)
		}
		elems = append(elems, tlv.Encode(0x30, content))
		return nil
	}
	for _, c := range d.CA {
		parts := []any{c.Protocol, c.Version}
		if c.HasKeyID {
			parts = append(parts, c.KeyID)
		}
		if err := add(parts...); err != nil {
			return nil, err
		}
	}
	for _, k := range d.CAKeys {
		parts := []any{k.Protocol, k.PublicKey}
		if k.HasKeyID {
			parts = append(parts, k.KeyID)
		}
		if err := add(parts...); err != nil {
			return nil, err
		}
	}
	for _, a := range d.AA {
		if err := add(OIDAA, a.Version, a.SignatureAlgorithm); err != nil {
			return nil, err
		}
	}
	for _, o := range d.Other {
		elems = append(elems, o.Raw)
	}
	if len(elems) == 0 {
		return nil, malformed("DG14 without SecurityInfos")
	}
	sort.Slice(elems, func(i, j int) bool { return bytes.Compare(elems[i], elems[j]) < 0 })
	return tlv.Encode(TagDG14, tlv.Encode(0x31, tlv.Concat(elems...))), nil
}

// ParseDG15 returns the Active Authentication public key of DG15, a DER
// SubjectPublicKeyInfo (9303-11 §6.1, 9303-10 §4.7.15) in a tag-'6F'
// wrapper. Only its outer structure is checked here.
func ParseDG15(b []byte) ([]byte, error) {
	v, err := tlv.Unwrap(b, TagDG15)
	if err != nil {
		return nil, fmt.Errorf("%w: DG15: %w", ErrMalformed, err)
	}
	var spki asn1.RawValue
	rest, err := asn1.Unmarshal(v, &spki)
	if err != nil {
		return nil, malformed("DG15 SubjectPublicKeyInfo: %v", err)
	}
	if len(rest) != 0 || spki.Class != asn1.ClassUniversal || spki.Tag != asn1.TagSequence || !spki.IsCompound {
		return nil, malformed("DG15 is not one SubjectPublicKeyInfo")
	}
	return append([]byte(nil), spki.FullBytes...), nil
}

// EncodeDG15 wraps a DER SubjectPublicKeyInfo as DG15.
func EncodeDG15(spki []byte) []byte { return tlv.Encode(TagDG15, spki) }
