package bankcard

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"sync"

	"github.com/emmansun/gmsm/sm2"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/emrtd/apdu"
)

// Profiles of the virtual card. Each hostile one must be refused by the
// terminal with its own reason (bankeid failure code in the comment).
const (
	ProfileGood               = "good"
	ProfileWrongPIN           = "wrong-pin"           // pin_wrong: the card's PIN is not the holder's
	ProfileBlockedPIN         = "blocked-pin"         // pin_blocked
	ProfileRevoked            = "revoked"             // cert_revoked: on the authority's CRL
	ProfileOtherAuthority     = "other-authority"     // cert_untrusted: a look-alike root issued it
	ProfileReplay             = "replay"              // signature_invalid: signs an earlier challenge
	ProfileMalformedCert      = "malformed-cert"      // cert_malformed
	ProfileMalformedSignature = "malformed-signature" // signature_malformed
	ProfileMalformedStatus    = "malformed-status"    // card_error: VERIFY answers a status no profile defines
)

// Profiles lists every profile with the failure code the terminal must
// give ("" for cards that pass).
func Profiles() map[string]string {
	return map[string]string{
		ProfileGood: "", ProfileWrongPIN: bankeid.CodePINWrong, ProfileBlockedPIN: bankeid.CodePINBlocked,
		ProfileRevoked: bankeid.CodeCertRevoked, ProfileOtherAuthority: bankeid.CodeCertUntrusted,
		ProfileReplay: bankeid.CodeSignatureInvalid, ProfileMalformedCert: bankeid.CodeCertMalformed,
		ProfileMalformedSignature: bankeid.CodeSignatureMalformed, ProfileMalformedStatus: bankeid.CodeCardError,
	}
}

// Options of a Card.
type Options struct {
	Logger *slog.Logger
	// PINRetries, when set, is the counter's current value (it survives
	// restarts of the emulator as on a chip); nil = the image's maximum.
	PINRetries *int
	// OnPINRetries hears every change of the counter (to persist it).
	OnPINRetries func(left int)
}

// Card is the virtual bank eID chip. Safe for concurrent use.
type Card struct {
	im   *Image
	opts Options
	log  *slog.Logger
	atr  []byte

	mu       sync.Mutex
	retries  int
	selected bool
	efCert   bool
	verified bool
	alg      byte // set by MSE:SET DST, 0 = none
}

var _ interface {
	ATR() []byte
	Reset()
	Process([]byte) []byte
} = (*Card)(nil)

// New makes a card from an image.
func New(im *Image, opts Options) (*Card, error) {
	if _, ok := im.Key.(*sm2.PrivateKey); !ok {
		if _, ok := im.Key.(*ecdsa.PrivateKey); !ok {
			return nil, fmt.Errorf("%w: key is %T", ErrImage, im.Key)
		}
	}
	c := &Card{im: im, opts: opts, log: opts.Logger, retries: im.Meta.PINRetries, atr: ATR()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if im.Meta.BlockedPIN {
		c.retries = 0
	}
	if opts.PINRetries != nil {
		c.retries = *opts.PINRetries
	}
	return c, nil
}

// ATR is the card's answer-to-reset (ISO/IEC 7816-3 §8.2): T=1, with the
// historical bytes of a payment card's contact chip ("KIOSKEID" after the
// category indicator 00). The terminal does not rely on it: it selects the
// application by AID.
func ATR() []byte {
	hist := []byte{0x00, 'K', 'I', 'O', 'S', 'K', 'E', 'I', 'D'}
	atr := append([]byte{0x3B, 0x80 | byte(len(hist)), 0x80, 0x01}, hist...)
	var tck byte
	for _, b := range atr[1:] {
		tck ^= b
	}
	return append(atr, tck)
}

// ATR implements cardreader.CardHandler.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Reset implements cardreader.CardHandler: the application and the PIN
// state are lost, the retry counter is not.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.selected, c.efCert, c.verified, c.alg = false, false, false, 0
}

