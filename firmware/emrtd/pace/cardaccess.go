package pace

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"kiosk/firmware/emrtd/smcrypto"
)

// ErrMalformedCardAccess: EF.CardAccess is not a DER SecurityInfos.
var ErrMalformedCardAccess = errors.New("pace: malformed EF.CardAccess")

// SecurityInfo is one SecurityInfo this package does not interpret
// (ChipAuthenticationInfo, TerminalAuthenticationInfo,
// PACEDomainParameterInfo, …), kept for later protocols.
type SecurityInfo struct {
	Protocol string // dotted OID
	Raw      []byte // the DER SEQUENCE
}

// PACEInfo (9303-11 §9.2.1):
//
//	PACEInfo ::= SEQUENCE {
//	  protocol    OBJECT IDENTIFIER (id-PACE-…),
//	  version     INTEGER, -- SHOULD be 2
//	  parameterId INTEGER OPTIONAL }
type PACEInfo struct {
	Protocol       string // dotted OID
	Version        int
	ParameterID    int
	HasParameterID bool
}

// SecurityInfos is EF.CardAccess parsed (9303-11 §9.2: SET OF SecurityInfo).
type SecurityInfos struct {
	PACE  []PACEInfo
	Other []SecurityInfo
}

// ParseCardAccess parses EF.CardAccess (the whole file, a DER SET OF
// SecurityInfo). SecurityInfos it does not know are kept in Other;
// anything that is not well-formed DER of that shape is an error wrapping
// ErrMalformedCardAccess.
func ParseCardAccess(b []byte) (*SecurityInfos, error) {
	var set asn1.RawValue
	rest, err := asn1.Unmarshal(b, &set)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCardAccess, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the SET", ErrMalformedCardAccess, len(rest))
	}
	if set.Class != asn1.ClassUniversal || set.Tag != asn1.TagSet || !set.IsCompound {
		return nil, fmt.Errorf("%w: not a SET", ErrMalformedCardAccess)
	}
	out := &SecurityInfos{}
	data := set.Bytes
	for len(data) > 0 {
		var seq asn1.RawValue
		if data, err = asn1.Unmarshal(data, &seq); err != nil {
			return nil, fmt.Errorf("%w: SecurityInfo: %w", ErrMalformedCardAccess, err)
		}
		if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, fmt.Errorf("%w: SecurityInfo is not a SEQUENCE", ErrMalformedCardAccess)
		}
		var oid asn1.ObjectIdentifier
		body, err := asn1.Unmarshal(seq.Bytes, &oid)
		if err != nil {
			return nil, fmt.Errorf("%w: SecurityInfo protocol: %w", ErrMalformedCardAccess, err)
		}
		if len(body) == 0 {
			return nil, fmt.Errorf("%w: SecurityInfo %s without requiredData", ErrMalformedCardAccess, oid)
		}
		if len(oid) == paceProtocolArcsLen && hasPACEPrefix(oid) {
			pi, err := parsePACEInfo(oid.String(), body)
			if err != nil {
				return nil, err
			}
			out.PACE = append(out.PACE, pi)
			continue
		}
		out.Other = append(out.Other, SecurityInfo{Protocol: oid.String(), Raw: append([]byte(nil), seq.FullBytes...)})
	}
	return out, nil
}

func parsePACEInfo(oid string, body []byte) (PACEInfo, error) {
	pi := PACEInfo{Protocol: oid}
	rest, err := asn1.Unmarshal(body, &pi.Version)
	if err != nil {
		return PACEInfo{}, fmt.Errorf("%w: PACEInfo version: %w", ErrMalformedCardAccess, err)
	}
	if len(rest) > 0 {
		if rest, err = asn1.Unmarshal(rest, &pi.ParameterID); err != nil {
			return PACEInfo{}, fmt.Errorf("%w: PACEInfo parameterId: %w", ErrMalformedCardAccess, err)
		}
		pi.HasParameterID = true
	}
	if len(rest) != 0 {
		return PACEInfo{}, fmt.Errorf("%w: %d bytes after PACEInfo parameterId", ErrMalformedCardAccess, len(rest))
	}
	return pi, nil
}

