package aa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/pubkey"
)

// chip answers INTERNAL AUTHENTICATE with a Card (plain channel: the
// protocol does not depend on secure messaging).
type chip struct {
	c      *Card
	mutate func([]byte) []byte
}

func (c *chip) Transmit(_ context.Context, raw []byte) ([]byte, error) {
	cmd, _, err := apdu.ParseCommand(raw)
	if err != nil {
		return []byte{0x67, 0x00}, nil
	}
	r := c.c.InternalAuthenticate(cmd)
	if c.mutate != nil && r.SW == apdu.SWOK {
		r.Data = c.mutate(r.Data)
	}
	return r.Encode(), nil
}

func ecKey(t testing.TB, id int) *pubkey.PrivateKey {
	c, _ := pubkey.CurveByParameterID(id)
	k, err := pubkey.GenerateEC(rand.Reader, c)
	if err != nil {
		t.Fatal(err)
	}
	return &pubkey.PrivateKey{EC: k}
}

func rsaKey(t testing.TB) *pubkey.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &pubkey.PrivateKey{RSA: k}
}

func TestActiveAuthentication(t *testing.T) {
	rk := rsaKey(t)
	for _, tc := range []struct {
		name string
		key  *pubkey.PrivateKey
		hash crypto.Hash
		alg  string
	}{
		{"ECDSA P-256 SHA-256", ecKey(t, 12), crypto.SHA256, "ECDSA-SHA256"},
		{"ECDSA P-256 SHA-1", ecKey(t, 12), crypto.SHA1, "ECDSA-SHA1"},
		{"ECDSA P-384 SHA-384", ecKey(t, 15), crypto.SHA384, "ECDSA-SHA384"},
		{"ECDSA brainpoolP256r1 SHA-256", ecKey(t, 13), crypto.SHA256, "ECDSA-SHA256"},
		{"RSA 9796-2 SHA-1 (BC)", rk, crypto.SHA1, "RSA-ISO9796-2-SHA1"},
		{"RSA 9796-2 SHA-256 (34CC)", rk, crypto.SHA256, "RSA-ISO9796-2-SHA256"},
		{"RSA 9796-2 SHA-224 (38CC)", rk, crypto.SHA224, "RSA-ISO9796-2-SHA224"},
		{"RSA 9796-2 SHA-512 (35CC)", rk, crypto.SHA512, "RSA-ISO9796-2-SHA512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			card, err := NewCard(tc.key, tc.hash, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			ch := apdu.NewChannel(&chip{c: card}, apdu.Options{})
			challenge := ChallengeFor([]byte("pay 12.50 EUR to shop 4711, txn 42"))
			res, err := Authenticate(context.Background(), ch, tc.key.PublicKey(), Options{Challenge: challenge, ECDSAHash: tc.hash})
			if err != nil {
				t.Fatalf("genuine: %v", err)
			}
			if res.Algorithm != tc.alg || !bytes.Equal(res.Challenge, challenge) {
				t.Fatalf("result %+v", res)
			}
			// The signature is bound to the challenge: another one fails.
			if _, err := Verify(tc.key.PublicKey(), tc.hash, ChallengeFor([]byte("other")), res.Signature); !errors.Is(err, ErrFailed) {
				t.Fatalf("other challenge: %v", err)
			}
			// A cloned chip signs with another key.
			other := ecKey(t, 12)
			if tc.key.RSA != nil {
				other = rsaKey(t)
			} else if tc.key.EC.Public.Curve.ParameterID != 12 {
				other = ecKey(t, tc.key.EC.Public.Curve.ParameterID)
			}
			clone, _ := NewCard(other, tc.hash, rand.Reader)
			ch = apdu.NewChannel(&chip{c: clone}, apdu.Options{})
			if _, err := Authenticate(context.Background(), ch, tc.key.PublicKey(), Options{ECDSAHash: tc.hash}); !errors.Is(err, ErrFailed) {
				t.Fatalf("clone: %v", err)
			}
			// Flipped bits, truncation, oversize: rejected, never a panic.
			for _, m := range []func([]byte) []byte{
				func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
				func(b []byte) []byte { return b[:len(b)-1] },
				func(b []byte) []byte { return append(b, 0) },
				func(b []byte) []byte { return nil },
				func(b []byte) []byte { return bytes.Repeat([]byte{0xFF}, len(b)) },
			} {
				ch = apdu.NewChannel(&chip{c: card, mutate: m}, apdu.Options{})
				if _, err := Authenticate(context.Background(), ch, tc.key.PublicKey(), Options{ECDSAHash: tc.hash}); err == nil {
					t.Fatal("mutated signature accepted")
				}
			}
		})
	}
}

