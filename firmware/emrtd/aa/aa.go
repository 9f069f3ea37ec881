// Package aa implements Active Authentication, ICAO Doc 9303-11 §6.1: the
// terminal sends an 8-byte challenge with INTERNAL AUTHENTICATE
// (00 88 00 00) and verifies the chip's signature with the public key of
// DG15. Only a chip holding the private key signs correctly, so a copied
// SOD on another chip fails.
//
// Signature schemes (§6.1.2):
//   - ECDSA, plain signature format r || s (BSI TR-03111 §5.2.1), hash
//     from the ActiveAuthenticationInfo in DG14 (§9.2.7).
//   - RSA with ISO/IEC 9796-2 digital signature scheme 1 (message
//     recovery): the recovered representative is
//     header || M1 || H(M1 || challenge) || trailer, with trailer 'BC'
//     (SHA-1, implicit) or 'hh CC' naming the hash by its ISO/IEC 10118-3
//     identifier (33 SHA-1, 34 SHA-256, 35 SHA-512, 36 SHA-384,
//     38 SHA-224).
//
// Transaction binding: the challenge may be derived from the transaction
// (ChallengeFor: the first 8 bytes of SHA-256 of the transaction data), so
// the chip's signature also commits to which transaction it approved.
//
// The package holds both sides: Authenticate/Verify for the terminal and
// Card for the virtual chip.
package aa

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	// Hash implementations the 9796-2 trailers and ECDSA name.
	_ "crypto/sha1"
	_ "crypto/sha512"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/pubkey"
)

// Errors. ErrFailed is the clone verdict: the signature does not verify.
var (
	ErrFailed      = errors.New("aa: active authentication signature invalid")
	ErrUnsupported = errors.New("aa: unsupported active authentication key or algorithm")
)

// ChallengeLen is the length of the challenge (9303-11 §6.1.2).
const ChallengeLen = 8

// ChallengeFor binds a challenge to a transaction: the first 8 bytes of
// SHA-256(transaction). The terminal keeps the transaction data; anyone
// holding it and the signature can check what the chip signed.
func ChallengeFor(transaction []byte) []byte {
	h := sha256.Sum256(transaction)
	return append([]byte(nil), h[:ChallengeLen]...)
}

// ECDSA signature algorithm OIDs (RFC 5758 / X9.62) of
// ActiveAuthenticationInfo.signatureAlgorithm.
var sigOIDs = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}, crypto.SHA1},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}, crypto.SHA224},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512},
}

// HashForSignatureOID maps an ecdsa-with-SHA* OID to its hash.
func HashForSignatureOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for _, s := range sigOIDs {
		if s.oid.Equal(oid) {
			return s.hash, true
		}
	}
	return 0, false
}

// SignatureOID is the ecdsa-with-SHA* OID of a hash.
func SignatureOID(h crypto.Hash) (asn1.ObjectIdentifier, bool) {
	for _, s := range sigOIDs {
		if s.hash == h {
			return s.oid, true
		}
	}
	return nil, false
}

// ISO/IEC 10118-3 hash-function identifiers used in 9796-2 trailers.
var hashIDs = map[byte]crypto.Hash{0x33: crypto.SHA1, 0x34: crypto.SHA256, 0x35: crypto.SHA512, 0x36: crypto.SHA384, 0x38: crypto.SHA224}

func hashID(h crypto.Hash) (byte, bool) {
	for id, hh := range hashIDs {
		if hh == h {
			return id, true
		}
	}
	return 0, false
}

// Options for Authenticate.
type Options struct {
	// Challenge is the 8-byte challenge (e.g. ChallengeFor(transaction));
	// nil means a random one.
	Challenge []byte
	// ECDSAHash is the hash of an ECDSA key, from DG14's
	// ActiveAuthenticationInfo; 0 means SHA-256 (9303-11 §9.2.7 makes the
	// info mandatory for ECDSA, so the reader passes it).
	ECDSAHash crypto.Hash
	// Rand supplies a random challenge; nil means crypto/rand.
	Rand io.Reader
}

// Result of a successful Active Authentication.
type Result struct {
	Algorithm string // e.g. "ECDSA-SHA256" or "RSA-ISO9796-2-SHA1"
	Key       string // e.g. "NIST P-256" or "RSA-2048"
	Challenge []byte
	Signature []byte
}

// Authenticate sends INTERNAL AUTHENTICATE with the challenge and verifies
// the answer with the DG15 key. An error wrapping ErrFailed means the
// signature does not verify (a cloned chip); status words come as
// *apdu.StatusError, reader failures as they are.
func Authenticate(ctx context.Context, ch *apdu.Channel, key *pubkey.Key, opts Options) (*Result, error) {
	challenge := opts.Challenge
	if challenge == nil {
		rnd := opts.Rand
		if rnd == nil {
			rnd = rand.Reader
		}
		challenge = make([]byte, ChallengeLen)
		if _, err := io.ReadFull(rnd, challenge); err != nil {
			return nil, fmt.Errorf("aa: challenge: %w", err)
		}
	}
	if len(challenge) != ChallengeLen {
		return nil, fmt.Errorf("aa: challenge of %d bytes, want %d", len(challenge), ChallengeLen)
	}
	if key == nil || (key.RSA == nil && key.EC == nil) {
		return nil, fmt.Errorf("%w: key must be RSA or ECDSA", ErrUnsupported)
	}
	ne := apdu.MaxShortNe
	if key.RSA != nil && key.RSA.Size() > apdu.MaxShortNe {
		ne = apdu.MaxExtendedNe
	}
	sig, err := ch.Do(ctx, apdu.Command{CLA: 0x00, INS: 0x88, P1: 0x00, P2: 0x00, Data: challenge, Ne: ne})
	if err != nil {
		return nil, fmt.Errorf("aa: INTERNAL AUTHENTICATE: %w", err)
	}
	alg, err := Verify(key, opts.ECDSAHash, challenge, sig)
	if err != nil {
		return nil, err
	}
	return &Result{Algorithm: alg, Key: key.Describe(), Challenge: append([]byte(nil), challenge...), Signature: sig}, nil
}

