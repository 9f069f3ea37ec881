// Package sm implements ICAO Doc 9303-11 §9.8 secure messaging for both
// ends of the channel: the terminal protects commands and checks responses
// (Wrap/Unwrap, an apdu.Wrapper), the card checks commands and protects
// responses (UnwrapCommand/WrapResponse, used by the virtual card).
//
// Data objects (9303-11 §9.8.4–§9.8.6): DO'87' (padding-content indicator
// 01 || cryptogram; even INS) or DO'85' (cryptogram; odd INS), DO'97' (Le),
// DO'99' (processing status), DO'8E' (8-byte MAC). 3DES sessions (BAC,
// PACE-3DES) use an 8-byte SSC and a zero IV, AES sessions (PACE) a
// 16-byte SSC and IV = E(KSenc, SSC) (§9.8.6.1). The SSC is incremented
// before every command and every response.
//
// A Session is not safe for concurrent use (apdu.Channel serialises). After
// any check failure it is dead: every further call fails with
// ErrSessionFailed, as the card aborts secure messaging on such errors and
// the counters can no longer be trusted to agree.
package sm

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/tlv"
)

// Errors. Unwrap errors wrap one of these.
var (
	ErrBadMAC           = errors.New("sm: MAC check failed")
	ErrMissingDO        = errors.New("sm: mandatory secure messaging data object missing")
	ErrMalformed        = errors.New("sm: malformed secure messaging data")
	ErrBadPadding       = errors.New("sm: bad padding in decrypted data")
	ErrNotProtected     = errors.New("sm: command is not protected (CLA lacks '0C')")
	ErrAlreadyProtected = errors.New("sm: command already protected")
	ErrSessionFailed    = errors.New("sm: session failed earlier")
)

// Session is one secure messaging session.
type Session struct {
	c      smcrypto.Cipher
	enc    cipher.Block
	macKey []byte
	macBlk cipher.Block // AES only: CMAC block cipher
	ssc    []byte
	oddINS bool // card side: the last unwrapped command had an odd INS
	failed bool
}

var _ apdu.Wrapper = (*Session)(nil)

// New returns a session with the session keys KSenc, KSmac and the
// initial send sequence counter (nil means zero, as after PACE; BAC
// derives it from the nonces, 9303-11 §9.8.2).
func New(c smcrypto.Cipher, ksEnc, ksMac, ssc []byte) (*Session, error) {
	enc, err := smcrypto.NewBlock(c, ksEnc)
	if err != nil {
		return nil, fmt.Errorf("sm: KSenc: %w", err)
	}
	if len(ksMac) != c.KeySize() {
		return nil, fmt.Errorf("sm: KSmac: %w", smcrypto.ErrKeySize)
	}
	s := &Session{c: c, enc: enc, macKey: append([]byte(nil), ksMac...)}
	if c != smcrypto.TDES {
		if s.macBlk, err = smcrypto.NewBlock(c, ksMac); err != nil {
			return nil, fmt.Errorf("sm: KSmac: %w", err)
		}
	}
	s.ssc = make([]byte, c.BlockSize())
	if ssc != nil {
		if len(ssc) != len(s.ssc) {
			return nil, fmt.Errorf("sm: SSC of %d bytes, want %d", len(ssc), len(s.ssc))
		}
		copy(s.ssc, ssc)
	}
	return s, nil
}

// Cipher returns the session's cipher.
func (s *Session) Cipher() smcrypto.Cipher { return s.c }

// SSC returns a copy of the current send sequence counter.
func (s *Session) SSC() []byte { return append([]byte(nil), s.ssc...) }

// Failed reports whether a check failed and the session is dead.
func (s *Session) Failed() bool { return s.failed }

