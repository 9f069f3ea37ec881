package pace

//lint:file-ignore SA1019 crypto/ecdh has neither brainpool curves nor the point addition and arbitrary-base scalar multiplication the PACE Generic Mapping needs (G' = s·G + H); every point from a peer is checked with IsOnCurve before it reaches these methods, which would otherwise panic.

import (
	"crypto/elliptic"
	"fmt"
	"io"
	"math/big"

	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/tlv"
)

// ecGroup implements group over an elliptic.Curve (short Weierstrass,
// prime order, cofactor 1 for every §9.5.1 curve).
type ecGroup struct {
	curve   elliptic.Curve
	n       *big.Int
	byteLen int // of p
}

func newECGroup(c elliptic.Curve) *ecGroup {
	p := c.Params()
	return &ecGroup{curve: c, n: p.N, byteLen: (p.BitSize + 7) / 8}
}

func (g *ecGroup) encode(x, y *big.Int) []byte {
	out := make([]byte, 1+2*g.byteLen)
	out[0] = 0x04
	x.FillBytes(out[1 : 1+g.byteLen])
	y.FillBytes(out[1+g.byteLen:])
	return out
}

// decode parses an uncompressed point and rejects anything off the curve,
// including the point at infinity and coordinates ≥ p.
func (g *ecGroup) decode(b []byte) (x, y *big.Int, err error) {
	if len(b) != 1+2*g.byteLen || b[0] != 0x04 {
		return nil, nil, fmt.Errorf("%w: %d bytes, not an uncompressed point", ErrInvalidPublicKey, len(b))
	}
	x = new(big.Int).SetBytes(b[1 : 1+g.byteLen])
	y = new(big.Int).SetBytes(b[1+g.byteLen:])
	if !g.curve.IsOnCurve(x, y) {
		return nil, nil, fmt.Errorf("%w: point not on the curve", ErrInvalidPublicKey)
	}
	return x, y, nil
}

func (g *ecGroup) checkPublic(pub []byte) error {
	_, _, err := g.decode(pub)
	return err
}

func isInfinity(x, y *big.Int) bool { return x.Sign() == 0 && y.Sign() == 0 }

func (g *ecGroup) publicKey(priv, gen []byte) ([]byte, error) {
	var x, y *big.Int
	if gen == nil {
		x, y = g.curve.ScalarBaseMult(priv)
	} else {
		gx, gy, err := g.decode(gen)
		if err != nil {
			return nil, err
		}
		x, y = g.curve.ScalarMult(gx, gy, priv)
	}
	if isInfinity(x, y) {
		return nil, fmt.Errorf("pace: public key is the point at infinity")
	}
	return g.encode(x, y), nil
}

func (g *ecGroup) generateKey(rnd io.Reader, gen []byte) (priv, pub []byte, err error) {
	if priv, err = pubkey.Scalar(rnd, g.n); err != nil {
		return nil, nil, err
	}
	if pub, err = g.publicKey(priv, gen); err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}

func (g *ecGroup) mapGenerator(s, priv, peer []byte) ([]byte, error) {
	px, py, err := g.decode(peer)
	if err != nil {
		return nil, err
	}
	hx, hy := g.curve.ScalarMult(px, py, priv)
	if isInfinity(hx, hy) {
		return nil, fmt.Errorf("%w: mapping point H is the point at infinity", ErrInvalidPublicKey)
	}
	sx, sy := g.curve.ScalarBaseMult(s)
	var x, y *big.Int
	if sx.Cmp(hx) == 0 && sy.Cmp(hy) == 0 {
		x, y = g.curve.Double(hx, hy) // Add of equal points is not defined for every implementation
	} else {
		x, y = g.curve.Add(sx, sy, hx, hy)
	}
	if isInfinity(x, y) {
		return nil, fmt.Errorf("%w: mapped generator is the point at infinity", ErrInvalidPublicKey)
	}
	return g.encode(x, y), nil
}

func (g *ecGroup) sharedSecret(priv, peer []byte) ([]byte, error) {
	px, py, err := g.decode(peer)
	if err != nil {
		return nil, err
	}
	x, y := g.curve.ScalarMult(px, py, priv)
	if isInfinity(x, y) {
		return nil, fmt.Errorf("%w: shared point is the point at infinity", ErrInvalidPublicKey)
	}
	return x.FillBytes(make([]byte, g.byteLen)), nil
}

func (g *ecGroup) publicKeyDO(pub []byte) []byte { return tlv.Encode(0x86, pub) }
