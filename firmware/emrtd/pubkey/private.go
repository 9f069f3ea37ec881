package pubkey

//lint:file-ignore SA1019 brainpool curves exist only as elliptic.Curve.

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
)

// PEM block types of PrivateKey.MarshalPEM.
const (
	PEMEC  = "EC PRIVATE KEY"  // RFC 5915 ECPrivateKey with a namedCurve
	PEMRSA = "RSA PRIVATE KEY" // PKCS #1
	PEMDH  = "DH PRIVATE KEY"  // SEQUENCE { p, g, q, x } (this package's own, for test cards)
)

// ECPrivateKey is a private scalar with its public key.
type ECPrivateKey struct {
	Public ECKey
	D      []byte // big-endian, the order's byte length
}

// DHPrivateKey is a DH private exponent with its public key.
type DHPrivateKey struct {
	Public DHKey
	X      *big.Int
}

// PrivateKey is a chip private key: exactly one field is set.
type PrivateKey struct {
	EC  *ECPrivateKey
	RSA *rsa.PrivateKey
	DH  *DHPrivateKey
}

// PublicKey returns the public half.
func (k *PrivateKey) PublicKey() *Key {
	switch {
	case k.EC != nil:
		pub := k.EC.Public
		return &Key{EC: &pub}
	case k.RSA != nil:
		return &Key{RSA: &k.RSA.PublicKey}
	case k.DH != nil:
		pub := k.DH.Public
		return &Key{DH: &pub}
	}
	return &Key{}
}

// ECDSA returns an EC key as an *ecdsa.PrivateKey (for signing).
func (k *ECPrivateKey) ECDSA() *ecdsa.PrivateKey {
	return &ecdsa.PrivateKey{PublicKey: *k.Public.ECDSA(), D: new(big.Int).SetBytes(k.D)}
}

// Scalar returns a uniformly random scalar in [1, n-1] (rejection
// sampling on masked random bytes: no bias).
func Scalar(rnd io.Reader, n *big.Int) ([]byte, error) {
	nLen := (n.BitLen() + 7) / 8
	excess := uint(nLen*8 - n.BitLen())
	buf := make([]byte, nLen)
	for range 128 {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, fmt.Errorf("pubkey: random: %w", err)
		}
		buf[0] &= 0xFF >> excess
		k := new(big.Int).SetBytes(buf)
		if k.Sign() > 0 && k.Cmp(n) < 0 {
			return append([]byte(nil), buf...), nil
		}
	}
	return nil, fmt.Errorf("pubkey: random source yields no valid scalar")
}

// GenerateEC makes a key pair on c.
func GenerateEC(rnd io.Reader, c Curve) (*ECPrivateKey, error) {
	d, err := Scalar(rnd, c.Params().N)
	if err != nil {
		return nil, err
	}
	x, y := c.ScalarBaseMult(d)
	return &ECPrivateKey{Public: ECKey{Curve: c, X: x, Y: y}, D: d}, nil
}

// GenerateDH makes a key pair in the group p: x in [1, q-1], y = g^x.
func GenerateDH(rnd io.Reader, p DHParams) (*DHPrivateKey, error) {
	xb, err := Scalar(rnd, p.Q)
	if err != nil {
		return nil, err
	}
	x := new(big.Int).SetBytes(xb)
	return &DHPrivateKey{Public: DHKey{Params: p, Y: new(big.Int).Exp(p.G, x, p.P)}, X: x}, nil
}

type ecPrivateKeyASN1 struct {
	Version    int
	PrivateKey []byte
	Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type dhPrivateKeyASN1 struct {
	P, G, Q, X *big.Int
}

// MarshalPEM encodes the key as one PEM block.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	var typ string
	var der []byte
	var err error
	switch {
	case k.EC != nil:
		pt := k.EC.Public.Bytes()
		typ = PEMEC
		der, err = asn1.Marshal(ecPrivateKeyASN1{Version: 1, PrivateKey: k.EC.D, Curve: k.EC.Public.Curve.OID,
			PublicKey: asn1.BitString{Bytes: pt, BitLength: 8 * len(pt)}})
	case k.RSA != nil:
		typ, der = PEMRSA, x509.MarshalPKCS1PrivateKey(k.RSA)
	case k.DH != nil:
		p := k.DH.Public.Params
		typ = PEMDH
		der, err = asn1.Marshal(dhPrivateKeyASN1{P: p.P, G: p.G, Q: p.Q, X: k.DH.X})
	default:
		return nil, fmt.Errorf("pubkey: empty private key")
	}
	if err != nil {
		return nil, fmt.Errorf("pubkey: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), nil
}

// ParsePrivateKeyPEM reads exactly one PEM block written by MarshalPEM and
// checks that its public key matches the private one.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrMalformed)
	}
	if len(trimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data after the PEM block", ErrMalformed)
	}
	switch blk.Type {
	case PEMEC:
		var e ecPrivateKeyASN1
		if err := unmarshalExact(blk.Bytes, &e, "ECPrivateKey"); err != nil {
			return nil, err
		}
		c, err := CurveByOID(e.Curve)
		if err != nil {
			return nil, err
		}
		d := new(big.Int).SetBytes(e.PrivateKey)
		if e.Version != 1 || d.Sign() <= 0 || d.Cmp(c.Params().N) >= 0 {
			return nil, fmt.Errorf("%w: EC private key out of range", ErrMalformed)
		}
		db := d.FillBytes(make([]byte, (c.Params().N.BitLen()+7)/8))
		x, y := c.ScalarBaseMult(db)
		if len(e.PublicKey.Bytes) > 0 {
			px, py, err := DecodePoint(c, e.PublicKey.Bytes)
			if err != nil || px.Cmp(x) != 0 || py.Cmp(y) != 0 {
				return nil, fmt.Errorf("%w: EC public key does not match the private key", ErrMalformed)
			}
		}
		return &PrivateKey{EC: &ECPrivateKey{Public: ECKey{Curve: c, X: x, Y: y}, D: db}}, nil
	case PEMRSA:
		k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if k.N.BitLen() > maxRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits", ErrUnsupported, k.N.BitLen())
		}
		return &PrivateKey{RSA: k}, nil
	case PEMDH:
		var d dhPrivateKeyASN1
		if err := unmarshalExact(blk.Bytes, &d, "DH private key"); err != nil {
			return nil, err
		}
		p := DHParams{P: d.P, G: d.G, Q: d.Q}
		if err := p.check(); err != nil {
			return nil, err
		}
		if d.X.Sign() <= 0 || d.X.Cmp(p.Q) >= 0 {
			return nil, fmt.Errorf("%w: DH private key out of range", ErrMalformed)
		}
		return &PrivateKey{DH: &DHPrivateKey{Public: DHKey{Params: p, Y: new(big.Int).Exp(p.G, d.X, p.P)}, X: d.X}}, nil
	}
	return nil, fmt.Errorf("%w: PEM type %q", ErrUnsupported, blk.Type)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
