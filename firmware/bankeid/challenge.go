package bankeid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"kiosk/firmware/emrtd/tlv"
)

// Challenge is what the holder signs: the kiosk, the transaction, its
// amount and currency, the time and a fresh nonce. The card signs a digest
// of its encoding (profile.go), so the signature commits to every field and
// cannot be replayed for another transaction.
type Challenge struct {
	KioskID       string
	TransactionID string
	// Amount in the currency's minor units (fen, cents); 0 for a
	// transaction without an amount (opening an account).
	Amount   int64
	Currency string // ISO 4217 alphabetic code, or "" with Amount 0
	Time     time.Time
	Nonce    []byte // NonceSize random bytes from the kiosk
}

// NonceSize is the length of Challenge.Nonce.
const NonceSize = 16

// Challenge encoding: DO'7F71' (constructed) holding, in this order,
// DO'80' profile name, DO'81' kiosk id, DO'82' transaction id, DO'83'
// amount (8 bytes, big-endian, signed), DO'84' currency, DO'85' time (Unix
// seconds, 8 bytes), DO'86' nonce. One encoding per value: the parser
// refuses other orders, duplicates and trailing bytes.
const challengeTag tlv.Tag = 0x7F71

// maxFieldLen bounds the kiosk and transaction ids.
const maxFieldLen = 64

// ErrChallenge is wrapped by every challenge encoding or parsing error.
var ErrChallenge = errors.New("bankeid: malformed challenge")

func (c Challenge) validate() error {
	if c.KioskID == "" || c.TransactionID == "" {
		return fmt.Errorf("%w: kiosk id and transaction id are required", ErrChallenge)
	}
	for _, s := range []string{c.KioskID, c.TransactionID} {
		if len(s) > maxFieldLen || !utf8.ValidString(s) {
			return fmt.Errorf("%w: id of %d bytes (at most %d, UTF-8)", ErrChallenge, len(s), maxFieldLen)
		}
	}
	if c.Amount < 0 {
		return fmt.Errorf("%w: negative amount", ErrChallenge)
	}
	if c.Currency != "" && !isCurrency(c.Currency) {
		return fmt.Errorf("%w: currency %q is not three capital letters", ErrChallenge, c.Currency)
	}
	if c.Amount != 0 && c.Currency == "" {
		return fmt.Errorf("%w: an amount needs a currency", ErrChallenge)
	}
	if len(c.Nonce) != NonceSize {
		return fmt.Errorf("%w: nonce of %d bytes, want %d", ErrChallenge, len(c.Nonce), NonceSize)
	}
	return nil
}

func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range 3 {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// Encode returns the challenge's canonical encoding (the message M).
func (c Challenge) Encode() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	var amount, at [8]byte
	binary.BigEndian.PutUint64(amount[:], uint64(c.Amount))
	binary.BigEndian.PutUint64(at[:], uint64(c.Time.Unix()))
	return tlv.Encode(challengeTag, tlv.Concat(
		tlv.Encode(0x80, []byte(Profile)),
		tlv.Encode(0x81, []byte(c.KioskID)),
		tlv.Encode(0x82, []byte(c.TransactionID)),
		tlv.Encode(0x83, amount[:]),
		tlv.Encode(0x84, []byte(c.Currency)),
		tlv.Encode(0x85, at[:]),
		tlv.Encode(0x86, c.Nonce),
	)), nil
}

// ParseChallenge decodes an encoding made by Encode (the hub reads the
// challenge from the report). It accepts exactly the canonical encoding.
func ParseChallenge(b []byte) (Challenge, error) {
	outer, rest, err := tlv.Read(b)
	if err != nil {
		return Challenge{}, fmt.Errorf("%w: %v", ErrChallenge, err)
	}
	if outer.Tag != challengeTag || len(rest) != 0 {
		return Challenge{}, fmt.Errorf("%w: not one DO'7F71'", ErrChallenge)
	}
	kids, err := tlv.ParseAll(outer.Value)
	if err != nil {
		return Challenge{}, fmt.Errorf("%w: %v", ErrChallenge, err)
	}
	if len(kids) != 7 {
		return Challenge{}, fmt.Errorf("%w: %d data objects, want 7", ErrChallenge, len(kids))
	}
	for i, k := range kids {
		if k.Tag != tlv.Tag(0x80+i) {
			return Challenge{}, fmt.Errorf("%w: DO'%s' where DO'%02X' belongs", ErrChallenge, k.Tag, 0x80+i)
		}
	}
	if string(kids[0].Value) != Profile {
		return Challenge{}, fmt.Errorf("%w: profile %q", ErrChallenge, kids[0].Value)
	}
	if len(kids[3].Value) != 8 || len(kids[5].Value) != 8 {
		return Challenge{}, fmt.Errorf("%w: amount or time not 8 bytes", ErrChallenge)
	}
	c := Challenge{
		KioskID:       string(kids[1].Value),
		TransactionID: string(kids[2].Value),
		Amount:        int64(binary.BigEndian.Uint64(kids[3].Value)),
		Currency:      string(kids[4].Value),
		Time:          time.Unix(int64(binary.BigEndian.Uint64(kids[5].Value)), 0).UTC(),
		Nonce:         bytes.Clone(kids[6].Value),
	}
	if err := c.validate(); err != nil {
		return Challenge{}, err
	}
	// Canonical: re-encoding gives the same bytes (no long-form lengths).
	if again, _ := c.Encode(); !bytes.Equal(again, b) {
		return Challenge{}, fmt.Errorf("%w: not the canonical encoding", ErrChallenge)
	}
	return c, nil
}