// Wrap protects a command (terminal side, 9303-11 §9.8.4/§9.8.6):
// CLA |= '0C', data encrypted into DO'87'/'85', Le into DO'97', MAC over
// SSC || padded header || DOs into DO'8E'; the protected command carries
// Le '00' (or '0000' when extended length is needed).
func (s *Session) Wrap(cmd apdu.Command) (apdu.Command, error) {
	if s.failed {
		return apdu.Command{}, ErrSessionFailed
	}
	if cmd.CLA&0x0C == 0x0C {
		return apdu.Command{}, ErrAlreadyProtected
	}
	s.incSSC()
	cla := cmd.CLA | 0x0C
	do87, err := s.dataObject(cmd.Data, cmd.INS&1 == 1)
	if err != nil {
		return apdu.Command{}, err
	}
	var do97 []byte
	if cmd.Ne > 0 {
		do97 = tlv.Encode(0x97, encodeLe(cmd.Ne))
	}
	hdr := smcrypto.Pad([]byte{cla, cmd.INS, cmd.P1, cmd.P2}, s.c.BlockSize())
	mac, err := s.mac(tlv.Concat(s.ssc, hdr, do87, do97))
	if err != nil {
		return apdu.Command{}, err
	}
	data := tlv.Concat(do87, do97, tlv.Encode(0x8E, mac))
	ne := apdu.MaxShortNe
	if cmd.Ne > apdu.MaxShortNe || len(data) > apdu.MaxShortLc {
		ne = apdu.MaxExtendedNe
	}
	return apdu.Command{CLA: cla, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: data, Ne: ne}, nil
}

// Unwrap checks and decrypts a protected response (terminal side,
// 9303-11 §9.8.5). The MAC is checked (constant time) before anything is
// decrypted; the returned SW is the authenticated one from DO'99'.
//
// A response without data and with an error status (not 9000, not 61xx)
// is passed through unauthenticated: cards answer secure messaging errors
// (6987/6988) in plain, and a forged error status achieves nothing an
// attacker on the channel could not achieve by dropping the response.
// A plain 6987/6988 also ends the session (the card has aborted secure
// messaging). A plain 9000 is rejected (ErrMissingDO).
func (s *Session) Unwrap(r apdu.Response) (apdu.Response, error) {
	if s.failed {
		return apdu.Response{}, ErrSessionFailed
	}
	s.incSSC()
	if len(r.Data) == 0 {
		if r.SW == apdu.SWOK || r.SW>>8 == 0x61 {
			return apdu.Response{}, s.fail(fmt.Errorf("%w: unprotected %04X response", ErrMissingDO, r.SW))
		}
		if r.SW == apdu.SWSMDataObjectsMissing || r.SW == apdu.SWSMDataObjectsIncorrect {
			s.failed = true // the card has aborted secure messaging
		}
		return apdu.Response{SW: r.SW}, nil
	}
	dos, err := parseDOs(r.Data, false)
	if err != nil {
		return apdu.Response{}, s.fail(err)
	}
	if dos.status == nil {
		return apdu.Response{}, s.fail(fmt.Errorf("%w: DO'99'", ErrMissingDO))
	}
	if err := s.checkMAC(tlv.Concat(s.ssc, r.Data[:dos.macOffset]), dos.mac); err != nil {
		return apdu.Response{}, s.fail(err)
	}
	sw := uint16(dos.status[0])<<8 | uint16(dos.status[1])
	plain, err := s.decrypt(dos)
	if err != nil {
		return apdu.Response{}, s.fail(err)
	}
	return apdu.Response{Data: plain, SW: sw}, nil
}

