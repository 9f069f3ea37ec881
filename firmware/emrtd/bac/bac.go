// Package bac implements Basic Access Control, ICAO Doc 9303-11 §4.3:
// the document basic access keys from the MRZ (§4.3.2, key seed via
// §9.7.1), the GET CHALLENGE / EXTERNAL AUTHENTICATE mutual authentication
// with 3DES (§4.3.3/§4.3.4) and the resulting 3DES secure messaging session
// (§9.8, SSC from the nonces). The terminal side is Authenticate; the card
// side (for the virtual card) is Card.
//
// BAC is only for chips without PACE (no EF.CardAccess): a terminal never
// falls back to BAC after PACE failed (9303-11 §4.2).
package bac

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"kiosk/firmware/emrtd/lds"
	"log/slog"
	"strings"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/smcrypto"
)

// Errors.
var (
	// ErrInvalidKey: the MRZ fields are not valid MRZ text.
	ErrInvalidKey = errors.New("bac: invalid MRZ key fields")
	// ErrAuthenticationFailed: the chip refused our cryptogram (wrong MRZ
	// data) or its answer did not verify.
	ErrAuthenticationFailed = errors.New("bac: authentication failed")
)

// Key holds the MRZ fields the document basic access keys are derived
// from (9303-11 §4.3.2).
//
// The three fields are the BAC password (and PACE's MRZ password): String,
// LogValue and GoString hide them and JSON leaves them out, so no log line
// or report can carry them.
type Key struct {
	// DocumentNumber as in the MRZ without its check digit; '<' fillers
	// allowed, shorter numbers are padded with '<' to 9 characters. A
	// longer number (TD1 overflow) is used whole.
	DocumentNumber string `json:"-"`
	DateOfBirth    string `json:"-"` // YYMMDD
	DateOfExpiry   string `json:"-"` // YYMMDD
}

// String hides the MRZ fields.
func (k Key) String() string { return "MRZ:***" }

// LogValue implements slog.LogValuer.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// GoString keeps %#v from printing the MRZ fields.
func (k Key) GoString() string { return k.String() }

