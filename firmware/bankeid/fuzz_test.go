package bankeid_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/provisioning/bankissuer"
)

func FuzzParseChallenge(f *testing.F) {
	good := tx
	good.Nonce = bytes.Repeat([]byte{1}, bankeid.NonceSize)
	good.Time = time.Unix(1_800_000_000, 0)
	m, err := good.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m)
	f.Add(m[:len(m)-1])
	f.Add([]byte{0x7F, 0x71, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := bankeid.ParseChallenge(b)
		if err != nil {
			return
		}
		again, err := c.Encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical challenge: %v", err)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x11}, 64))
	f.Add(bytes.Repeat([]byte{0xFF}, 64))
	f.Add(make([]byte, 64))
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, curve := range []bool{true, false} {
			c := sm2.P256()
			if !curve {
				c = ecdsaCurve()
			}
			der, err := bankeid.ParseSignature(b, c)
			if err != nil {
				continue
			}
			raw, err := bankeid.RawSignature(der)
			if err != nil || !bytes.Equal(raw, b) {
				t.Fatalf("round trip: %x -> %x (%v)", b, raw, err)
			}
		}
		_, _ = bankeid.RawSignature(b)
	})
}

func FuzzParsePINBlock(f *testing.F) {
	for _, p := range []string{"1234", "246810", "123456789012"} {
		b, _ := bankeid.PINBlock(bankeid.PIN(p))
		f.Add(b)
	}
	f.Add([]byte{0x2F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := bankeid.ParsePINBlock(b)
		if err != nil {
			return
		}
		again, err := bankeid.PINBlock(p)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("PIN block %x parsed but does not round-trip", b)
		}
	})
}

// scripted is a card whose every answer comes from the fuzzer: the input
// is a sequence of responses, each prefixed by its length (2 bytes).
type scripted struct{ rest []byte }

func (s *scripted) Transmit(_ context.Context, _ []byte) ([]byte, error) {
	if len(s.rest) < 2 {
		return []byte{0x6F, 0x00}, nil
	}
	n := int(s.rest[0])<<8 | int(s.rest[1])
	s.rest = s.rest[2:]
	n = min(n, len(s.rest))
	out := s.rest[:n]
	s.rest = s.rest[n:]
	return out, nil
}

// recording remembers a real card's answers in scripted's format.
type recording struct {
	c   *bankcard.Card
	out []byte
}

func (r *recording) Transmit(_ context.Context, capdu []byte) ([]byte, error) {
	resp := r.c.Process(capdu)
	r.out = append(r.out, byte(len(resp)>>8), byte(len(resp)))
	r.out = append(r.out, resp...)
	return resp, nil
}

// FuzzRead runs the whole terminal against any answers: it must never
// panic, never report an error for card input, and never pass a card
// whose signature it did not verify.
func FuzzRead(f *testing.F) {
	a, err := bankissuer.NewAuthority("Fuzz eID Authority", false)
	if err != nil {
		f.Fatal(err)
	}
	trust, err := a.Trust()
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range []string{bankcard.ProfileGood, bankcard.ProfileWrongPIN, bankcard.ProfileMalformedCert, bankcard.ProfileReplay} {
		im, err := a.Issue(bankissuer.Holder{Name: "FUZZ", EIDNumber: "EID-1", PIN: testPIN}, p)
		if err != nil {
			f.Fatal(err)
		}
		c, _ := bankcard.New(im, bankcard.Options{})
		rec := &recording{c: c}
		if _, err := bankeid.Read(context.Background(), rec, bankeid.Options{PIN: testPIN, Trust: trust, Transaction: tx}); err != nil {
			f.Fatal(err)
		}
		f.Add(rec.out)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := bankeid.Read(context.Background(), &scripted{rest: b}, bankeid.Options{PIN: testPIN, Trust: trust, Transaction: tx})
		if err != nil {
			t.Fatalf("card input gave an error: %v", err)
		}
		if r.Passed && (r.Evidence == nil || bankeid.VerifySignature(mustCert(t, r.Evidence.Certificate), r.Evidence.Challenge, r.Evidence.Signature) != nil) {
			t.Fatal("passed without a verified signature")
		}
		// Recorded signatures are over another nonce: never a pass.
		if r.Passed {
			t.Fatal("a replayed session passed")
		}
	})
}

// FuzzTrust feeds arbitrary roots and CRLs to the trust store and an
// arbitrary certificate to its verification.
func FuzzTrust(f *testing.F) {
	a, err := bankissuer.NewAuthority("Fuzz eID Authority", false)
	if err != nil {
		f.Fatal(err)
	}
	crl, _ := a.CRL()
	im, _ := a.Issue(bankissuer.Holder{Name: "FUZZ", EIDNumber: "EID-1", PIN: testPIN}, bankcard.ProfileGood)
	f.Add(a.Cert.Raw, crl, im.Cert)
	f.Add(im.Cert, crl, a.Cert.Raw)
	f.Fuzz(func(t *testing.T, root, crl, cert []byte) {
		tr, err := bankeid.NewTrust([][]byte{root}, [][]byte{crl})
		if err != nil {
			return
		}
		_, _ = tr.VerifyCertificate(cert, time.Now())
	})
}