// UnwrapCommand checks and decrypts a protected command (card side). The
// result is the plain command with CLA &^ '0C' and Ne from DO'97'. On
// error the card should answer ErrorStatus(err) unprotected and drop the
// session.
func (s *Session) UnwrapCommand(cmd apdu.Command) (apdu.Command, error) {
	if s.failed {
		return apdu.Command{}, ErrSessionFailed
	}
	if cmd.CLA&0x0C != 0x0C {
		s.failed = true
		return apdu.Command{}, ErrNotProtected
	}
	s.incSSC()
	dos, err := parseDOs(cmd.Data, true)
	if err != nil {
		return apdu.Command{}, s.fail(err)
	}
	hdr := smcrypto.Pad([]byte{cmd.CLA, cmd.INS, cmd.P1, cmd.P2}, s.c.BlockSize())
	if err := s.checkMAC(tlv.Concat(s.ssc, hdr, cmd.Data[:dos.macOffset]), dos.mac); err != nil {
		return apdu.Command{}, s.fail(err)
	}
	plain, err := s.decrypt(dos)
	if err != nil {
		return apdu.Command{}, s.fail(err)
	}
	ne := 0
	switch len(dos.le) {
	case 0:
		if dos.le != nil {
			return apdu.Command{}, s.fail(fmt.Errorf("%w: empty DO'97'", ErrMalformed))
		}
	case 1:
		ne = int(dos.le[0])
		if ne == 0 {
			ne = apdu.MaxShortNe
		}
	case 2:
		ne = int(dos.le[0])<<8 | int(dos.le[1])
		if ne == 0 {
			ne = apdu.MaxExtendedNe
		}
	default:
		return apdu.Command{}, s.fail(fmt.Errorf("%w: DO'97' of %d bytes", ErrMalformed, len(dos.le)))
	}
	s.oddINS = cmd.INS&1 == 1
	return apdu.Command{CLA: cmd.CLA &^ 0x0C, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: plain, Ne: ne}, nil
}

// WrapResponse protects the card's response to the command last passed
// to UnwrapCommand (card side): data into DO'87' (DO'85' if that command's
// INS was odd), the SW into DO'99', MAC into DO'8E'.
func (s *Session) WrapResponse(r apdu.Response) (apdu.Response, error) {
	if s.failed {
		return apdu.Response{}, ErrSessionFailed
	}
	s.incSSC()
	do87, err := s.dataObject(r.Data, s.oddINS)
	if err != nil {
		return apdu.Response{}, err
	}
	do99 := tlv.Encode(0x99, []byte{byte(r.SW >> 8), byte(r.SW)})
	mac, err := s.mac(tlv.Concat(s.ssc, do87, do99))
	if err != nil {
		return apdu.Response{}, err
	}
	return apdu.Response{Data: tlv.Concat(do87, do99, tlv.Encode(0x8E, mac)), SW: r.SW}, nil
}

// ErrorStatus maps an UnwrapCommand error to the status word the card
// answers (ISO/IEC 7816-4 §5.1.3): 6987 for missing DOs or an unprotected
// command, 6988 for incorrect ones.
func ErrorStatus(err error) uint16 {
	switch {
	case errors.Is(err, ErrMissingDO), errors.Is(err, ErrNotProtected):
		return apdu.SWSMDataObjectsMissing
	case err == nil:
		return apdu.SWOK
	}
	return apdu.SWSMDataObjectsIncorrect
}

func (s *Session) fail(err error) error {
	s.failed = true
	return err
}

// incSSC increments the big-endian counter (wrapping, as a card would).
func (s *Session) incSSC() {
	for i := len(s.ssc) - 1; i >= 0; i-- {
		s.ssc[i]++
		if s.ssc[i] != 0 {
			return
		}
	}
}

func (s *Session) iv() []byte {
	iv := make([]byte, s.c.BlockSize())
	if s.c != smcrypto.TDES { // §9.8.6.1: IV = E(KSenc, SSC)
		s.enc.Encrypt(iv, s.ssc)
	}
	return iv
}

// dataObject encrypts data into DO'87' (or DO'85' for odd INS); nil for
// no data.
func (s *Session) dataObject(data []byte, odd bool) ([]byte, error) {
	if len(data) == 0 {
		return nil, nil
	}
	ct, err := smcrypto.EncryptCBCBlock(s.enc, s.iv(), smcrypto.Pad(data, s.c.BlockSize()))
	if err != nil {
		return nil, err
	}
	if odd {
		return tlv.Encode(0x85, ct), nil
	}
	return tlv.Encode(0x87, append([]byte{0x01}, ct...)), nil
}

