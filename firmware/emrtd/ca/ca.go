// Package ca implements Chip Authentication, ICAO Doc 9303-11 §6.2
// (version 1, BSI TR-03110-1 §3.4 "CA version 2" in the same message
// flow): the terminal sends an ephemeral public key on the domain
// parameters of the chip's static key from DG14, both sides agree on a
// shared secret K (ECDH: the x-coordinate of the shared point; DH:
// g^(xy) mod p, §9.6), derive new session keys KSenc = KDF(K, 1) and
// KSmac = KDF(K, 2) (§9.7.1) and restart secure messaging with SSC 0
// (§9.8.2). Only a chip holding the private key matching DG14 computes the
// same K, so Chip Authentication succeeds only when the next protected
// response verifies under the new keys (§6.2.4): Authenticate reads a file
// to check it.
//
// Key exchange (§6.2.4.1/§6.2.4.2):
//   - 3DES protocols: MSE:Set KAT (00 22 41 A6) with DO'91' (the
//     ephemeral public key) and DO'84' (keyId, when DG14 has several keys).
//   - AES protocols: MSE:Set AT (00 22 41 A4) with DO'80' (the protocol
//     OID) and DO'84' (keyId), then General Authenticate (00 86 00 00)
//     with 7C{80 ephemeral public key}; the chip answers an empty '7C'.
//
// Both commands travel under the secure messaging of the access control
// (PACE or BAC); their responses are still protected with the old keys.
//
// The package holds both sides: Authenticate for the terminal and Card
// for the virtual chip.
package ca

//lint:file-ignore SA1019 brainpool curves exist only as elliptic.Curve; every peer point is validated with IsOnCurve (pubkey.DecodePoint) before any scalar multiplication.

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"kiosk/firmware/emrtd/pace"
	"math/big"

	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/smcrypto"
)

// Errors. ErrFailed is the clone verdict: the chip did not prove it holds
// the DG14 private key.
var (
	ErrUnsupported = errors.New("ca: unsupported chip authentication parameters")
	ErrFailed      = errors.New("ca: chip authentication failed")
	ErrNoSession   = errors.New("ca: chip authentication needs a secure messaging session")
)

// KeyAgreement is DH or ECDH; the arcs after id-CA and id-PACE agree
// (9303-11 §9.2.5, §9.2.1), so the type is PACE's.
type KeyAgreement = pace.KeyAgreement

// Key agreements.
const (
	DH   = pace.DH
	ECDH = pace.ECDH
)

// Protocol is a decoded id-CA-… OID (9303-11 §9.2.5).
type Protocol struct {
	OID          asn1.ObjectIdentifier
	KeyAgreement KeyAgreement
	Cipher       smcrypto.Cipher
}

// String is the protocol name, e.g. id-CA-ECDH-AES-CBC-CMAC-128.
func (p Protocol) String() string {
	return fmt.Sprintf("id-CA-%s-%s", p.KeyAgreement, p.Cipher.OIDName())
}

// ProtocolOID returns the id-CA OID for a key agreement and cipher.
func ProtocolOID(ka KeyAgreement, c smcrypto.Cipher) asn1.ObjectIdentifier {
	return append(append(asn1.ObjectIdentifier{}, lds.OIDCA...), int(ka), c.OIDArc())
}

// ProtocolByOID decodes id-CA-{DH,ECDH}-{3DES-CBC-CBC,AES-CBC-CMAC-128,
// -192,-256}.
func ProtocolByOID(oid asn1.ObjectIdentifier) (Protocol, error) {
	if !lds.IsCAProtocol(oid) {
		return Protocol{}, fmt.Errorf("%w: %s is not a chip authentication protocol", ErrUnsupported, oid)
	}
	p := Protocol{OID: oid}
	switch oid[len(lds.OIDCA)] {
	case 1:
		p.KeyAgreement = DH
	case 2:
		p.KeyAgreement = ECDH
	default:
		return Protocol{}, fmt.Errorf("%w: %s", ErrUnsupported, oid)
	}
	c, ok := smcrypto.CipherByOIDArc(oid[len(lds.OIDCA)+1])
	if !ok {
		return Protocol{}, fmt.Errorf("%w: %s", ErrUnsupported, oid)
	}
	p.Cipher = c
	return p, nil
}

// Infos returns the ChipAuthenticationInfos of DG14. A DG14 with a
// ChipAuthenticationPublicKeyInfo but no ChipAuthenticationInfo (early
// documents: the info was optional for CA version 1 with 3DES) implies
// id-CA-{DH,ECDH}-3DES-CBC-CBC version 1 for each key, with its keyId
// (9303-11 §9.2.5; what JMRTD and gmrtd assume). Implied reports whether
// they were.
func Infos(d *lds.DG14) (infos []lds.ChipAuthenticationInfo, implied bool) {
	if len(d.CA) > 0 {
		return d.CA, false
	}
	for _, k := range d.CAKeys {
		ka := ECDH
		if k.Protocol.Equal(lds.OIDPKDH) {
			ka = DH
		}
		infos = append(infos, lds.ChipAuthenticationInfo{Protocol: ProtocolOID(ka, smcrypto.TDES), Version: 1, KeyID: k.KeyID, HasKeyID: k.HasKeyID})
	}
	return infos, len(infos) > 0
}

// oidValue is the content octets of the OID (DO'80' of MSE:Set AT).
func oidValue(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(oid)
	if err != nil || len(der) < 2 || der[1] > 0x7F {
		return nil
	}
	return der[2:]
}

// keyRef encodes a keyId as DO'84' content: the minimal big-endian bytes.
func keyRef(id int) []byte {
	b := big.NewInt(int64(id)).Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	return b
}

// sessionFor derives the secure messaging session from K (9303-11 §9.7.1
// and §9.8.2: SSC starts at zero for both ciphers after CA).
func sessionFor(c smcrypto.Cipher, k []byte) (*sm.Session, error) {
	enc, mac, err := smcrypto.SessionKeys(c, k)
	if err != nil {
		return nil, err
	}
	defer clear(enc)
	defer clear(mac)
	return sm.New(c, enc, mac, nil)
}

// ecdhSecret is the x-coordinate of priv·peer, as many bytes as p, after
// validating peer (9303-11 §9.6 / TR-03111 §4.3.1).
func ecdhSecret(c pubkey.Curve, priv, peer []byte) ([]byte, error) {
	x, y, err := pubkey.DecodePoint(c, peer)
	if err != nil {
		return nil, err
	}
	sx, sy := c.ScalarMult(x, y, priv)
	if sx.Sign() == 0 && sy.Sign() == 0 {
		return nil, fmt.Errorf("%w: shared point is the point at infinity", pubkey.ErrMalformed)
	}
	return sx.FillBytes(make([]byte, c.ByteLen())), nil
}

// dhSecret is peer^x mod p, as many bytes as p (9303-11 §9.6 / PKCS #3),
// after validating peer.
func dhSecret(p pubkey.DHParams, x *big.Int, peer []byte) ([]byte, error) {
	if len(peer) != p.ByteLen() {
		return nil, fmt.Errorf("%w: DH public value of %d bytes, want %d", pubkey.ErrMalformed, len(peer), p.ByteLen())
	}
	y := new(big.Int).SetBytes(peer)
	if err := p.CheckPublic(y); err != nil {
		return nil, err
	}
	return new(big.Int).Exp(y, x, p.P).FillBytes(make([]byte, p.ByteLen())), nil
}
