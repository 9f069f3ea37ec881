package aa

import (
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"io"
	"math/big"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/pubkey"
)

// Card is the chip side of Active Authentication for the virtual card.
type Card struct {
	priv *pubkey.PrivateKey
	hash crypto.Hash
	rnd  io.Reader
}

// NewCard returns the chip side for an RSA or ECDSA private key. hash is
// the ECDSA hash (from DG14's ActiveAuthenticationInfo) or the hash the
// RSA 9796-2 trailer names (SHA-1 uses the implicit 'BC'); 0 means SHA-1
// for RSA and SHA-256 for ECDSA.
func NewCard(priv *pubkey.PrivateKey, hash crypto.Hash, rnd io.Reader) (*Card, error) {
	switch {
	case priv == nil:
		return nil, fmt.Errorf("%w: no key", ErrUnsupported)
	case priv.RSA != nil:
		if hash == 0 {
			hash = crypto.SHA1
		}
		if _, ok := hashID(hash); !ok {
			return nil, fmt.Errorf("%w: 9796-2 with %v", ErrUnsupported, hash)
		}
		if priv.RSA.N.BitLen()%8 != 0 {
			return nil, fmt.Errorf("%w: RSA modulus must be a whole number of bytes", ErrUnsupported)
		}
	case priv.EC != nil:
		if hash == 0 {
			hash = crypto.SHA256
		}
		if _, ok := SignatureOID(hash); !ok {
			return nil, fmt.Errorf("%w: ECDSA with %v", ErrUnsupported, hash)
		}
	default:
		return nil, fmt.Errorf("%w: key must be RSA or ECDSA", ErrUnsupported)
	}
	return &Card{priv: priv, hash: hash, rnd: rnd}, nil
}

// InternalAuthenticate answers INTERNAL AUTHENTICATE (00 88 00 00 with
// the 8-byte challenge, 9303-11 §6.1.2).
func (c *Card) InternalAuthenticate(cmd apdu.Command) apdu.Response {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return apdu.Status(apdu.SWIncorrectP1P2)
	}
	if len(cmd.Data) != ChallengeLen {
		return apdu.Status(apdu.SWWrongData)
	}
	sig, err := Sign(c.rnd, c.priv, c.hash, cmd.Data)
	if err != nil {
		return apdu.Status(apdu.SWUnknown)
	}
	if cmd.Ne > 0 && len(sig) > cmd.Ne {
		return apdu.Status(apdu.SWWrongLength)
	}
	return apdu.Response{Data: sig, SW: apdu.SWOK}
}

// Sign signs a challenge as a chip does: ECDSA in plain format, or RSA
// ISO/IEC 9796-2 scheme 1 with partial recovery (header '6A', a random M1
// filling the representative, H(M1 || challenge), trailer).
func Sign(rnd io.Reader, priv *pubkey.PrivateKey, hash crypto.Hash, challenge []byte) ([]byte, error) {
	switch {
	case priv.EC != nil:
		h := hash.New()
		h.Write(challenge)
		r, s, err := ecdsa.Sign(rnd, priv.EC.ECDSA(), h.Sum(nil))
		if err != nil {
			return nil, fmt.Errorf("aa: sign: %w", err)
		}
		n := (priv.EC.Public.Curve.Params().N.BitLen() + 7) / 8
		out := make([]byte, 2*n)
		r.FillBytes(out[:n])
		s.FillBytes(out[n:])
		return out, nil
	case priv.RSA != nil:
		k := priv.RSA.Size()
		trailer := []byte{0xBC}
		if hash != crypto.SHA1 {
			id, _ := hashID(hash)
			trailer = []byte{id, 0xCC}
		}
		m1Len := k - 1 - hash.Size() - len(trailer)
		if m1Len < 1 {
			return nil, fmt.Errorf("aa: modulus too small for %v", hash)
		}
		f := make([]byte, 0, k)
		f = append(f, 0x6A)
		m1 := make([]byte, m1Len)
		if _, err := io.ReadFull(rnd, m1); err != nil {
			return nil, fmt.Errorf("aa: random: %w", err)
		}
		h := hash.New()
		h.Write(m1)
		h.Write(challenge)
		f = append(append(append(f, m1...), h.Sum(nil)...), trailer...)
		// Raw RSA on the representative (F < n: its top bit is 0).
		s := new(big.Int).Exp(new(big.Int).SetBytes(f), priv.RSA.D, priv.RSA.N)
		return s.FillBytes(make([]byte, k)), nil
	}
	return nil, fmt.Errorf("%w: key must be RSA or ECDSA", ErrUnsupported)
}