// 9796-2 representatives built by hand: padding nibbles, total
// recovery, wrong header or trailer.
func TestVerify9796Variants(t *testing.T) {
	rk := rsaKey(t).RSA
	pub := (&pubkey.PrivateKey{RSA: rk}).PublicKey()
	challenge := []byte("12345678")
	sign := func(f []byte) []byte {
		return newInt(f).Exp(newInt(f), rk.D, rk.N).FillBytes(make([]byte, 256))
	}
	h := func(parts ...[]byte) []byte {
		d := crypto.SHA1.New()
		for _, p := range parts {
			d.Write(p)
		}
		return d.Sum(nil)
	}
	m1 := bytes.Repeat([]byte{0x55}, 256-3-20-1)
	// Partial recovery with two bytes of padding: 6B BB BA M1 H BC.
	padded := append(append(append([]byte{0x6B, 0xBB, 0xBA}, m1...), h(m1, challenge)...), 0xBC)
	if _, err := Verify(pub, 0, challenge, sign(padded)); err != nil {
		t.Fatalf("padded: %v", err)
	}
	// Total recovery: 4B BB..BA challenge H BC.
	total := append(bytes.Repeat([]byte{0xBB}, 256-1-8-20-1-1), 0xBA)
	total = append(append(append(append([]byte{0x4B}, total...), challenge...), h(challenge)...), 0xBC)
	if _, err := Verify(pub, 0, challenge, sign(total)); err != nil {
		t.Fatalf("total recovery: %v", err)
	}
	for name, f := range map[string][]byte{
		"header 2A":                append([]byte{0x2A}, padded[1:]...),
		"bad padding":              append([]byte{0x6B, 0xBB, 0xB0}, padded[3:]...),
		"trailer 99CC":             append(append([]byte{}, padded[:255]...), 0xCC),
		"trailer AA":               append(append([]byte{}, padded[:255]...), 0xAA),
		"total, not the challenge": append(append(append(append([]byte{0x4B}, total[1:len(total)-29]...), []byte("87654321")...), h([]byte("87654321"))...), 0xBC),
	} {
		if _, err := Verify(pub, 0, challenge, sign(f)); !errors.Is(err, ErrFailed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestChallengeFor(t *testing.T) {
	// SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2 B.1).
	if got := ChallengeFor([]byte("abc")); !bytes.Equal(got, []byte{0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea}) {
		t.Fatalf("%x", got)
	}
}

func FuzzVerify(f *testing.F) {
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaPub := (&pubkey.PrivateKey{RSA: rk}).PublicKey()
	ec := ecKey(f, 12)
	card, _ := NewCard(&pubkey.PrivateKey{RSA: rk}, crypto.SHA256, rand.Reader)
	sig := card.InternalAuthenticate(apdu.Command{INS: 0x88, Data: []byte("12345678")}).Data
	f.Add(sig, false)
	f.Add(make([]byte, 64), true)
	f.Fuzz(func(t *testing.T, sig []byte, useEC bool) {
		k := rsaPub
		if useEC {
			k = ec.PublicKey()
		}
		_, _ = Verify(k, crypto.SHA256, []byte("12345678"), sig)
	})
}

func newInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }
