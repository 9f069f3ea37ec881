package pace

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"

	"github.com/ebfe/brainpool"

	"kiosk/firmware/emrtd/tlv"
)

// ErrUnsupportedParameters: the chip's protocol or domain parameters are
// not supported (or the chip rejected ours).
var ErrUnsupportedParameters = errors.New("pace: unsupported parameters")

// DomainParameters is one entry of the standardized domain parameters
// table (9303-11 §9.5.1).
type DomainParameters struct {
	ID           int
	Name         string
	KeyAgreement KeyAgreement
	group        group // nil: known but not implemented
}

// Supported reports whether PACE can run on these parameters.
func (d DomainParameters) Supported() bool { return d.group != nil }

// StandardizedDomainParameters returns the parameters for a
// standardized domain parameter id (9303-11 §9.5.1, Table 6). Ids 0–2 are
// the RFC 5114 MODP groups (DH, dh.go), 8–18 the curves;
// NIST P-192 (id 8) has no implementation in Go's library and is listed as
// unsupported. Unknown ids and unsupported entries return
// ErrUnsupportedParameters (the entry is still returned when known).
func StandardizedDomainParameters(id int) (DomainParameters, error) {
	var d DomainParameters
	switch id {
	case 0:
		d = DomainParameters{ID: 0, Name: "1024-bit MODP Group with 160-bit Prime Order Subgroup", KeyAgreement: DH,
			group: newDHGroup(rfc5114P1024, rfc5114G1024, rfc5114Q160)}
	case 1:
		d = DomainParameters{ID: 1, Name: "2048-bit MODP Group with 224-bit Prime Order Subgroup", KeyAgreement: DH,
			group: newDHGroup(rfc5114P2048a, rfc5114G2048a, rfc5114Q224)}
	case 2:
		d = DomainParameters{ID: 2, Name: "2048-bit MODP Group with 256-bit Prime Order Subgroup", KeyAgreement: DH,
			group: newDHGroup(rfc5114P2048b, rfc5114G2048b, rfc5114Q256)}
	case 8:
		d = DomainParameters{ID: 8, Name: "NIST P-192 (secp192r1)", KeyAgreement: ECDH}
	case 9:
		d = ecParams(9, "BrainpoolP192r1", brainpool.P192r1())
	case 10:
		d = ecParams(10, "NIST P-224 (secp224r1)", elliptic.P224())
	case 11:
		d = ecParams(11, "BrainpoolP224r1", brainpool.P224r1())
	case 12:
		d = ecParams(12, "NIST P-256 (secp256r1)", elliptic.P256())
	case 13:
		d = ecParams(13, "BrainpoolP256r1", brainpool.P256r1())
	case 14:
		d = ecParams(14, "BrainpoolP320r1", brainpool.P320r1())
	case 15:
		d = ecParams(15, "NIST P-384 (secp384r1)", elliptic.P384())
	case 16:
		d = ecParams(16, "BrainpoolP384r1", brainpool.P384r1())
	case 17:
		d = ecParams(17, "BrainpoolP512r1", brainpool.P512r1())
	case 18:
		d = ecParams(18, "NIST P-521 (secp521r1)", elliptic.P521())
	default:
		return DomainParameters{ID: id}, fmt.Errorf("%w: domain parameter id %d", ErrUnsupportedParameters, id)
	}
	if !d.Supported() {
		return d, fmt.Errorf("%w: %s (id %d) not implemented", ErrUnsupportedParameters, d.Name, id)
	}
	return d, nil
}

func ecParams(id int, name string, c elliptic.Curve) DomainParameters {
	return DomainParameters{ID: id, Name: name, KeyAgreement: ECDH, group: newECGroup(c)}
}

// group is the arithmetic PACE GM needs from a domain parameter set.
// Public keys and generators travel encoded (for ECDH the uncompressed
// point 04 || X || Y, TR-03111 §3.2.1), so a DH group can implement the
// same interface with its own encoding.
type group interface {
	// generateKey returns a private key in [1, n-1] and its public key
	// priv·gen; gen nil means the standard generator.
	generateKey(rnd io.Reader, gen []byte) (priv, pub []byte, err error)
	// publicKey returns priv·gen (gen nil: standard generator).
	publicKey(priv, gen []byte) ([]byte, error)
	// mapGenerator is the Generic Mapping (9303-11 §4.4.3.3.1):
	// G' = s·G + H with H = priv·peer; peer is validated first.
	mapGenerator(s, priv, peer []byte) ([]byte, error)
	// sharedSecret is the key agreement of §4.4.3.4 after validating
	// peer: for ECDH the x-coordinate of priv·peer, as many bytes as p.
	sharedSecret(priv, peer []byte) ([]byte, error)
	// checkPublic validates a peer public key.
	checkPublic(pub []byte) error
	// publicKeyDO is the public key inside the public key data object
	// '7F49' used for the authentication token (9303-11 §4.4.3.5.1:
	// DO'86' point for ECDH, DO'84' for DH).
	publicKeyDO(pub []byte) []byte
}

// ErrInvalidPublicKey: a peer's public key is not a valid group element.
var ErrInvalidPublicKey = errors.New("pace: invalid public key")

func tokenInput(oid []byte, g group, pub []byte) []byte {
	return tlv.Encode(0x7F49, tlv.Concat(tlv.Encode(0x06, oid), g.publicKeyDO(pub)))
}
