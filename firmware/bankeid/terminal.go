package bankeid

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/emrtd/apdu"
)

// PIN is the holder's eID PIN. It never reaches a log or a report:
// String, GoString, LogValue and MarshalText show stars only.
type PIN string

func (PIN) String() string               { return "***" }
func (p PIN) GoString() string           { return p.String() }
func (p PIN) LogValue() slog.Value       { return slog.StringValue(p.String()) }
func (PIN) MarshalText() ([]byte, error) { return []byte("***"), nil }

// Options configure one Read.
type Options struct {
	PIN   PIN
	Trust *Trust
	// Transaction is what the holder signs: every Challenge field but the
	// nonce and the time, which Read sets.
	Transaction Challenge
	Now         func() time.Time
	Rand        io.Reader // nonce source; nil = crypto/rand
	Logger      *slog.Logger
}

// ErrDevice marks failures of the reader or link (card pulled, timeout),
// not of the card: Read returns them as errors, never as failed checks.
var ErrDevice = errors.New("bankeid: card or reader failure")

func deviceError(err error) bool {
	return errors.Is(err, cardreader.ErrCardRemoved) || errors.Is(err, cardreader.ErrTimeout) ||
		errors.Is(err, cardreader.ErrServiceUnavailable) || errors.Is(err, cardreader.ErrClosed) ||
		errors.Is(err, cardreader.ErrNoCard) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// Failure codes of Read (Report.Failures, Check.Code) beyond those of
// VerifyCertificate.
const (
	CodeNotBankEID         = "not_bankeid"
	CodePINFormat          = "pin_format"
	CodePINWrong           = "pin_wrong"
	CodePINBlocked         = "pin_blocked"
	CodeCardError          = "card_error"
	CodeSignatureMalformed = "signature_malformed"
	CodeSignatureInvalid   = "signature_invalid"
	CodeChallenge          = "challenge_invalid"
)

// Read runs the KIOSK-EID-1 procedure on a connected card (profile.go):
// SELECT the application, read the PIN retry counter, VERIFY the PIN,
// read and verify the eID certificate (chain, usage, CRL), MSE:SET DST,
// PSO:CDS over the digest of a fresh challenge for opts.Transaction, and
// verify the signature. A step that fails ends the read; the report names
// why. Read returns an error only for device failures (wrapping
// ErrDevice).
func Read(ctx context.Context, t apdu.Transport, opts Options) (*Report, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	ch := apdu.NewChannel(t, apdu.Options{Logger: log, MaxFileSize: MaxCertificateSize})
	r := &Report{Document: "bankeid", Profile: Profile, Passed: true}
	defer func() { r.APDUs = ch.Stats().APDUs }()
	// cardFail turns an APDU error into a failed check, or a device error.
	cardFail := func(name string, err error) (*Report, error) {
		if deviceError(err) {
			return r, fmt.Errorf("%w: %s: %w", ErrDevice, name, err)
		}
		r.fail(name, CodeCardError, err.Error())
		return r, nil
	}

	// ISO/IEC 7816-4 §11.2.2: SELECT by DF name.
	if err := ch.SelectApplication(ctx, AID); err != nil {
		if deviceError(err) {
			return r, fmt.Errorf("%w: select: %w", ErrDevice, err)
		}
		r.fail("select", CodeNotBankEID, "no "+Profile+" application: "+err.Error())
		return r, nil
	}
	r.pass("select", Profile+" application selected")

	// §11.5.6: VERIFY without data asks for the retry counter.
	pinName := "pin"
	resp, err := ch.Transmit(ctx, apdu.Command{INS: InsVerify, P2: PINReference})
	if err != nil {
		return cardFail(pinName, err)
	}
	if resp.SW == SWPINBlocked {
		r.fail(pinName, CodePINBlocked, "the eID PIN is blocked (too many wrong PINs); the bank unblocks it")
		return r, nil
	}
	if n, ok := apdu.RetriesLeft(resp.SW); ok {
		r.PINRetriesLeft = &n
		if n == 0 {
			r.fail(pinName, CodePINBlocked, "the eID PIN has no retries left")
			return r, nil
		}
	}
	block, err := PINBlock(opts.PIN)
	if err != nil {
		r.fail(pinName, CodePINFormat, err.Error())
		return r, nil
	}
	resp, err = ch.Transmit(ctx, apdu.Command{INS: InsVerify, P2: PINReference, Data: block})
	clear(block)
	if err != nil {
		return cardFail(pinName, err)
	}
	switch n, counted := apdu.RetriesLeft(resp.SW); {
	case resp.SW == apdu.SWOK:
		r.PINRetriesLeft = nil
		r.pass(pinName, "PIN verified")
	case resp.SW == SWPINBlocked || (counted && n == 0):
		zero := 0
		r.PINRetriesLeft = &zero
		r.fail(pinName, CodePINBlocked, "wrong PIN; the eID PIN is now blocked")
		return r, nil
	case counted:
		r.PINRetriesLeft = &n
		r.fail(pinName, CodePINWrong, fmt.Sprintf("wrong PIN, %d tries left", n))
		return r, nil
	default:
		r.fail(pinName, CodeCardError, "VERIFY: "+resp.Err().Error())
		return r, nil
	}

	// The certificate: read, parse, chain, usage, revocation.
	der, err := ch.ReadFile(ctx, FIDCertificate)
	if err != nil {
		if deviceError(err) {
			return r, fmt.Errorf("%w: read certificate: %w", ErrDevice, err)
		}
		r.fail("certificate", CodeCertMalformed, "read the eID certificate: "+err.Error())
		return r, nil
	}
	if opts.Trust == nil {
		r.fail("certificate", CodeCertUntrusted, "no eID authority is trusted (empty trust store)")
		return r, nil
	}
	cert, err := opts.Trust.VerifyCertificate(der, now())
	if err != nil {
		var ce *CertError
		code := CodeCertUntrusted
		if errors.As(err, &ce) {
			code = ce.Code
		}
		r.fail("certificate", code, err.Error())
		return r, nil
	}
	keyName, alg, _ := KeyAlgorithm(cert.PublicKey)
	r.Identity = &Identity{
		Number: serialNumberOf(cert.Subject), Name: cert.Subject.CommonName,
		Country: strings.Join(cert.Subject.Country, ","), Authority: cert.Issuer.CommonName,
		CertificateSerial: strings.ToUpper(cert.SerialNumber.Text(16)), KeyAlgorithm: keyName,
	}
	if r.Identity.Number == "" {
		r.fail("certificate", CodeCertMalformed, "the certificate names no eID number (subject serialNumber)")
		return r, nil
	}
	r.pass("certificate", fmt.Sprintf("%s key, issued by %q, not revoked", keyName, cert.Issuer.CommonName))

	// The challenge.
	c := opts.Transaction
	c.Time = now().UTC().Truncate(time.Second)
	c.Nonce = make([]byte, NonceSize)
	if _, err := io.ReadFull(rnd, c.Nonce); err != nil {
		return r, fmt.Errorf("bankeid: nonce: %w", err)
	}
	m, err := c.Encode()
	if err != nil {
		r.fail("signature", CodeChallenge, err.Error())
		return r, nil
	}
	digest, err := Digest(cert.PublicKey, m)
	if err != nil {
		r.fail("signature", CodeCertMalformed, err.Error())
		return r, nil
	}

	// ISO/IEC 7816-4 §11.5.11 MSE:SET DST; 7816-8 §11.2 PSO:CDS.
	if _, err := ch.Do(ctx, apdu.Command{INS: InsMSE, P1: MSESetP1, P2: MSEDST,
		Data: []byte{0x80, 0x01, alg, 0x84, 0x01, KeyReference}}); err != nil {
		return cardFail("signature", err)
	}
	raw, err := ch.Do(ctx, apdu.Command{INS: InsPSO, P1: PSOCDSP1, P2: PSOCDSP2, Data: digest, Ne: apdu.MaxShortNe})
	if err != nil {
		return cardFail("signature", err)
	}
	sig, err := ParseSignature(raw, cert.PublicKey.(*ecdsa.PublicKey).Curve)
	if err != nil {
		r.fail("signature", CodeSignatureMalformed, err.Error())
		return r, nil
	}
	if err := VerifySignature(cert.PublicKey, m, sig); err != nil {
		r.fail("signature", CodeSignatureInvalid, "the card's signature does not verify over this transaction's challenge (a replayed or forged signature)")
		return r, nil
	}
	r.pass("signature", keyName+" signature over the transaction challenge verified")
	r.Evidence = &Evidence{Profile: Profile, Algorithm: algorithmName(alg), Challenge: m, Signature: sig, Certificate: der}
	log.Debug("bank eID read", "apdus", ch.Stats().APDUs, "passed", r.Passed)
	return r, nil
}

func algorithmName(alg byte) string {
	if alg == AlgSM2 {
		return "SM2-SM3"
	}
	return "ECDSA-P256-SM3"
}

// ErrPINFormat: a PIN that is not 4 to 12 digits.
var ErrPINFormat = errors.New("bankeid: the PIN must be 4 to 12 digits")

// PINBlock encodes the PIN as an ISO 9564-1 format 2 PIN block (the plain
// block of ISO/IEC 7816-4 VERIFY on payment-card chips): control nibble 2,
// the length, the digits, 'F' padding, 8 bytes.
func PINBlock(p PIN) ([]byte, error) {
	s := string(p)
	if len(s) < MinPINLength || len(s) > MaxPINLength {
		return nil, ErrPINFormat
	}
	nib := make([]byte, 0, 16)
	nib = append(nib, 2, byte(len(s)))
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return nil, ErrPINFormat
		}
		nib = append(nib, s[i]-'0')
	}
	for len(nib) < 16 {
		nib = append(nib, 0xF)
	}
	out := make([]byte, 8)
	for i := range out {
		out[i] = nib[2*i]<<4 | nib[2*i+1]
	}
	clear(nib)
	return out, nil
}