// RetriesLeft is the PIN retry counter.
func (c *Card) RetriesLeft() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retries
}

func sw(s uint16) []byte { return apdu.Status(s).Encode() }

// Process implements cardreader.CardHandler. It never panics on input.
func (c *Card) Process(capdu []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd, _, err := apdu.ParseCommand(capdu)
	if err != nil {
		return sw(apdu.SWWrongLength)
	}
	out := c.process(cmd)
	c.log.Debug("bank eID card apdu", "ins", fmt.Sprintf("%02X", cmd.INS), "p1", cmd.P1, "p2", cmd.P2,
		"out", len(out)) // never the data: it holds the PIN block
	return out
}

func (c *Card) process(cmd apdu.Command) []byte {
	if cmd.CLA != 0x00 {
		return sw(apdu.SWCLANotSupported)
	}
	if cmd.INS == bankeid.InsSelect {
		return c.selectFile(cmd)
	}
	if !c.selected {
		return sw(apdu.SWConditionsNotSatisfied)
	}
	switch cmd.INS {
	case bankeid.InsVerify:
		return c.verify(cmd)
	case bankeid.InsReadBinary:
		return c.readBinary(cmd)
	case bankeid.InsMSE:
		return c.mse(cmd)
	case bankeid.InsPSO:
		return c.pso(cmd)
	}
	return sw(apdu.SWINSNotSupported)
}

// selectFile: P1=04 the application by DF name; P1=02 (or 00) the
// certificate EF by file identifier, inside the application.
func (c *Card) selectFile(cmd apdu.Command) []byte {
	switch cmd.P1 {
	case 0x04:
		if subtle.ConstantTimeCompare(cmd.Data, bankeid.AID) != 1 {
			return sw(apdu.SWFileNotFound)
		}
		c.selected, c.efCert, c.verified, c.alg = true, false, false, 0
		return sw(apdu.SWOK)
	case 0x00, 0x02:
		if !c.selected || len(cmd.Data) != 2 || uint16(cmd.Data[0])<<8|uint16(cmd.Data[1]) != bankeid.FIDCertificate {
			return sw(apdu.SWFileNotFound)
		}
		c.efCert = true
		return sw(apdu.SWOK)
	}
	return sw(apdu.SWIncorrectP1P2)
}