// Resolve returns the protocol and domain parameters of a PACEInfo and
// whether this package supports them (ErrUnsupportedParameters if not):
// version 2, ECDH Generic Mapping, standardized parameters.
func (pi PACEInfo) Resolve() (Protocol, DomainParameters, error) {
	p, err := ProtocolByOID(pi.Protocol)
	if err != nil {
		return Protocol{}, DomainParameters{}, fmt.Errorf("%w: %w", ErrUnsupportedParameters, err)
	}
	if pi.Version != 2 {
		return p, DomainParameters{}, fmt.Errorf("%w: PACEInfo version %d", ErrUnsupportedParameters, pi.Version)
	}
	if !p.Supported() {
		return p, DomainParameters{}, fmt.Errorf("%w: %s", ErrUnsupportedParameters, p)
	}
	if !pi.HasParameterID {
		// Proprietary parameters come in a PACEDomainParameterInfo.
		return p, DomainParameters{}, fmt.Errorf("%w: no standardized parameterId", ErrUnsupportedParameters)
	}
	d, err := StandardizedDomainParameters(pi.ParameterID)
	if err != nil {
		return p, d, err
	}
	if d.KeyAgreement != p.KeyAgreement {
		return p, d, fmt.Errorf("%w: %s with %s parameters", ErrUnsupportedParameters, p, d.Name)
	}
	return p, d, nil
}

// Select picks the PACEInfo to use: the supported one with the strongest
// cipher (then the Chip Authentication Mapping, then the larger parameter id); ErrUnsupportedParameters if none
// is supported. several reports whether the chip offers more than one
// PACEInfo, in which case MSE:Set AT must name the parameters
// (Options.SendParameterID).
func (s *SecurityInfos) Select() (info PACEInfo, several bool, err error) {
	best := -1
	var bestCipher smcrypto.Cipher
	for i, pi := range s.PACE {
		p, _, err := pi.Resolve()
		if err != nil {
			continue
		}
		// Among equals, CAM: it proves the chip in the same run.
		cam := p.Mapping == ChipAuthenticationMapping
		bestCAM := best >= 0 && isCAM(s.PACE[best].Protocol)
		if best < 0 || p.Cipher > bestCipher || p.Cipher == bestCipher && (cam && !bestCAM || cam == bestCAM && pi.ParameterID > s.PACE[best].ParameterID) {
			best, bestCipher = i, p.Cipher
		}
	}
	if best < 0 {
		return PACEInfo{}, len(s.PACE) > 1, fmt.Errorf("%w: none of %d PACEInfos", ErrUnsupportedParameters, len(s.PACE))
	}
	return s.PACE[best], len(s.PACE) > 1, nil
}

// EncodeCardAccess builds EF.CardAccess from PACEInfos plus other
// SecurityInfos (their Raw DER), as DER (SET OF elements sorted).
func EncodeCardAccess(pace []PACEInfo, other []SecurityInfo) ([]byte, error) {
	var elems [][]byte
	for _, pi := range pace {
		oid, err := parseOID(pi.Protocol)
		if err != nil {
			return nil, err
		}
		fields := []any{oid, pi.Version}
		if pi.HasParameterID {
			fields = append(fields, pi.ParameterID)
		}
		var content []byte
		for _, f := range fields {
			b, err := asn1.Marshal(f)
			if err != nil {
				return nil, err
			}
			content = append(content, b...)
		}
		seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: content})
		if err != nil {
			return nil, err
		}
		elems = append(elems, seq)
	}
	for _, o := range other {
		elems = append(elems, o.Raw)
	}
	slices.SortFunc(elems, bytes.Compare) // X.690 §11.6
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: bytes.Join(elems, nil)})
}

func isCAM(oid string) bool {
	p, err := ProtocolByOID(oid)
	return err == nil && p.Mapping == ChipAuthenticationMapping
}
