// Package apdu decodes the length fields of command APDUs as laid out in
// ISO/IEC 7816-4:2005 §5.1 (command-response pairs, with §5.1.1 class
// byte and §5.1.2 instruction byte).
// It is internal: the eID layer owns APDU building; the card reader packages
// only need to tell well-formed commands from malformed ones and, for the
// simulated cards, to find the data field and Ne.
package apdu

import (
	"errors"
	"fmt"
)

// Case is the ISO/IEC 7816-4 §5.1 command case.
type Case int

// Cases of §5.1 Table 1: 1 (no data, no Le), 2 (Le only), 3 (data only), 4 (data and Le),
// in short (S) or extended (E) length encoding.
const (
	Case1 Case = iota + 1
	Case2S
	Case3S
	Case4S
	Case2E
	Case3E
	Case4E
)

// Command is a decoded C-APDU. Data aliases the input slice.
type Command struct {
	CLA, INS, P1, P2 byte
	Case             Case
	Data             []byte // command data field (Nc = len(Data))
	Ne               int    // maximum number of response bytes expected, 0 if absent
	Extended         bool
}

// ErrMalformed reports a C-APDU whose length fields do not match one of the
// §5.1 encodings.
var ErrMalformed = errors.New("malformed command APDU")

// Parse decodes b per ISO/IEC 7816-4 §5.1 (Table 1 and the length field rules):
//
//	case 1:  CLA INS P1 P2
//	case 2S: header Le(1)                  Le '00' means Ne = 256
//	case 3S: header Lc(1, 01..FF) data
//	case 4S: header Lc(1) data Le(1)
//	case 2E: header 00 Le(2)               Le '0000' means Ne = 65536
//	case 3E: header 00 Lc(2, 0001..FFFF) data
//	case 4E: header 00 Lc(2) data Le(2)    (extended Lc implies extended Le)
//
// It also rejects the INS values '6X' and '9X', which §5.1.2 declares invalid
// (they would be confused with SW1 under T=0). CLA 'FF' is accepted although
// §5.1.1 calls it invalid, because PC/SC Part 3 uses it for reader pseudo-APDUs.
func Parse(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, fmt.Errorf("%w: %d bytes, the header alone is 4", ErrMalformed, len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	if hi := c.INS & 0xF0; hi == 0x60 || hi == 0x90 {
		return Command{}, fmt.Errorf("%w: INS %02X is invalid (ISO/IEC 7816-4 §5.1.2)", ErrMalformed, c.INS)
	}
	body := b[4:]
	switch {
	case len(body) == 0:
		c.Case = Case1
		return c, nil
	case len(body) == 1:
		c.Case = Case2S
		c.Ne = shortLe(body[0])
		return c, nil
	case body[0] != 0:
		nc := int(body[0])
		switch len(body) {
		case 1 + nc:
			c.Case, c.Data = Case3S, body[1:]
		case 2 + nc:
			c.Case, c.Data, c.Ne = Case4S, body[1:1+nc], shortLe(body[1+nc])
		default:
			return Command{}, fmt.Errorf("%w: short Lc=%d but body has %d bytes", ErrMalformed, nc, len(body))
		}
		return c, nil
	case len(body) == 3:
		c.Case, c.Extended = Case2E, true
		c.Ne = extLe(body[1], body[2])
		return c, nil
	case len(body) < 3:
		// '00' followed by one byte: neither a short Lc (which is 01..FF) nor an extended field.
		return Command{}, fmt.Errorf("%w: %d-byte body starting with 00", ErrMalformed, len(body))
	}
	nc := int(body[1])<<8 | int(body[2])
	if nc == 0 {
		return Command{}, fmt.Errorf("%w: extended Lc is 0000", ErrMalformed)
	}
	c.Extended = true
	switch len(body) {
	case 3 + nc:
		c.Case, c.Data = Case3E, body[3:]
	case 5 + nc:
		c.Case, c.Data, c.Ne = Case4E, body[3:3+nc], extLe(body[3+nc], body[4+nc])
	default:
		return Command{}, fmt.Errorf("%w: extended Lc=%d but body has %d bytes", ErrMalformed, nc, len(body))
	}
	return c, nil
}

func shortLe(b byte) int {
	if b == 0 {
		return 256
	}
	return int(b)
}

func extLe(hi, lo byte) int {
	n := int(hi)<<8 | int(lo)
	if n == 0 {
		return 65536
	}
	return n
}
