package bankeid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Errors of the signature layer.
var (
	ErrSignatureFormat = errors.New("bankeid: signature is not r||s of 64 bytes")
	ErrKeyType         = errors.New("bankeid: certificate key is neither SM2 nor ECDSA P-256")
)

// KeyAlgorithm names the certificate key's algorithm and returns its MSE
// algorithm byte.
func KeyAlgorithm(pub any) (name string, alg byte, err error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return "", 0, fmt.Errorf("%w: %T", ErrKeyType, pub)
	}
	switch {
	case sm2.IsSM2PublicKey(k):
		return "SM2", AlgSM2, nil
	case k.Curve == elliptic.P256():
		return "ECDSA-P256", AlgECDSA, nil
	}
	return "", 0, fmt.Errorf("%w: curve %s", ErrKeyType, k.Curve.Params().Name)
}

// Digest is what the terminal sends in PSO:CDS for message m and the
// certificate key pub: for SM2, e = SM3(Z_A || m) with the default user id
// (GB/T 32918.2 §6.1); for ECDSA P-256, SM3(m).
func Digest(pub any, m []byte) ([]byte, error) {
	_, alg, err := KeyAlgorithm(pub)
	if err != nil {
		return nil, err
	}
	k := pub.(*ecdsa.PublicKey)
	if alg == AlgECDSA {
		d := sm3.Sum(m)
		return d[:], nil
	}
	za, err := sm2.CalculateZA(k, DefaultUID)
	if err != nil {
		return nil, fmt.Errorf("bankeid: Z_A: %w", err)
	}
	h := sm3.New()
	h.Write(za)
	h.Write(m)
	return h.Sum(nil), nil
}

// DefaultUID is the signer identity of GB/T 35276 §5 (and gmsm's
// default), "1234567812345678": CalculateZA takes the uid literally, so
// it is passed explicitly.
var DefaultUID = []byte("1234567812345678")

// ParseSignature turns the card's r||s into the ASN.1 ECDSA-Sig-Value
// (SEQUENCE of two INTEGERs) both verifiers take. r and s must be in
// [1, n-1] of the key's curve.
func ParseSignature(raw []byte, curve elliptic.Curve) ([]byte, error) {
	if len(raw) != SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrSignatureFormat, len(raw))
	}
	n := curve.Params().N
	r := new(big.Int).SetBytes(raw[:32])
	s := new(big.Int).SetBytes(raw[32:])
	if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
		return nil, fmt.Errorf("%w: r or s out of range", ErrSignatureFormat)
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// RawSignature is ParseSignature's inverse: ASN.1 ECDSA-Sig-Value to the
// card's r||s (the virtual card uses it).
func RawSignature(der []byte) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() || !seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, fmt.Errorf("%w: bad ASN.1", ErrSignatureFormat)
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 256 || s.BitLen() > 256 {
		return nil, fmt.Errorf("%w: r or s out of range", ErrSignatureFormat)
	}
	out := make([]byte, SignatureSize)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

// VerifySignature checks the card's signature (ASN.1) over message m with
// the certificate key pub, with the algorithm the key implies. The SM2
// path recomputes Z_A inside gmsm (VerifyASN1WithSM2), independent of
// Digest.
func VerifySignature(pub any, m, sig []byte) error {
	_, alg, err := KeyAlgorithm(pub)
	if err != nil {
		return err
	}
	k := pub.(*ecdsa.PublicKey)
	ok := false
	if alg == AlgSM2 {
		ok = sm2.VerifyASN1WithSM2(k, nil, m, sig)
	} else {
		d := sm3.Sum(m)
		ok = ecdsa.VerifyASN1(k, d[:], sig)
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// ErrBadSignature: the signature does not verify over the challenge.
var ErrBadSignature = errors.New("bankeid: signature does not verify over the challenge")