func (s *Session) mac(data []byte) ([]byte, error) {
	padded := smcrypto.Pad(data, s.c.BlockSize())
	if s.macBlk != nil {
		return smcrypto.CMAC(s.macBlk, padded)[:8], nil
	}
	return smcrypto.RetailMAC(s.macKey, padded)
}

func (s *Session) checkMAC(data, got []byte) error {
	want, err := s.mac(data)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(want, got) != 1 {
		return ErrBadMAC
	}
	return nil
}

func (s *Session) decrypt(d dataObjects) ([]byte, error) {
	if d.crypto == nil {
		return nil, nil
	}
	ct := d.crypto
	if d.cryptoTag == 0x87 {
		if len(ct) == 0 || ct[0] != 0x01 {
			return nil, fmt.Errorf("%w: DO'87' padding-content indicator", ErrMalformed)
		}
		ct = ct[1:]
	}
	if len(ct) == 0 || len(ct)%s.c.BlockSize() != 0 {
		return nil, fmt.Errorf("%w: cryptogram of %d bytes", ErrMalformed, len(ct))
	}
	pt, err := smcrypto.DecryptCBCBlock(s.enc, s.iv(), ct)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	plain, err := smcrypto.Unpad(pt)
	if err != nil {
		return nil, ErrBadPadding
	}
	return plain, nil
}

// dataObjects are the parsed SM DOs of one message.
type dataObjects struct {
	cryptoTag tlv.Tag
	crypto    []byte // DO'87'/'85' value
	le        []byte // DO'97' value (command)
	status    []byte // DO'99' value (response)
	mac       []byte // DO'8E' value
	macOffset int    // where DO'8E' starts: the MAC covers everything before
}

// parseDOs parses the SM DOs in the order 9303-11 §9.8 prescribes:
// [87|85] [97 (command) | 99 (response)] 8E, DO'8E' last.
func parseDOs(b []byte, command bool) (dataObjects, error) {
	var d dataObjects
	rest := b
	stage := 0 // 0: crypto allowed, 1: 97/99 allowed, 2: only 8E
	for len(rest) > 0 {
		off := len(b) - len(rest)
		o, r, err := tlv.Read(rest)
		if err != nil {
			return d, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		rest = r
		switch {
		case (o.Tag == 0x87 || o.Tag == 0x85) && stage == 0:
			d.cryptoTag, d.crypto, stage = o.Tag, o.Value, 1
		case o.Tag == 0x97 && command && stage <= 1:
			d.le, stage = o.Value, 2
			if d.le == nil {
				d.le = []byte{}
			}
		case o.Tag == 0x99 && !command && stage <= 1:
			if len(o.Value) != 2 {
				return d, fmt.Errorf("%w: DO'99' of %d bytes", ErrMalformed, len(o.Value))
			}
			d.status, stage = o.Value, 2
		case o.Tag == 0x8E:
			if len(o.Value) != 8 {
				return d, fmt.Errorf("%w: DO'8E' of %d bytes", ErrMalformed, len(o.Value))
			}
			if len(rest) != 0 {
				return d, fmt.Errorf("%w: %d bytes after DO'8E'", ErrMalformed, len(rest))
			}
			d.mac, d.macOffset = o.Value, off
			return d, nil
		default:
			return d, fmt.Errorf("%w: unexpected DO'%s'", ErrMalformed, o.Tag)
		}
	}
	return d, fmt.Errorf("%w: DO'8E'", ErrMissingDO)
}

// encodeLe is the DO'97' value: one byte up to 256 (256 → 00), else two
// (65536 → 0000).
func encodeLe(ne int) []byte {
	if ne <= apdu.MaxShortNe {
		return []byte{byte(ne)}
	}
	return []byte{byte(ne >> 8), byte(ne)}
}
