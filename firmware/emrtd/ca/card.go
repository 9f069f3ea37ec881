package ca

import (
	"bytes"
	"fmt"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/tlv"
)

// Card is the chip side of Chip Authentication for the virtual card: it
// holds the chip's static private key (which for a cloned chip is not the
// one DG14 names) and the ChipAuthenticationInfos it offers. It is not
// safe for concurrent use (the card serialises commands).
type Card struct {
	priv    *pubkey.PrivateKey
	infos   []lds.ChipAuthenticationInfo
	pending *lds.ChipAuthenticationInfo // after MSE:Set AT, before General Authenticate
}

// NewCard returns the chip side for priv and the protocols of DG14.
func NewCard(priv *pubkey.PrivateKey, infos []lds.ChipAuthenticationInfo) (*Card, error) {
	if priv == nil || (priv.EC == nil && priv.DH == nil) {
		return nil, fmt.Errorf("%w: chip key must be ECDH or DH", ErrUnsupported)
	}
	var ok []lds.ChipAuthenticationInfo
	for _, in := range infos {
		p, err := ProtocolByOID(in.Protocol)
		if err != nil {
			continue
		}
		if (p.KeyAgreement == ECDH) == (priv.EC != nil) {
			ok = append(ok, in)
		}
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%w: no ChipAuthenticationInfo fits the chip key", ErrUnsupported)
	}
	return &Card{priv: priv, infos: ok}, nil
}

// Reset forgets a half-done protocol run.
func (c *Card) Reset() { c.pending = nil }

// find returns the offered protocol matching the cipher class and key
// reference.
func (c *Card) find(match func(Protocol) bool, keyDO []byte, haveKeyDO bool) (*lds.ChipAuthenticationInfo, bool) {
	for i, in := range c.infos {
		p, _ := ProtocolByOID(in.Protocol)
		if !match(p) {
			continue
		}
		if haveKeyDO && (!in.HasKeyID || !bytes.Equal(keyRef(in.KeyID), keyDO)) {
			continue
		}
		return &c.infos[i], true
	}
	return nil, false
}

// SetKAT answers MSE:Set KAT (00 22 41 A6, 9303-11 §6.2.4.1) for the 3DES
// protocols. On success it returns the session the card must switch to
// after protecting this response with the old one.
func (c *Card) SetKAT(cmd apdu.Command) (apdu.Response, *sm.Session) {
	c.pending = nil
	if cmd.P1 != 0x41 || cmd.P2 != 0xA6 {
		return apdu.Status(apdu.SWIncorrectP1P2), nil
	}
	objs, err := tlv.ParseAll(cmd.Data)
	if err != nil {
		return apdu.Status(apdu.SWWrongData), nil
	}
	pub, ok := tlv.Find(objs, 0x91)
	if !ok {
		return apdu.Status(apdu.SWWrongData), nil
	}
	kdo, haveKey := tlv.Find(objs, 0x84)
	in, ok := c.find(func(p Protocol) bool { return p.Cipher.BlockSize() == 8 }, kdo.Value, haveKey)
	if !ok {
		return apdu.Status(apdu.SWReferencedDataNotFound), nil
	}
	return c.agree(*in, pub.Value)
}

// SetAT answers MSE:Set AT for Chip Authentication (00 22 41 A4, 9303-11
// §6.2.4.2): DO'80' names the protocol, DO'84' the key.
func (c *Card) SetAT(cmd apdu.Command) apdu.Response {
	c.pending = nil
	if cmd.P1 != 0x41 || cmd.P2 != 0xA4 {
		return apdu.Status(apdu.SWIncorrectP1P2)
	}
	objs, err := tlv.ParseAll(cmd.Data)
	if err != nil {
		return apdu.Status(apdu.SWWrongData)
	}
	oid, ok := tlv.Find(objs, 0x80)
	if !ok {
		return apdu.Status(apdu.SWWrongData)
	}
	kdo, haveKey := tlv.Find(objs, 0x84)
	in, ok := c.find(func(p Protocol) bool {
		return p.Cipher.BlockSize() == 16 && bytes.Equal(oidValue(p.OID), oid.Value)
	}, kdo.Value, haveKey)
	if !ok {
		return apdu.Status(apdu.SWReferencedDataNotFound)
	}
	c.pending = in
	return apdu.Status(apdu.SWOK)
}

// Pending reports whether MSE:Set AT selected Chip Authentication, so
// the next General Authenticate belongs to it.
func (c *Card) Pending() bool { return c.pending != nil }

// GeneralAuthenticate answers the General Authenticate after MSE:Set AT
// (7C{80 ephemeral key} → empty 7C) and returns the new session.
func (c *Card) GeneralAuthenticate(cmd apdu.Command) (apdu.Response, *sm.Session) {
	in := c.pending
	c.pending = nil
	if in == nil {
		return apdu.Status(apdu.SWConditionsNotSatisfied), nil
	}
	if cmd.P1 != 0 || cmd.P2 != 0 || cmd.CLA&0x10 != 0 {
		return apdu.Status(apdu.SWIncorrectP1P2), nil
	}
	inner, err := tlv.Unwrap(cmd.Data, 0x7C)
	if err != nil {
		return apdu.Status(apdu.SWWrongData), nil
	}
	objs, err := tlv.ParseAll(inner)
	if err != nil {
		return apdu.Status(apdu.SWWrongData), nil
	}
	pub, ok := tlv.Find(objs, 0x80)
	if !ok {
		return apdu.Status(apdu.SWWrongData), nil
	}
	resp, sess := c.agree(*in, pub.Value)
	if sess != nil {
		resp.Data = []byte{0x7C, 0x00}
	}
	return resp, sess
}

func (c *Card) agree(in lds.ChipAuthenticationInfo, peer []byte) (apdu.Response, *sm.Session) {
	p, err := ProtocolByOID(in.Protocol)
	if err != nil {
		return apdu.Status(apdu.SWReferencedDataNotFound), nil
	}
	var k []byte
	if c.priv.EC != nil {
		k, err = ecdhSecret(c.priv.EC.Public.Curve, c.priv.EC.D, peer)
	} else {
		k, err = dhSecret(c.priv.DH.Public.Params, c.priv.DH.X, peer)
	}
	if err != nil {
		return apdu.Status(apdu.SWWrongData), nil
	}
	defer clear(k)
	sess, err := sessionFor(p.Cipher, k)
	if err != nil {
		return apdu.Status(apdu.SWUnknown), nil
	}
	return apdu.Status(apdu.SWOK), sess
}
