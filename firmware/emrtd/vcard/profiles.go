package vcard

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/tlv"
)

// Hostile and defective chip behaviours, selected by name in card.json's
// "profile" (comma-separated with the issuer's defect names, which this
// package ignores). They model what terminals meet in the field; each
// must end in its own reason on the terminal side, never a panic or a
// hang.
const (
	// ProfilePulled: the card is pulled out while DG2 is being read
	// (after the first READ BINARY of DG2). Removed() is closed; the
	// vpcd bridge closes the connection, an in-process transport reports
	// the card gone.
	ProfilePulled = "pulled"
	// ProfileMalformedTLV: DG1 has an invalid length encoding
	// (indefinite form '80', not allowed in the LDS's DER).
	ProfileMalformedTLV = "malformed-tlv"
	// ProfileOverlongEF: DG1's header claims 64 bytes more than the file
	// holds.
	ProfileOverlongEF = "overlong-ef"
	// ProfileEndlessChaining: reading DG2 starts a response chain that
	// never ends (61xx after every GET RESPONSE).
	ProfileEndlessChaining = "endless-61xx"
	// ProfileWrongMAC: the secure messaging MAC of the responses to READ
	// BINARY of DG1 is wrong.
	ProfileWrongMAC = "wrong-mac"
	// ProfileWrongResponse: asked for DG1, the chip answers with the data
	// of another file (EF.COM), correctly protected.
	ProfileWrongResponse = "wrong-response"
	// ProfileReplayedResponse: the first READ BINARY of DG1 is answered
	// with the previous protected response replayed (an old SSC).
	ProfileReplayedResponse = "replayed-response"
	// ProfilePACECAMTampered: a PACE-CAM chip whose Encrypted Chip
	// Authentication Data (DO'8A' of the last General Authenticate) is
	// altered on the way: the secure messaging keys hold, but CA_IC no
	// longer proves EF.CardSecurity's key (9303-11 §4.4.3.5.2).
	ProfilePACECAMTampered = "pace-cam-tampered"
)

// HostileProfiles lists the chip behaviours above.
func HostileProfiles() []string {
	return []string{ProfilePulled, ProfileMalformedTLV, ProfileOverlongEF, ProfileEndlessChaining,
		ProfileWrongMAC, ProfileWrongResponse, ProfileReplayedResponse, ProfilePACECAMTampered}
}

// hostile is the state of the chip behaviours a profile switched on.
type hostile struct {
	on map[string]bool

	removeOnce sync.Once
	removed    chan struct{}
	dg2Reads   int

	endless bool // a never-ending chain is running

	lastRead []byte // the last protected READ BINARY response
	replayed bool
}

func newHostile(profile string) *hostile {
	h := &hostile{on: map[string]bool{}, removed: make(chan struct{})}
	for _, p := range strings.Split(profile, ",") {
		p = strings.TrimSpace(p)
		if slices.Contains(HostileProfiles(), p) {
			h.on[p] = true
		}
	}
	return h
}

// Removed is closed when a ProfilePulled card has been pulled out.
func (c *Card) Removed() <-chan struct{} { return c.hostile.removed }

// mutateFiles applies the file defects of the profile to the card's copy
// of the application's files (the SOD stays the genuine one).
func (h *hostile) mutateFiles(app map[uint16][]byte) error {
	dg1, ok := app[0x0101]
	if !ok && (h.on[ProfileMalformedTLV] || h.on[ProfileOverlongEF] || h.on[ProfileWrongResponse]) {
		return fmt.Errorf("profile needs DG1")
	}
	switch {
	case h.on[ProfileMalformedTLV]:
		v, err := tlv.Unwrap(dg1, lds.TagDG1)
		if err != nil {
			return err
		}
		app[0x0101] = tlv.Concat([]byte{0x61, 0x80}, v, []byte{0, 0})
	case h.on[ProfileOverlongEF]:
		v, err := tlv.Unwrap(dg1, lds.TagDG1)
		if err != nil {
			return err
		}
		app[0x0101] = tlv.Concat([]byte{0x61}, tlv.EncodeLength(len(v)+64), v)
	case h.on[ProfileWrongResponse]:
		com, ok := app[lds.FIDCOM]
		if !ok {
			return fmt.Errorf("profile needs EF.COM")
		}
		app[0x0101] = append([]byte(nil), com...)
	}
	return nil
}

// after runs once the chip produced out for the plain command cmd (c.ef
// is the file the command read); it returns what leaves the chip.
func (c *Card) afterHostile(cmd apdu.Command, out []byte) []byte {
	h := c.hostile
	if len(h.on) == 0 {
		return out
	}
	read := cmd.INS == insReadBinary || cmd.INS == insReadBinaryOdd
	secured := c.sess != nil
	switch {
	case h.on[ProfilePulled] && read && c.ef == 0x0102:
		h.dg2Reads++
		if h.dg2Reads >= 2 {
			h.removeOnce.Do(func() { close(h.removed) })
		}
	case h.on[ProfileEndlessChaining] && read && c.ef == 0x0102:
		h.endless = true
		c.pending = nil
		return status(0x6110)
	case h.on[ProfileEndlessChaining] && h.endless && cmd.INS == insGetResponse:
		return append(make([]byte, 16), 0x61, 0x10)
	case h.on[ProfileWrongMAC] && read && secured && c.ef == 0x0101 && len(out) >= 12:
		out = append([]byte(nil), out...)
		out[len(out)-3] ^= 0x01 // last byte of DO'8E'
	case h.on[ProfilePACECAMTampered] && cmd.INS == insGeneralAuthenticate:
		out = tamperCAM(out)
	case h.on[ProfileReplayedResponse] && read && secured:
		if c.ef == 0x0101 && !h.replayed && h.lastRead != nil {
			h.replayed = true
			return append([]byte(nil), h.lastRead...)
		}
		h.lastRead = append([]byte(nil), out...)
	}
	if cmd.INS != insGetResponse {
		h.endless = false
	}
	return out
}

// tamperCAM flips a bit in the last byte of DO'8A' of a plain General
// Authenticate answer '7C'; any other answer (the earlier PACE steps,
// chip authentication under secure messaging) passes unchanged.
func tamperCAM(out []byte) []byte {
	if len(out) < 2 {
		return out
	}
	dyn, err := tlv.Unwrap(out[:len(out)-2], 0x7C)
	if err != nil {
		return out
	}
	objs, err := tlv.ParseAll(dyn)
	if err != nil {
		return out
	}
	var parts [][]byte
	found := false
	for _, o := range objs {
		v := o.Value
		if o.Tag == 0x8A && len(v) > 0 {
			v = append([]byte(nil), v...)
			v[len(v)-1] ^= 0x01
			found = true
		}
		parts = append(parts, tlv.Encode(o.Tag, v))
	}
	if !found {
		return out
	}
	return append(tlv.Encode(0x7C, tlv.Concat(parts...)), out[len(out)-2:]...)
}
