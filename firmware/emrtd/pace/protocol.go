// Package pace implements PACE, ICAO Doc 9303-11 §4.4, with the Generic
// Mapping over ECDH (§4.4.3.3.1): EF.CardAccess / PACEInfo parsing
// (§9.2.1), the standardized domain parameters (§9.5.1), the terminal side
// (MSE:Set AT and four General Authenticate steps, §4.4.4) and the chip
// side for the virtual card, both ending in a secure messaging session
// (package sm) keyed by KDF(K, 1) and KDF(K, 2) with SSC 0.
//
// The design leaves room for what a later issue adds: domain parameters
// are looked up by their standardized id behind a small group interface
// (DH groups and more curves plug in there), protocols by OID (IM is
// recognised but not supported; CAM, §4.4.3.3.3, is in cam.go), and all four ciphers of §9.2.1 (3DES,
// AES-128/192/256) go through the same code.
package pace

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"kiosk/firmware/emrtd/smcrypto"
)

// PACE protocol OIDs (9303-11 §9.2.1; id-PACE = bsi-de 2 2 4).
const (
	OIDPACE = "0.4.0.127.0.7.2.2.4"

	OIDDHGM3DES         = "0.4.0.127.0.7.2.2.4.1.1"
	OIDDHGMAES128       = "0.4.0.127.0.7.2.2.4.1.2"
	OIDDHGMAES192       = "0.4.0.127.0.7.2.2.4.1.3"
	OIDDHGMAES256       = "0.4.0.127.0.7.2.2.4.1.4"
	OIDECDHGM3DES       = "0.4.0.127.0.7.2.2.4.2.1"
	OIDECDHGMAES128     = "0.4.0.127.0.7.2.2.4.2.2"
	OIDECDHGMAES192     = "0.4.0.127.0.7.2.2.4.2.3"
	OIDECDHGMAES256     = "0.4.0.127.0.7.2.2.4.2.4"
	OIDDHIM3DES         = "0.4.0.127.0.7.2.2.4.3.1"
	OIDECDHIM3DES       = "0.4.0.127.0.7.2.2.4.4.1"
	OIDECDHCAMAES128    = "0.4.0.127.0.7.2.2.4.6.2"
	paceProtocolArcsLen = 11
)

// Mapping is the nonce mapping of a PACE protocol (9303-11 §4.4.3.3).
type Mapping int

// Mappings.
const (
	GenericMapping Mapping = iota + 1
	IntegratedMapping
	ChipAuthenticationMapping
)

func (m Mapping) String() string {
	switch m {
	case GenericMapping:
		return "GM"
	case IntegratedMapping:
		return "IM"
	case ChipAuthenticationMapping:
		return "CAM"
	}
	return fmt.Sprintf("Mapping(%d)", int(m))
}

// KeyAgreement is DH or ECDH.
type KeyAgreement int

// Key agreements.
const (
	DH KeyAgreement = iota + 1
	ECDH
)

func (k KeyAgreement) String() string {
	switch k {
	case DH:
		return "DH"
	case ECDH:
		return "ECDH"
	}
	return fmt.Sprintf("KeyAgreement(%d)", int(k))
}

// Protocol is one PACE protocol OID decoded.
type Protocol struct {
	OID          string // dotted
	KeyAgreement KeyAgreement
	Mapping      Mapping
	Cipher       smcrypto.Cipher
}

// ErrUnknownProtocol: not a PACE protocol OID.
var ErrUnknownProtocol = errors.New("pace: unknown protocol OID")

// ProtocolByOID decodes id-PACE-{DH,ECDH}-{GM,IM}-{3DES,AES-CBC-CMAC-128,
// -192,-256} and id-PACE-ECDH-CAM-AES-* (9303-11 §9.2.1).
func ProtocolByOID(oid string) (Protocol, error) {
	arcs, err := parseOID(oid)
	if err != nil || len(arcs) != paceProtocolArcsLen || !hasPACEPrefix(arcs) {
		return Protocol{}, fmt.Errorf("%w: %s", ErrUnknownProtocol, oid)
	}
	p := Protocol{OID: oid}
	switch arcs[9] {
	case 1:
		p.KeyAgreement, p.Mapping = DH, GenericMapping
	case 2:
		p.KeyAgreement, p.Mapping = ECDH, GenericMapping
	case 3:
		p.KeyAgreement, p.Mapping = DH, IntegratedMapping
	case 4:
		p.KeyAgreement, p.Mapping = ECDH, IntegratedMapping
	case 6:
		p.KeyAgreement, p.Mapping = ECDH, ChipAuthenticationMapping
	default:
		return Protocol{}, fmt.Errorf("%w: %s", ErrUnknownProtocol, oid)
	}
	c, ok := smcrypto.CipherByOIDArc(arcs[10])
	if !ok {
		return Protocol{}, fmt.Errorf("%w: %s", ErrUnknownProtocol, oid)
	}
	p.Cipher = c
	if p.Mapping == ChipAuthenticationMapping && p.Cipher == smcrypto.TDES {
		return Protocol{}, fmt.Errorf("%w: %s (CAM has no 3DES variant)", ErrUnknownProtocol, oid)
	}
	return p, nil
}

// Supported reports whether this package can run the protocol: DH or
// ECDH with the Generic Mapping, any cipher; ECDH with the Chip
// Authentication Mapping (AES only, as 9303-11 §9.2.1 defines it).
func (p Protocol) Supported() bool {
	switch p.Mapping {
	case GenericMapping:
		return (p.KeyAgreement == ECDH || p.KeyAgreement == DH) && p.Cipher.Valid()
	case ChipAuthenticationMapping:
		return p.KeyAgreement == ECDH && p.Cipher.Valid() && p.Cipher != smcrypto.TDES
	}
	return false
}

func (p Protocol) String() string {
	return fmt.Sprintf("id-PACE-%s-%s-%s", p.KeyAgreement, p.Mapping, p.Cipher.OIDName())
}

// oidValue is the DER content octets of the protocol OID (the value of
// DO'80' in MSE:Set AT and of DO'06' in the token input).
func (p Protocol) oidValue() ([]byte, error) {
	arcs, err := parseOID(p.OID)
	if err != nil {
		return nil, err
	}
	der, err := asn1.Marshal(arcs)
	if err != nil {
		return nil, err
	}
	return der[2:], nil // OIDs here are shorter than 128 bytes: 06 LL
}

func hasPACEPrefix(arcs asn1.ObjectIdentifier) bool {
	prefix, _ := parseOID(OIDPACE)
	return len(arcs) > len(prefix) && asn1.ObjectIdentifier(arcs[:len(prefix)]).Equal(prefix)
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("pace: bad OID %q", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("pace: bad OID %q", s)
		}
		oid[i] = n
	}
	return oid, nil
}
