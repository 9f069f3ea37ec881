package bac

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/sm"
)

// Card is the chip side of BAC for the virtual card. It answers GET
// CHALLENGE and EXTERNAL AUTHENTICATE (plain commands; the caller routes
// them by INS 84/82) and hands out the secure messaging session on
// success. A challenge is good for one EXTERNAL AUTHENTICATE only. Not
// safe for concurrent use.
type Card struct {
	kEnc, kMac []byte
	rand       io.Reader
	rndIC      []byte
}

// NewCard returns the chip side for the document's MRZ key. rnd supplies
// RND.IC and K.IC (nil: crypto/rand).
func NewCard(key Key, rnd io.Reader) (*Card, error) {
	kEnc, kMac, err := key.Keys()
	if err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Card{kEnc: kEnc, kMac: kMac, rand: rnd}, nil
}

// Reset forgets a pending challenge (card reset).
func (c *Card) Reset() { c.rndIC = nil }

// GetChallenge answers GET CHALLENGE (00 84 00 00 08, 9303-11 §4.3.4.1)
// with a fresh 8-byte RND.IC.
func (c *Card) GetChallenge(cmd apdu.Command) apdu.Response {
	c.rndIC = nil
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return apdu.Status(apdu.SWIncorrectP1P2)
	}
	if cmd.Ne != 8 || len(cmd.Data) != 0 {
		return apdu.Status(apdu.SWWrongLength)
	}
	r := make([]byte, 8)
	if _, err := io.ReadFull(c.rand, r); err != nil {
		return apdu.Status(apdu.SWUnknown)
	}
	c.rndIC = r
	return apdu.Response{Data: append([]byte(nil), r...), SW: apdu.SWOK}
}

// ExternalAuthenticate answers EXTERNAL AUTHENTICATE (§4.3.4.2): it
// checks M_IFD, decrypts E_IFD, checks RND.IC, and answers
// E_IC || M_IC over RND.IC || RND.IFD || K.IC. On success it returns the
// session the card must use from the next command on; on failure 6300
// (or 6985 without a challenge, 6700 for a wrong length) and no session.
func (c *Card) ExternalAuthenticate(cmd apdu.Command) (apdu.Response, *sm.Session) {
	rndIC := c.rndIC
	c.rndIC = nil
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return apdu.Status(apdu.SWIncorrectP1P2), nil
	}
	if rndIC == nil {
		return apdu.Status(apdu.SWConditionsNotSatisfied), nil
	}
	if len(cmd.Data) != 40 {
		return apdu.Status(apdu.SWWrongLength), nil
	}
	s, err := openCryptogram(c.kEnc, c.kMac, cmd.Data)
	if err != nil || subtle.ConstantTimeCompare(s[8:16], rndIC) != 1 {
		return apdu.Status(apdu.SWVerificationFailed), nil
	}
	rndIFD, kIFD := s[:8], s[16:32]
	kIC := make([]byte, 16)
	if _, err := io.ReadFull(c.rand, kIC); err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	out, err := cryptogram(c.kEnc, c.kMac, rndIC, rndIFD, kIC)
	if err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	sess, err := session(kIFD, kIC, rndIC, rndIFD)
	if err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	return apdu.Response{Data: out, SW: apdu.SWOK}, sess
}

// String describes the card for logs without key material.
func (c *Card) String() string { return fmt.Sprintf("bac.Card{challenge pending: %v}", c.rndIC != nil) }