// CheckDigit computes the 9303-3 §4.9 check digit: weights 7, 3, 1 over
// the character values (0–9, A=10 … Z=35, '<'=0), modulo 10.
func CheckDigit(s string) (byte, error) {
	d, err := lds.CheckDigit(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return d, nil
}

// MRZInformation returns document number, date of birth and date of
// expiry, each followed by its check digit (9303-11 §4.3.2 "MRZ_information").
func (k Key) MRZInformation() (string, error) {
	doc := strings.ToUpper(strings.TrimSpace(k.DocumentNumber))
	if doc == "" || len(doc) > 22 {
		return "", fmt.Errorf("%w: document number %q", ErrInvalidKey, k.DocumentNumber)
	}
	for _, f := range []struct{ name, v string }{{"date of birth", k.DateOfBirth}, {"date of expiry", k.DateOfExpiry}} {
		if !isDate(f.v) {
			return "", fmt.Errorf("%w: %s %q is not YYMMDD", ErrInvalidKey, f.name, f.v)
		}
	}
	// The dates are valid: only the document number's characters can fail.
	info, err := lds.MRZInformation(doc, k.DateOfBirth, k.DateOfExpiry)
	if err != nil {
		return "", fmt.Errorf("document number: %w: %w", ErrInvalidKey, err)
	}
	return info, nil
}

func isDate(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < 6; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Seed returns Kseed = the first 16 bytes of SHA-1(MRZ_information)
// (9303-11 §4.3.2).
func (k Key) Seed() ([]byte, error) {
	info, err := k.MRZInformation()
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum([]byte(info))
	return sum[:16], nil
}

// Keys returns the document basic access keys Kenc and Kmac
// (KDF(Kseed, 1) and KDF(Kseed, 2), 9303-11 §9.7.1).
func (k Key) Keys() (kEnc, kMac []byte, err error) {
	seed, err := k.Seed()
	if err != nil {
		return nil, nil, err
	}
	return smcrypto.SessionKeys(smcrypto.TDES, seed)
}

// Options for Authenticate.
type Options struct {
	// Rand supplies RND.IFD (8 bytes, read first) and K.IFD (16 bytes);
	// nil means crypto/rand. Tests pin it to replay Appendix D.
	Rand io.Reader
	// Logger; nil discards.
	Logger *slog.Logger
}

// Authenticate runs BAC with the chip on ch (plain, no wrapper installed)
// and returns the 3DES secure messaging session; install it with
// ch.SetWrapper. A chip refusing the cryptogram (typically 6300: wrong
// MRZ data) or answering one that does not verify is ErrAuthenticationFailed.
func Authenticate(ctx context.Context, ch *apdu.Channel, key Key, opts Options) (*sm.Session, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	kEnc, kMac, err := key.Keys()
	if err != nil {
		return nil, err
	}
	// §4.3.4.1 step 1: GET CHALLENGE.
	rndIC, err := ch.Do(ctx, apdu.Command{CLA: 0x00, INS: 0x84, Ne: 8})
	if err != nil {
		return nil, fmt.Errorf("bac: get challenge: %w", err)
	}
	if len(rndIC) != 8 {
		return nil, fmt.Errorf("%w: challenge of %d bytes", ErrAuthenticationFailed, len(rndIC))
	}
	// Steps 2–3: RND.IFD, K.IFD, S = RND.IFD || RND.IC || K.IFD, E_IFD, M_IFD.
	rndIFD := make([]byte, 8)
	kIFD := make([]byte, 16)
	if _, err := io.ReadFull(rnd, rndIFD); err != nil {
		return nil, fmt.Errorf("bac: random: %w", err)
	}
	if _, err := io.ReadFull(rnd, kIFD); err != nil {
		return nil, fmt.Errorf("bac: random: %w", err)
	}
	cmdData, err := cryptogram(kEnc, kMac, rndIFD, rndIC, kIFD)
	if err != nil {
		return nil, err
	}
	// Step 4: EXTERNAL AUTHENTICATE (Le = 40).
	resp, err := ch.Transmit(ctx, apdu.Command{CLA: 0x00, INS: 0x82, Data: cmdData, Ne: 40})
	if err != nil {
		return nil, fmt.Errorf("bac: external authenticate: %w", err)
	}
	if resp.SW != apdu.SWOK {
		return nil, fmt.Errorf("%w: external authenticate: %w", ErrAuthenticationFailed, resp.Err())
	}
	// Steps 5–6 (terminal side of §4.3.4.2): check M_IC, decrypt, check
	// the echoed RND.IFD, derive the session.
	r, err := openCryptogram(kEnc, kMac, resp.Data)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(r[:8], rndIC) != 1 || subtle.ConstantTimeCompare(r[8:16], rndIFD) != 1 {
		return nil, fmt.Errorf("%w: the chip's answer does not echo the nonces", ErrAuthenticationFailed)
	}
	s, err := session(kIFD, r[16:32], rndIC, rndIFD)
	if err != nil {
		return nil, err
	}
	log.Debug("bac established")
	return s, nil
}

// cryptogram returns E(Kenc, a || b || k) || MAC(Kmac, E) (§4.3.4.1 step 3,
// and §4.3.4.2 step 3 for the chip).
func cryptogram(kEnc, kMac, a, b, k []byte) ([]byte, error) {
	s := make([]byte, 0, 32)
	s = append(append(append(s, a...), b...), k...)
	e, err := smcrypto.EncryptCBC(smcrypto.TDES, kEnc, nil, s)
	if err != nil {
		return nil, err
	}
	m, err := smcrypto.MAC(smcrypto.TDES, kMac, smcrypto.Pad(e, 8))
	if err != nil {
		return nil, err
	}
	return append(e, m...), nil
}

// openCryptogram checks the MAC of a 40-byte E || M (constant time) and
// decrypts E.
func openCryptogram(kEnc, kMac, data []byte) ([]byte, error) {
	if len(data) != 40 {
		return nil, fmt.Errorf("%w: cryptogram of %d bytes", ErrAuthenticationFailed, len(data))
	}
	m, err := smcrypto.MAC(smcrypto.TDES, kMac, smcrypto.Pad(data[:32], 8))
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(m, data[32:]) != 1 {
		return nil, fmt.Errorf("%w: MAC does not verify", ErrAuthenticationFailed)
	}
	return smcrypto.DecryptCBC(smcrypto.TDES, kEnc, nil, data[:32])
}

// session derives KSenc, KSmac from K.IFD xor K.IC and the SSC from the
// nonces' least significant halves (9303-11 §4.3.4.2 / §9.8.2).
func session(kIFD, kIC, rndIC, rndIFD []byte) (*sm.Session, error) {
	seed := make([]byte, 16)
	subtle.XORBytes(seed, kIFD, kIC)
	ksEnc, ksMac, err := smcrypto.SessionKeys(smcrypto.TDES, seed)
	if err != nil {
		return nil, err
	}
	ssc := append(append([]byte{}, rndIC[4:8]...), rndIFD[4:8]...)
	return sm.New(smcrypto.TDES, ksEnc, ksMac, ssc)
}
