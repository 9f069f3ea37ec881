// Package pubkey reads and writes the public and private keys of the
// eMRTD chip protocols: the SubjectPublicKeyInfo of a
// ChipAuthenticationPublicKeyInfo in DG14 (9303-11 §9.2.5, ECDH or DH keys,
// BSI TR-03110-3 §A.1.1 / TR-03111 §5.1) and of DG15 (9303-11 §6.1,
// RSA or ECDSA keys), plus the chip's private keys of a virtual card
// image.
//
// Elliptic-curve keys may name their curve (namedCurve) or carry explicit
// ECParameters, as most issued documents do; explicit parameters are
// accepted only when they are exactly one of the 9303-11 §9.5.1 curves.
// Go's crypto/x509 knows neither brainpool curves nor explicit
// parameters, hence this package. The same keys appear in CSCA, document
// signer and master-list signer certificates (9303-12 §7.1), which
// package cert reads with ParseSPKI.
package pubkey

//lint:file-ignore SA1019 crypto/ecdh and crypto/ecdsa have no brainpool curves; keys from a chip are checked with IsOnCurve before any arithmetic.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/ebfe/brainpool"
)

// ErrMalformed is wrapped by every parse error; ErrUnsupported when the
// key is well formed but of a kind this package does not implement.
var (
	ErrMalformed   = errors.New("pubkey: malformed key")
	ErrUnsupported = errors.New("pubkey: unsupported key")
)

// Object identifiers.
var (
	OIDECPublicKey  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}      // RFC 5480
	OIDRSA          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}  // RFC 8017
	OIDRSASSAPSS    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10} // RFC 4055 §1.2 (RSA-PSS-only keys)
	OIDDHPublicNum  = asn1.ObjectIdentifier{1, 2, 840, 10046, 2, 1}      // ANSI X9.42 dhpublicnumber
	oidPrimeField   = asn1.ObjectIdentifier{1, 2, 840, 10045, 1, 1}
	oidBrainpoolArc = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1}
)

// Curve is one elliptic curve of the 9303-11 §9.5.1 table.
type Curve struct {
	Name        string
	ParameterID int // standardized domain parameter id (9303-11 §9.5.1)
	OID         asn1.ObjectIdentifier
	elliptic.Curve
}

// ByteLen is the length of a field element (and of an x-coordinate
// shared secret) in bytes.
func (c Curve) ByteLen() int { return (c.Params().BitSize + 7) / 8 }

func bp(n int) asn1.ObjectIdentifier {
	return append(append(asn1.ObjectIdentifier{}, oidBrainpoolArc...), n)
}

// Curves returns the supported curves (NIST P-192 has no Go
// implementation and is left out).
func Curves() []Curve {
	return []Curve{
		{"BrainpoolP192r1", 9, bp(3), brainpool.P192r1()},
		{"NIST P-224", 10, asn1.ObjectIdentifier{1, 3, 132, 0, 33}, elliptic.P224()},
		{"BrainpoolP224r1", 11, bp(5), brainpool.P224r1()},
		{"NIST P-256", 12, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, elliptic.P256()},
		{"BrainpoolP256r1", 13, bp(7), brainpool.P256r1()},
		{"BrainpoolP320r1", 14, bp(9), brainpool.P320r1()},
		{"NIST P-384", 15, asn1.ObjectIdentifier{1, 3, 132, 0, 34}, elliptic.P384()},
		{"BrainpoolP384r1", 16, bp(11), brainpool.P384r1()},
		{"BrainpoolP512r1", 17, bp(13), brainpool.P512r1()},
		{"NIST P-521", 18, asn1.ObjectIdentifier{1, 3, 132, 0, 35}, elliptic.P521()},
	}
}

// CurveByParameterID returns the curve with a standardized domain
// parameter id.
func CurveByParameterID(id int) (Curve, error) {
	for _, c := range Curves() {
		if c.ParameterID == id {
			return c, nil
		}
	}
	return Curve{}, fmt.Errorf("%w: domain parameter id %d", ErrUnsupported, id)
}

// CurveByOID returns the curve with a namedCurve OID.
func CurveByOID(oid asn1.ObjectIdentifier) (Curve, error) {
	for _, c := range Curves() {
		if c.OID.Equal(oid) {
			return c, nil
		}
	}
	return Curve{}, fmt.Errorf("%w: curve %s", ErrUnsupported, oid)
}

// ECKey is an elliptic-curve public key.
type ECKey struct {
	Curve Curve
	X, Y  *big.Int
}

// Bytes is the uncompressed point 04 || X || Y (TR-03111 §3.2.1).
func (k *ECKey) Bytes() []byte { return EncodePoint(k.Curve, k.X, k.Y) }