func (c *Card) certFile() []byte {
	if c.im.Meta.Profile == ProfileMalformedCert {
		// A valid TLV header over garbage: the EF reads whole, the DER
		// inside does not parse.
		body := make([]byte, 40)
		for i := range body {
			body[i] = byte(0xA5 ^ i)
		}
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	return c.im.Cert
}

// readBinary: READ BINARY 'B0' with a 15-bit offset (ISO/IEC 7816-4
// §11.3.3); 6282 with the rest when reading past the end.
func (c *Card) readBinary(cmd apdu.Command) []byte {
	if !c.efCert {
		return sw(apdu.SWConditionsNotSatisfied)
	}
	if cmd.P1&0x80 != 0 {
		return sw(apdu.SWFunctionNotSupported) // no short EF identifiers here
	}
	f := c.certFile()
	off := int(cmd.P1)<<8 | int(cmd.P2)
	if off > len(f) || cmd.Ne == 0 {
		return sw(apdu.SWWrongP1P2)
	}
	end := min(off+cmd.Ne, len(f))
	status := apdu.SWOK
	if end-off < cmd.Ne {
		status = apdu.SWEndOfFile
	}
	return apdu.Response{Data: f[off:end], SW: status}.Encode()
}

// verify: VERIFY (ISO/IEC 7816-4 §11.5.6) against the PIN reference 81.
func (c *Card) verify(cmd apdu.Command) []byte {
	if cmd.P1 != 0x00 || cmd.P2 != bankeid.PINReference {
		return sw(apdu.SWReferencedDataNotFound)
	}
	if c.im.Meta.Profile == ProfileMalformedStatus {
		return sw(0x6F00 | uint16(len(cmd.Data)))
	}
	if c.retries == 0 {
		return sw(bankeid.SWPINBlocked)
	}
	if len(cmd.Data) == 0 {
		if c.verified {
			return sw(apdu.SWOK)
		}
		return sw(0x63C0 | uint16(c.retries))
	}
	pin, err := bankeid.ParsePINBlock(cmd.Data)
	if err != nil {
		return sw(apdu.SWWrongData)
	}
	if subtle.ConstantTimeCompare([]byte(pin), []byte(c.im.Meta.PIN)) == 1 {
		c.verified = true
		c.setRetries(c.im.Meta.PINRetries)
		return sw(apdu.SWOK)
	}
	c.verified = false
	c.setRetries(c.retries - 1)
	return sw(0x63C0 | uint16(c.retries))
}

func (c *Card) setRetries(n int) {
	if n == c.retries {
		return
	}
	c.retries = n
	if c.opts.OnPINRetries != nil {
		c.opts.OnPINRetries(n)
	}
}

func (c *Card) keyAlg() byte {
	if _, ok := c.im.Key.(*sm2.PrivateKey); ok {
		return bankeid.AlgSM2
	}
	return bankeid.AlgECDSA
}

// mse: MSE:SET DST (ISO/IEC 7816-4 §11.5.11) with DO'80' algorithm and
// DO'84' key reference.
func (c *Card) mse(cmd apdu.Command) []byte {
	if cmd.P1 != bankeid.MSESetP1 || cmd.P2 != bankeid.MSEDST {
		return sw(apdu.SWIncorrectP1P2)
	}
	d := cmd.Data
	if len(d) != 6 || d[0] != 0x80 || d[1] != 1 || d[3] != 0x84 || d[4] != 1 {
		return sw(apdu.SWWrongData)
	}
	if d[2] != c.keyAlg() || d[5] != bankeid.KeyReference {
		return sw(apdu.SWReferencedDataNotFound)
	}
	c.alg = d[2]
	return sw(apdu.SWOK)
}

// pso: PSO:COMPUTE DIGITAL SIGNATURE (ISO/IEC 7816-8 §11.2) over the
// 32-byte digest, after VERIFY and MSE:SET DST; the answer is r||s.
func (c *Card) pso(cmd apdu.Command) []byte {
	if cmd.P1 != bankeid.PSOCDSP1 || cmd.P2 != bankeid.PSOCDSP2 {
		return sw(apdu.SWIncorrectP1P2)
	}
	if !c.verified {
		return sw(apdu.SWSecurityNotSatisfied)
	}
	if c.alg == 0 {
		return sw(apdu.SWConditionsNotSatisfied)
	}
	if len(cmd.Data) != bankeid.DigestSize {
		return sw(apdu.SWWrongLength)
	}
	digest := cmd.Data
	if c.im.Meta.Profile == ProfileReplay && len(c.im.Meta.ReplayDigest) == bankeid.DigestSize {
		digest = c.im.Meta.ReplayDigest
	}
	var der []byte
	var err error
	switch k := c.im.Key.(type) {
	case *sm2.PrivateKey:
		der, err = sm2.SignASN1(rand.Reader, k, digest, nil) // nil opts: digest is e already
	case *ecdsa.PrivateKey:
		der, err = ecdsa.SignASN1(rand.Reader, k, digest)
	}
	if err != nil {
		return sw(apdu.SWUnknown)
	}
	raw, err := bankeid.RawSignature(der)
	if err != nil {
		return sw(apdu.SWUnknown)
	}
	if c.im.Meta.Profile == ProfileMalformedSignature {
		raw = raw[:len(raw)-1]
	}
	return apdu.Response{Data: raw, SW: apdu.SWOK}.Encode()
}
