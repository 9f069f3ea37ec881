// Package apdu implements the ISO/IEC 7816-4 command/response layer the
// eMRTD protocols of ICAO Doc 9303 run on: command encoding in the short and
// extended forms (ISO/IEC 7816-4 §5.1, cases 1–4), response parsing and
// status words as typed errors (§5.1.3), and a Channel that chains 61xx
// responses with GET RESPONSE, re-sends once on 6Cxx, counts traffic and
// applies secure messaging through a Wrapper hook (9303-11 §9.8).
package apdu

import (
	"errors"
	"fmt"
)

// Length limits of ISO/IEC 7816-4 §5.1.
const (
	MaxShortLc    = 255
	MaxShortNe    = 256
	MaxExtendedLc = 65535
	MaxExtendedNe = 65536
)

// Errors.
var (
	// ErrTooLong: the command does not fit the requested encoding.
	ErrTooLong = errors.New("apdu: command too long for the encoding")
	// ErrMalformedCommand: a C-APDU that is none of the §5.1 cases.
	ErrMalformedCommand = errors.New("apdu: malformed command")
	// ErrShortResponse: an R-APDU shorter than the two status bytes.
	ErrShortResponse = errors.New("apdu: response shorter than 2 bytes")
)

// Command is a C-APDU. Ne is the maximum number of response bytes expected:
// 0 means no Le field; 256 is encoded as Le '00' in the short form and
// 65536 as '0000' in the extended form.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	Ne               int
}

// Fits reports whether the command fits the short form.
func (c Command) Fits() bool { return len(c.Data) <= MaxShortLc && c.Ne <= MaxShortNe }

// Encode returns the command's bytes. extended says whether the extended
// form may be used; it is chosen only when Data or Ne do not fit the short
// form (cards that accept extended lengths accept short ones too, while the
// reverse does not hold).
func (c Command) Encode(extended bool) ([]byte, error) {
	if c.Ne < 0 || c.Ne > MaxExtendedNe || len(c.Data) > MaxExtendedLc {
		return nil, fmt.Errorf("%w: Lc %d, Ne %d", ErrTooLong, len(c.Data), c.Ne)
	}
	hdr := []byte{c.CLA, c.INS, c.P1, c.P2}
	if c.Fits() {
		out := append(hdr, make([]byte, 0, len(c.Data)+2)...)
		if len(c.Data) > 0 { // cases 3S, 4S
			out = append(out, byte(len(c.Data)))
			out = append(out, c.Data...)
		}
		if c.Ne > 0 { // cases 2S, 4S
			out = append(out, byte(c.Ne)) // 256 → 00
		}
		return out, nil
	}
	if !extended {
		return nil, fmt.Errorf("%w: Lc %d, Ne %d need extended length", ErrTooLong, len(c.Data), c.Ne)
	}
	out := append(hdr, make([]byte, 0, len(c.Data)+5)...)
	if len(c.Data) > 0 { // cases 3E, 4E: 00 Lc1 Lc2 data [Le1 Le2]
		out = append(out, 0, byte(len(c.Data)>>8), byte(len(c.Data)))
		out = append(out, c.Data...)
		if c.Ne > 0 {
			out = append(out, byte(c.Ne>>8), byte(c.Ne)) // 65536 → 0000
		}
		return out, nil
	}
	// case 2E: 00 Le1 Le2
	return append(out, 0, byte(c.Ne>>8), byte(c.Ne)), nil
}

// ParseCommand decodes a C-APDU (ISO/IEC 7816-4 §5.1) and reports whether it
// used the extended form. It is the card side's entry point and rejects
// anything that is not exactly one of the cases 1, 2S, 3S, 4S, 2E, 3E, 4E.
func ParseCommand(b []byte) (cmd Command, extended bool, err error) {
	if len(b) < 4 {
		return Command{}, false, fmt.Errorf("%w: %d bytes", ErrMalformedCommand, len(b))
	}
	cmd = Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return cmd, false, nil
	case len(body) == 1: // case 2S
		cmd.Ne = neShort(body[0])
		return cmd, false, nil
	case body[0] != 0: // case 3S or 4S
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
			cmd.Data = body[1:]
		case 2 + lc:
			cmd.Data = body[1 : 1+lc]
			cmd.Ne = neShort(body[1+lc])
		default:
			return Command{}, false, fmt.Errorf("%w: Lc %d with %d body bytes", ErrMalformedCommand, lc, len(body))
		}
		return cmd, false, nil
	case len(body) == 3: // case 2E
		cmd.Ne = neExt(body[1], body[2])
		return cmd, true, nil
	case len(body) > 3: // case 3E or 4E
		lc := int(body[1])<<8 | int(body[2])
		if lc == 0 {
			return Command{}, false, fmt.Errorf("%w: extended Lc 0", ErrMalformedCommand)
		}
		switch len(body) {
		case 3 + lc:
			cmd.Data = body[3:]
		case 5 + lc:
			cmd.Data = body[3 : 3+lc]
			cmd.Ne = neExt(body[3+lc], body[4+lc])
		default:
			return Command{}, false, fmt.Errorf("%w: extended Lc %d with %d body bytes", ErrMalformedCommand, lc, len(body))
		}
		return cmd, true, nil
	}
	return Command{}, false, fmt.Errorf("%w: %d body bytes starting with 00", ErrMalformedCommand, len(body))
}

func neShort(b byte) int {
	if b == 0 {
		return MaxShortNe
	}
	return int(b)
}

func neExt(hi, lo byte) int {
	n := int(hi)<<8 | int(lo)
	if n == 0 {
		return MaxExtendedNe
	}
	return n
}

// Response is an R-APDU.
type Response struct {
	Data []byte
	SW   uint16
}

// ParseResponse splits an R-APDU into data and status word. Data aliases b.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: %d bytes", ErrShortResponse, len(b))
	}
	n := len(b) - 2
	return Response{Data: b[:n:n], SW: uint16(b[n])<<8 | uint16(b[n+1])}, nil
}

// Encode returns data || SW1 SW2.
func (r Response) Encode() []byte {
	out := make([]byte, 0, len(r.Data)+2)
	out = append(out, r.Data...)
	return append(out, byte(r.SW>>8), byte(r.SW))
}

// SW1 and SW2 are the status bytes.
func (r Response) SW1() byte { return byte(r.SW >> 8) }

// SW2 is the second status byte.
func (r Response) SW2() byte { return byte(r.SW) }

// OK reports SW 9000.
func (r Response) OK() bool { return r.SW == SWOK }

// Err is nil for 9000 and a *StatusError otherwise.
func (r Response) Err() error {
	if r.SW == SWOK {
		return nil
	}
	return &StatusError{SW: r.SW}
}

// Status returns the response to a card-side command: just the SW.
func Status(sw uint16) Response { return Response{SW: sw} }