// ECDSA returns the key as an *ecdsa.PublicKey.
func (k *ECKey) ECDSA() *ecdsa.PublicKey {
	return &ecdsa.PublicKey{Curve: k.Curve.Curve, X: k.X, Y: k.Y}
}

// DHParams are X9.42 domain parameters: prime p, generator g, subgroup
// order q.
type DHParams struct {
	P, G, Q *big.Int
}

// ByteLen is the length of p in bytes.
func (d DHParams) ByteLen() int { return (d.P.BitLen() + 7) / 8 }

// DHKey is a Diffie-Hellman public key y = g^x mod p.
type DHKey struct {
	Params DHParams
	Y      *big.Int
}

// Key is a parsed SubjectPublicKeyInfo: exactly one field is set.
type Key struct {
	EC  *ECKey
	RSA *rsa.PublicKey
	DH  *DHKey
}

// Describe names the key, e.g. "BrainpoolP256r1" or "RSA-2048".
func (k *Key) Describe() string {
	switch {
	case k.EC != nil:
		return k.EC.Curve.Name
	case k.RSA != nil:
		return fmt.Sprintf("RSA-%d", k.RSA.N.BitLen())
	case k.DH != nil:
		return fmt.Sprintf("DH-%d", k.DH.Params.P.BitLen())
	}
	return "none"
}

type spki struct {
	Algorithm struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	PublicKey asn1.BitString
}

type ecParameters struct {
	Version int
	FieldID struct {
		FieldType asn1.ObjectIdentifier
		Prime     *big.Int
	}
	Curve struct {
		A, B []byte
		Seed asn1.BitString `asn1:"optional"`
	}
	Base     []byte
	Order    *big.Int
	Cofactor *big.Int `asn1:"optional"`
}

type dhDomainParameters struct {
	P, G, Q *big.Int
	J       *big.Int      `asn1:"optional"`
	Valid   asn1.RawValue `asn1:"optional"`
}

// Limits keep a hostile key from costing seconds of big-number work.
const (
	maxRSABits = 8192
	maxDHBits  = 4096
)

func unmarshalExact(b []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(b, v)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, what, len(rest))
	}
	return nil
}

// ParseSPKI parses a DER SubjectPublicKeyInfo holding an EC (namedCurve
// or explicit parameters), RSA or X9.42 DH key. EC points are checked to
// lie on the curve, RSA moduli and DH primes are bounded in size.
func ParseSPKI(der []byte) (*Key, error) {
	var s spki
	if err := unmarshalExact(der, &s, "SubjectPublicKeyInfo"); err != nil {
		return nil, err
	}
	if s.PublicKey.BitLength%8 != 0 {
		return nil, fmt.Errorf("%w: public key bit string not octet aligned", ErrMalformed)
	}
	alg := s.Algorithm.Algorithm
	switch {
	case alg.Equal(OIDECPublicKey):
		c, err := parseECParams(s.Algorithm.Parameters)
		if err != nil {
			return nil, err
		}
		x, y, err := DecodePoint(c, s.PublicKey.Bytes)
		if err != nil {
			return nil, err
		}
		return &Key{EC: &ECKey{Curve: c, X: x, Y: y}}, nil
	case alg.Equal(OIDRSA), alg.Equal(OIDRSASSAPSS):
		// RFC 4055 §1.2: an id-RSASSA-PSS key is an RSAPublicKey whose
		// optional parameters restrict the PSS parameters; the
		// signature's own AlgorithmIdentifier states them in full, and
		// that is what verification uses. rsaEncryption's NULL
		// parameters may be absent (RFC 8017 §A.1 wants them; some
		// CSCAs leave them out).
		var k struct{ N, E *big.Int }
		if err := unmarshalExact(s.PublicKey.Bytes, &k, "RSAPublicKey"); err != nil {
			return nil, err
		}
		if k.N.Sign() <= 0 || k.N.BitLen() < 1024 || k.N.BitLen() > maxRSABits || k.N.Bit(0) == 0 {
			return nil, fmt.Errorf("%w: RSA modulus of %d bits", ErrUnsupported, k.N.BitLen())
		}
		if k.E.Sign() <= 0 || k.E.BitLen() > 31 || k.E.Bit(0) == 0 || k.E.Cmp(big.NewInt(3)) < 0 {
			return nil, fmt.Errorf("%w: RSA public exponent", ErrUnsupported)
		}
		return &Key{RSA: &rsa.PublicKey{N: k.N, E: int(k.E.Int64())}}, nil
	case alg.Equal(OIDDHPublicNum):
		var d dhDomainParameters
		if err := unmarshalExact(s.Algorithm.Parameters.FullBytes, &d, "DH DomainParameters"); err != nil {
			return nil, err
		}
		params := DHParams{P: d.P, G: d.G, Q: d.Q}
		if err := params.check(); err != nil {
			return nil, err
		}
		var y *big.Int
		if err := unmarshalExact(s.PublicKey.Bytes, &y, "DH public key"); err != nil {
			return nil, err
		}
		if err := params.CheckPublic(y); err != nil {
			return nil, err
		}
		return &Key{DH: &DHKey{Params: params, Y: y}}, nil
	}
	return nil, fmt.Errorf("%w: algorithm %s", ErrUnsupported, alg)
}