// ParsePINBlock is PINBlock's inverse (the card side).
func ParsePINBlock(b []byte) (PIN, error) {
	if len(b) != 8 || b[0]>>4 != 2 {
		return "", ErrPINFormat
	}
	n := int(b[0] & 0x0F)
	if n < MinPINLength || n > MaxPINLength {
		return "", ErrPINFormat
	}
	digits := make([]byte, 0, n)
	for i := 2; i < 16; i++ {
		v := b[i/2] >> 4
		if i%2 == 1 {
			v = b[i/2] & 0x0F
		}
		if i-2 < n {
			if v > 9 {
				return "", ErrPINFormat
			}
			digits = append(digits, '0'+v)
		} else if v != 0xF {
			return "", ErrPINFormat
		}
	}
	return PIN(digits), nil
}

// VerifyEvidence checks evidence again where it arrives (the hub): the
// certificate against trust at now, the signature over the challenge, and
// that the challenge is the one for this transaction (kiosk, transaction
// id, amount, currency). It returns the holder's eID number.
func VerifyEvidence(ev *Evidence, trust *Trust, now time.Time, want Challenge) (string, error) {
	if ev == nil {
		return "", errors.New("bankeid: no evidence")
	}
	cert, err := trust.VerifyCertificate(ev.Certificate, now)
	if err != nil {
		return "", err
	}
	c, err := ParseChallenge(ev.Challenge)
	if err != nil {
		return "", err
	}
	if c.KioskID != want.KioskID || c.TransactionID != want.TransactionID || c.Amount != want.Amount || c.Currency != want.Currency {
		return "", fmt.Errorf("%w: the challenge names another transaction", ErrBadSignature)
	}
	if err := VerifySignature(cert.PublicKey, ev.Challenge, ev.Signature); err != nil {
		return "", err
	}
	return serialNumberOf(cert.Subject), nil
}
