// Package atr reads what an eMRTD terminal needs from an Answer-to-Reset:
// the historical bytes (ISO/IEC 7816-3 §8.2) and the card capabilities
// data object in them (ISO/IEC 7816-4 §8.1.1.2.7), which says whether the
// card accepts extended Lc/Le fields. For contactless chips the PC/SC reader
// builds the ATR from the ATS historical bytes (PC/SC part 3 §3.1.3.2.3.1).
package atr

import (
	"errors"
	"fmt"
)

// ErrMalformed is returned for an ATR that does not parse.
var ErrMalformed = errors.New("atr: malformed")

// Historical returns the historical bytes of an ATR.
func Historical(atr []byte) ([]byte, error) {
	if len(atr) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(atr))
	}
	if atr[0] != 0x3B && atr[0] != 0x3F {
		return nil, fmt.Errorf("%w: TS %02X", ErrMalformed, atr[0])
	}
	k := int(atr[1] & 0x0F)
	y := atr[1] >> 4
	i := 2
	for {
		// TAi, TBi, TCi are present per bits 5-7 of Y; TDi per bit 8, and
		// TDi's high nibble is the next Y.
		for _, bit := range []byte{1, 2, 4} {
			if y&bit != 0 {
				i++
			}
		}
		if y&8 == 0 {
			break
		}
		if i >= len(atr) {
			return nil, fmt.Errorf("%w: interface bytes truncated", ErrMalformed)
		}
		y = atr[i] >> 4
		i++
	}
	if i > len(atr) {
		return nil, fmt.Errorf("%w: interface bytes truncated", ErrMalformed)
	}
	if len(atr)-i < k {
		return nil, fmt.Errorf("%w: %d historical bytes announced, %d present", ErrMalformed, k, len(atr)-i)
	}
	return atr[i : i+k], nil
}

// ExtendedLength reports whether the card capabilities in the historical
// bytes announce extended Lc and Le fields (third software function table,
// bit b7). An ATR without that data object says nothing: false.
func ExtendedLength(atr []byte) bool {
	h, err := Historical(atr)
	if err != nil || len(h) == 0 || h[0] != 0x80 { // 0x80: COMPACT-TLV follows
		return false
	}
	for i := 1; i < len(h); {
		tag, l := h[i]>>4, int(h[i]&0x0F)
		i++
		if i+l > len(h) {
			return false
		}
		if tag == 0x7 && l >= 3 {
			return h[i+2]&0x40 != 0
		}
		i += l
	}
	return false
}

// Contactless builds a PC/SC-style ATR for a contactless card whose ATS
// carries hist as historical bytes (PC/SC part 3 §3.1.3.2.3.1):
// 3B 8n 80 01 hist… TCK.
func Contactless(hist []byte) []byte {
	if len(hist) > 15 {
		hist = hist[:15]
	}
	out := []byte{0x3B, 0x80 | byte(len(hist)), 0x80, 0x01}
	out = append(out, hist...)
	var tck byte
	for _, b := range out[1:] {
		tck ^= b
	}
	return append(out, tck)
}

// CardCapabilities returns historical bytes holding a card capabilities
// data object: selection by full DF name and by FID, data coding byte 21,
// and extended Lc/Le when extended is true.
func CardCapabilities(extended bool) []byte {
	third := byte(0x80) // command chaining
	if extended {
		third |= 0x40
	}
	return []byte{0x80, 0x73, 0xC0, 0x21, third}
}