func (d DHParams) check() error {
	if d.P == nil || d.G == nil || d.Q == nil || d.P.Sign() <= 0 || d.G.Sign() <= 0 || d.Q.Sign() <= 0 {
		return fmt.Errorf("%w: DH parameters", ErrMalformed)
	}
	if d.P.BitLen() < 1024 || d.P.BitLen() > maxDHBits || d.P.Bit(0) == 0 {
		return fmt.Errorf("%w: DH prime of %d bits", ErrUnsupported, d.P.BitLen())
	}
	if d.Q.BitLen() < 160 || d.Q.Cmp(d.P) >= 0 {
		return fmt.Errorf("%w: DH subgroup order of %d bits", ErrUnsupported, d.Q.BitLen())
	}
	if d.G.Cmp(big.NewInt(1)) <= 0 || d.G.Cmp(d.P) >= 0 {
		return fmt.Errorf("%w: DH generator out of range", ErrMalformed)
	}
	return nil
}

// CheckPublic validates a DH public value: 1 < y < p-1 and y^q = 1 mod p
// (it lies in the prime-order subgroup; TR-03111-style validation that
// stops small-subgroup attacks).
func (d DHParams) CheckPublic(y *big.Int) error {
	pm1 := new(big.Int).Sub(d.P, big.NewInt(1))
	if y == nil || y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
		return fmt.Errorf("%w: DH public value out of range", ErrMalformed)
	}
	if new(big.Int).Exp(y, d.Q, d.P).Cmp(big.NewInt(1)) != 0 {
		return fmt.Errorf("%w: DH public value not in the prime-order subgroup", ErrMalformed)
	}
	return nil
}

func parseECParams(p asn1.RawValue) (Curve, error) {
	if len(p.FullBytes) == 0 {
		return Curve{}, fmt.Errorf("%w: EC key without domain parameters", ErrMalformed)
	}
	if p.Class == asn1.ClassUniversal && p.Tag == asn1.TagOID {
		var oid asn1.ObjectIdentifier
		if err := unmarshalExact(p.FullBytes, &oid, "namedCurve"); err != nil {
			return Curve{}, err
		}
		return CurveByOID(oid)
	}
	var e ecParameters
	if err := unmarshalExact(p.FullBytes, &e, "ECParameters"); err != nil {
		return Curve{}, err
	}
	if e.Version != 1 || !e.FieldID.FieldType.Equal(oidPrimeField) || e.FieldID.Prime == nil || e.Order == nil {
		return Curve{}, fmt.Errorf("%w: ECParameters not over a prime field", ErrUnsupported)
	}
	if e.Cofactor != nil && e.Cofactor.Cmp(big.NewInt(1)) != 0 {
		return Curve{}, fmt.Errorf("%w: cofactor %v", ErrUnsupported, e.Cofactor)
	}
	for _, c := range Curves() {
		cp := c.Params()
		// a and b are compared as integers: some CSCAs encode them with
		// a leading zero octet (one more than the field's length).
		if cp.P.Cmp(e.FieldID.Prime) != 0 || cp.N.Cmp(e.Order) != 0 || len(e.Curve.A) > c.ByteLen()+1 || len(e.Curve.B) > c.ByteLen()+1 {
			continue
		}
		gx, gy, err := DecodePoint(c, e.Base)
		if err != nil || gx.Cmp(cp.Gx) != 0 || gy.Cmp(cp.Gy) != 0 {
			return Curve{}, fmt.Errorf("%w: explicit parameters of %s with another generator", ErrUnsupported, c.Name)
		}
		a, b := new(big.Int).SetBytes(e.Curve.A), new(big.Int).SetBytes(e.Curve.B)
		wa, wb := coefficients(c)
		if b.Cmp(wb) != 0 || a.Cmp(wa) != 0 {
			return Curve{}, fmt.Errorf("%w: explicit parameters of %s with other coefficients", ErrUnsupported, c.Name)
		}
		return c, nil
	}
	return Curve{}, fmt.Errorf("%w: explicit parameters of no standardized curve", ErrUnsupported)
}