// Verify checks a signature of challenge with key: ECDSA plain format
// with ecdsaHash (0 = SHA-256), or RSA ISO/IEC 9796-2 scheme 1. It
// returns the algorithm name.
func Verify(key *pubkey.Key, ecdsaHash crypto.Hash, challenge, sig []byte) (string, error) {
	switch {
	case key == nil:
	case key.EC != nil:
		if ecdsaHash == 0 {
			ecdsaHash = crypto.SHA256
		}
		if _, ok := SignatureOID(ecdsaHash); !ok || !ecdsaHash.Available() {
			return "", fmt.Errorf("%w: ECDSA with %v", ErrUnsupported, ecdsaHash)
		}
		alg := "ECDSA-" + hashName(ecdsaHash)
		n := (key.EC.Curve.Params().N.BitLen() + 7) / 8
		if len(sig) != 2*n {
			return alg, fmt.Errorf("%w: plain ECDSA signature of %d bytes, want %d", ErrFailed, len(sig), 2*n)
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		h := ecdsaHash.New()
		h.Write(challenge)
		if !ecdsa.Verify(key.EC.ECDSA(), h.Sum(nil), r, s) {
			return alg, fmt.Errorf("%w: ECDSA signature does not verify with the DG15 key", ErrFailed)
		}
		return alg, nil
	case key.RSA != nil:
		return verify9796(key, challenge, sig)
	}
	return "", fmt.Errorf("%w: key must be RSA or ECDSA", ErrUnsupported)
}

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "SHA1"
	case crypto.SHA224:
		return "SHA224"
	case crypto.SHA256:
		return "SHA256"
	case crypto.SHA384:
		return "SHA384"
	case crypto.SHA512:
		return "SHA512"
	}
	return h.String()
}

// verify9796 recovers the ISO/IEC 9796-2 scheme 1 representative
// F = s^e mod n and checks header, padding, trailer and hash.
func verify9796(key *pubkey.Key, challenge, sig []byte) (string, error) {
	alg := "RSA-ISO9796-2"
	pub := key.RSA
	k := pub.Size()
	if len(sig) == 0 || len(sig) > k {
		return alg, fmt.Errorf("%w: RSA signature of %d bytes for a %d-byte modulus", ErrFailed, len(sig), k)
	}
	s := new(big.Int).SetBytes(sig)
	if s.Sign() <= 0 || s.Cmp(pub.N) >= 0 {
		return alg, fmt.Errorf("%w: RSA signature out of range", ErrFailed)
	}
	f := new(big.Int).Exp(s, big.NewInt(int64(pub.E)), pub.N).FillBytes(make([]byte, k))
	if pub.N.BitLen()%8 == 1 {
		// F has one bit less than n: a whole leading zero byte.
		if f[0] != 0 {
			return alg, fmt.Errorf("%w: representative too long", ErrFailed)
		}
		f = f[1:]
	}
	// Trailer (9796-2 §8.1.2): 'BC' = SHA-1 implicit, 'hh CC' explicit.
	var h crypto.Hash
	var t int
	switch {
	case len(f) >= 2 && f[len(f)-1] == 0xBC:
		h, t = crypto.SHA1, 1
	case len(f) >= 2 && f[len(f)-1] == 0xCC:
		hh, ok := hashIDs[f[len(f)-2]]
		if !ok {
			return alg, fmt.Errorf("%w: trailer %X names no supported hash", ErrFailed, f[len(f)-2:])
		}
		h, t = hh, 2
	default:
		return alg, fmt.Errorf("%w: no ISO/IEC 9796-2 trailer (wrong key?)", ErrFailed)
	}
	alg += "-" + hashName(h)
	// Header: '01' then the more-data bit (1: partial recovery), then
	// padding nibbles 'B' ending with 'A' (9796-2 §8.1.1).
	if f[0]&0xC0 != 0x40 {
		return alg, fmt.Errorf("%w: ISO/IEC 9796-2 header %02X", ErrFailed, f[0])
	}
	partial := f[0]&0x20 != 0
	start := 0
	switch f[0] & 0x0F {
	case 0x0A:
		start = 1
	case 0x0B:
		i := 1
		for i < len(f) && f[i] == 0xBB {
			i++
		}
		if i >= len(f) || f[i] != 0xBA {
			return alg, fmt.Errorf("%w: ISO/IEC 9796-2 padding", ErrFailed)
		}
		start = i + 1
	default:
		return alg, fmt.Errorf("%w: ISO/IEC 9796-2 header %02X", ErrFailed, f[0])
	}
	hl := h.Size()
	end := len(f) - t - hl
	if end < start {
		return alg, fmt.Errorf("%w: representative too short", ErrFailed)
	}
	m1, digest := f[start:end], f[end:len(f)-t]
	hh := h.New()
	hh.Write(m1)
	if partial {
		hh.Write(challenge) // M2, the non-recoverable part
	} else if !bytesEqual(m1, challenge) {
		return alg, fmt.Errorf("%w: recovered message is not the challenge", ErrFailed)
	}
	if !bytesEqual(hh.Sum(nil), digest) {
		return alg, fmt.Errorf("%w: ISO/IEC 9796-2 hash mismatch", ErrFailed)
	}
	return alg, nil
}

func bytesEqual(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}