// coefficients returns a and b of y² = x³ + a·x + b. CurveParams holds
// neither for brainpool r1 curves (Go assumes a = −3, the brainpool
// package leaves B nil), so both come from two points on the curve, G and
// 2G: a = ((y1² − x1³) − (y2² − x2³)) / (x1 − x2), b = y1² − x1³ − a·x1.
func coefficients(c elliptic.Curve) (a, b *big.Int) {
	cp := c.Params()
	p := cp.P
	x2, y2 := c.Double(cp.Gx, cp.Gy)
	r := func(x, y *big.Int) *big.Int { // y² − x³ mod p
		v := new(big.Int).Mul(y, y)
		v.Sub(v, new(big.Int).Exp(x, big.NewInt(3), p))
		return v.Mod(v, p)
	}
	r1 := r(cp.Gx, cp.Gy)
	num := new(big.Int).Sub(r1, r(x2, y2))
	den := new(big.Int).Sub(cp.Gx, x2)
	den.Mod(den, p)
	a = num.Mul(num, new(big.Int).ModInverse(den, p))
	a.Mod(a, p)
	b = new(big.Int).Sub(r1, new(big.Int).Mul(a, cp.Gx))
	return a, b.Mod(b, p)
}

// EncodePoint is the uncompressed encoding 04 || X || Y.
func EncodePoint(c Curve, x, y *big.Int) []byte {
	n := c.ByteLen()
	out := make([]byte, 1+2*n)
	out[0] = 0x04
	x.FillBytes(out[1 : 1+n])
	y.FillBytes(out[1+n:])
	return out
}

// DecodePoint parses an uncompressed point and rejects anything off the
// curve (including the point at infinity and coordinates ≥ p).
func DecodePoint(c Curve, b []byte) (x, y *big.Int, err error) {
	n := c.ByteLen()
	if len(b) != 1+2*n || b[0] != 0x04 {
		return nil, nil, fmt.Errorf("%w: %d-byte point, not an uncompressed %s point", ErrMalformed, len(b), c.Name)
	}
	x, y = new(big.Int).SetBytes(b[1:1+n]), new(big.Int).SetBytes(b[1+n:])
	p := c.Params().P
	if x.Cmp(p) >= 0 || y.Cmp(p) >= 0 || !c.IsOnCurve(x, y) {
		return nil, nil, fmt.Errorf("%w: point not on %s", ErrMalformed, c.Name)
	}
	return x, y, nil
}

// MarshalECSPKI encodes an EC public key as a SubjectPublicKeyInfo with a
// namedCurve, or with explicit ECParameters when explicit is set (as
// many issuers do).
func MarshalECSPKI(c Curve, x, y *big.Int, explicit bool) ([]byte, error) {
	var params []byte
	var err error
	if explicit {
		cp := c.Params()
		var e ecParameters
		e.Version = 1
		e.FieldID.FieldType, e.FieldID.Prime = oidPrimeField, cp.P
		a, b := coefficients(c)
		e.Curve.A = a.FillBytes(make([]byte, c.ByteLen()))
		e.Curve.B = b.FillBytes(make([]byte, c.ByteLen()))
		e.Base = EncodePoint(c, cp.Gx, cp.Gy)
		e.Order, e.Cofactor = cp.N, big.NewInt(1)
		params, err = asn1.Marshal(e)
	} else {
		params, err = asn1.Marshal(c.OID)
	}
	if err != nil {
		return nil, err
	}
	var s spki
	s.Algorithm.Algorithm = OIDECPublicKey
	s.Algorithm.Parameters = asn1.RawValue{FullBytes: params}
	pt := EncodePoint(c, x, y)
	s.PublicKey = asn1.BitString{Bytes: pt, BitLength: 8 * len(pt)}
	return asn1.Marshal(s)
}

// MarshalRSASPKI encodes an RSA public key as a SubjectPublicKeyInfo.
func MarshalRSASPKI(k *rsa.PublicKey) ([]byte, error) {
	pk, err := asn1.Marshal(struct{ N, E *big.Int }{k.N, big.NewInt(int64(k.E))})
	if err != nil {
		return nil, err
	}
	var s spki
	s.Algorithm.Algorithm = OIDRSA
	s.Algorithm.Parameters = asn1.NullRawValue
	s.PublicKey = asn1.BitString{Bytes: pk, BitLength: 8 * len(pk)}
	return asn1.Marshal(s)
}

// MarshalDHSPKI encodes a DH public key as an X9.42 SubjectPublicKeyInfo.
func MarshalDHSPKI(k *DHKey) ([]byte, error) {
	params, err := asn1.Marshal(struct{ P, G, Q *big.Int }{k.Params.P, k.Params.G, k.Params.Q})
	if err != nil {
		return nil, err
	}
	y, err := asn1.Marshal(k.Y)
	if err != nil {
		return nil, err
	}
	var s spki
	s.Algorithm.Algorithm = OIDDHPublicNum
	s.Algorithm.Parameters = asn1.RawValue{FullBytes: params}
	s.PublicKey = asn1.BitString{Bytes: y, BitLength: 8 * len(y)}
	return asn1.Marshal(s)
}
