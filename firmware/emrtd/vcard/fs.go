package vcard

import (
	"bytes"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/tlv"
)

// Instructions (ISO/IEC 7816-4:2005 §5.1.2 table 4; 9303-11 §4.3, §4.4).
const (
	insSelect               = 0xA4
	insReadBinary           = 0xB0
	insReadBinaryOdd        = 0xB1
	insGetResponse          = 0xC0
	insMSE                  = 0x22
	insGeneralAuthenticate  = 0x86
	insGetChallenge         = 0x84
	insExternalAuthenticate = 0x82
	insInternalAuthenticate = 0x88
)

// Status words not in package apdu (ISO/IEC 7816-4:2005 §5.1.3).
const (
	swNoCurrentEF = 0x6986 // command not allowed: no current EF
)

const (
	fidMF         = 0x3F00
	fidCardAccess = lds.FIDCardAccess
	sfiCardAccess = lds.SFICardAccess
)

// df is the current dedicated file.
type df int

const (
	dfMF  df = iota // the master file (current after reset)
	dfApp           // the eMRTD application (9303-10 §3.6.1)
)

// isMFFile reports whether an image file lives in the master file rather
// than in the eMRTD application (9303-10 §3.11: EF.CardAccess, EF.DIR,
// EF.ATR/INFO). The image format is flat, so EF.CardSecurity (011D in the
// MF) cannot be told from EF.SOD: the image keeps it apart (CardSecurity).
func isMFFile(fid uint16) bool {
	return fid == lds.FIDCardAccess || fid == lds.FIDDir || fid == lds.FIDATRInfo
}

// appSFI returns the short EF identifier of an application file
// (9303-10 §3.6: DGn → n, EF.SOD 1D, EF.COM 1E).
func appSFI(fid uint16) (byte, bool) {
	f, ok := lds.FileForFID(fid)
	if !ok || f.SFI == 0 || f.SFI > 0x1E {
		return 0, false
	}
	return f.SFI, true
}

// DefaultATR returns the ATR the card uses when the image names none: what
// a PC/SC reader makes of a contactless ISO/IEC 14443-4 chip (PC/SC part 3
// §3.1.3.2.3.1: 3B 8n 80 01, the historical bytes, TCK), with historical
// bytes holding a card capabilities data object (ISO/IEC 7816-4 §8.1.1.2.7:
// selection by DF name and by FID, data coding 21, command chaining, and
// extended Lc/Le when extended is true) so a terminal can tell whether
// extended length is supported.
func DefaultATR(extended bool) []byte {
	third := byte(0x80) // command chaining
	if extended {
		third |= 0x40 // extended Lc and Le fields
	}
	hist := []byte{0x80, 0x73, 0xC0, 0x21, third}
	atr := append([]byte{0x3B, 0x80 | byte(len(hist)), 0x80, 0x01}, hist...)
	var tck byte // ISO/IEC 7816-3 §8.2.5: XOR of T0..last byte
	for _, b := range atr[1:] {
		tck ^= b
	}
	return append(atr, tck)
}

// files returns the EFs of the current DF.
func (c *Card) files() map[uint16][]byte {
	if c.df == dfApp {
		return c.app
	}
	return c.mf
}

// selectFile answers SELECT (ISO/IEC 7816-4:2005 §7.1.1; 9303-10 §3.6.1):
// P1=00 MF (3F00 or empty data) or EF by FID, P1=02 EF under the current
// DF, P1=04 DF by name (the eMRTD AID). P2 = 0C answers no data, 00 the FCI
// and 04 the FCP template.
func (c *Card) selectFile(cmd apdu.Command) apdu.Response {
	if cmd.P2 != 0x00 && cmd.P2 != 0x04 && cmd.P2 != 0x0C {
		return apdu.Status(apdu.SWIncorrectP1P2)
	}
	switch cmd.P1 {
	case 0x04:
		if len(cmd.Data) == 0 {
			return apdu.Status(apdu.SWWrongLength)
		}
		if !bytes.Equal(cmd.Data, []byte(lds.AIDeMRTD)) {
			return apdu.Status(apdu.SWFileNotFound)
		}
		c.df, c.ef = dfApp, -1
		return c.fci(cmd, tlv.Encode(0x84, cmd.Data))
	case 0x00:
		if len(cmd.Data) == 0 || (len(cmd.Data) == 2 && cmd.Data[0] == 0x3F && cmd.Data[1] == 0x00) {
			c.df, c.ef = dfMF, -1
			return c.fci(cmd, tlv.Encode(0x83, []byte{fidMF >> 8, fidMF & 0xFF}))
		}
		return c.selectEF(cmd)
	case 0x02:
		return c.selectEF(cmd)
	}
	return apdu.Status(apdu.SWIncorrectP1P2)
}

func (c *Card) selectEF(cmd apdu.Command) apdu.Response {
	if len(cmd.Data) != 2 {
		return apdu.Status(apdu.SWWrongLength)
	}
	fid := uint16(cmd.Data[0])<<8 | uint16(cmd.Data[1])
	content, ok := c.files()[fid]
	if !ok {
		return apdu.Status(apdu.SWFileNotFound)
	}
	c.ef = int32(fid)
	return c.fci(cmd, tlv.Concat(
		tlv.Encode(0x80, sizeBytes(len(content))), // number of data bytes
		tlv.Encode(0x82, []byte{0x01}),            // transparent working EF
		tlv.Encode(0x83, cmd.Data),
	))
}

// sizeBytes encodes n big-endian in at least two bytes.
func sizeBytes(n int) []byte {
	if n <= 0xFFFF {
		return []byte{byte(n >> 8), byte(n)}
	}
	return []byte{byte(n >> 16), byte(n >> 8), byte(n)}
}

// fci returns the control parameters asked for by P2, cut to Ne.
func (c *Card) fci(cmd apdu.Command, fcp []byte) apdu.Response {
	var tag tlv.Tag
	switch cmd.P2 {
	case 0x0C:
		return apdu.Status(apdu.SWOK)
	case 0x04:
		tag = 0x62 // FCP
	default:
		tag = 0x6F // FCI
	}
	out := tlv.Encode(tag, fcp)
	if cmd.Ne > 0 && cmd.Ne < len(out) {
		out = out[:cmd.Ne]
	}
	return apdu.Response{Data: out, SW: apdu.SWOK}
}

// readBinary answers READ BINARY 'B0' (offset in P1-P2, or a short EF
// identifier in P1 and the offset in P2) and 'B1' (offset in DO'54', data
// in DO'53'), ISO/IEC 7816-4:2005 §7.2.3 and §7.2.2.
func (c *Card) readBinary(cmd apdu.Command, secured bool) apdu.Response {
	if cmd.Ne == 0 {
		return apdu.Status(apdu.SWWrongLength)
	}
	var offset int
	fid := int32(-1)
	if cmd.INS == insReadBinary {
		if len(cmd.Data) != 0 {
			return apdu.Status(apdu.SWWrongLength)
		}
		if cmd.P1&0x80 != 0 {
			if cmd.P1&0x60 != 0 || cmd.P1&0x1F == 0 {
				return apdu.Status(apdu.SWIncorrectP1P2)
			}
			f, ok := c.sfi(cmd.P1 & 0x1F)
			if !ok {
				return apdu.Status(apdu.SWFileNotFound)
			}
			fid, offset = int32(f), int(cmd.P2)
		} else {
			offset = int(cmd.P1)<<8 | int(cmd.P2)
		}
	} else {
		off, ok := oddOffset(cmd.Data)
		if !ok {
			return apdu.Status(apdu.SWWrongData)
		}
		offset = off
		if cmd.P1 != 0 || cmd.P2 != 0 { // P1-P2 names the file
			f := uint16(cmd.P1)<<8 | uint16(cmd.P2)
			if _, ok := c.files()[f]; !ok {
				return apdu.Status(apdu.SWFileNotFound)
			}
			fid = int32(f)
		}
	}
	if fid < 0 {
		fid = c.ef
	}
	if fid < 0 {
		return apdu.Status(swNoCurrentEF)
	}
	content, ok := c.files()[uint16(fid)]
	if !ok {
		return apdu.Status(swNoCurrentEF)
	}
	// 9303-11 §4.2: the application's files are readable only after
	// access control, inside secure messaging.
	// EF.CardSecurity too (TR-03110-3 §A.1.2: read after PACE).
	if (c.df == dfApp || uint16(fid) == lds.FIDCardSecurity) && !secured {
		return apdu.Status(apdu.SWSecurityNotSatisfied)
	}
	c.ef = fid // reading by SFI or FID selects the file (§7.2.2)
	if offset > len(content) {
		return apdu.Status(apdu.SWWrongP1P2)
	}
	rest := content[offset:]
	if cmd.INS == insReadBinary {
		if len(rest) >= cmd.Ne {
			return apdu.Response{Data: append([]byte(nil), rest[:cmd.Ne]...), SW: apdu.SWOK}
		}
		return apdu.Response{Data: append([]byte(nil), rest...), SW: apdu.SWEndOfFile}
	}
	// DO'53' header: tag and 1..4 length bytes count against Ne.
	room := 0
	for hdr := 2; hdr <= 5; hdr++ {
		room = min(len(rest), cmd.Ne-hdr)
		if room < 0 {
			return apdu.Status(apdu.SWWrongLength)
		}
		if 1+len(tlv.EncodeLength(room)) <= hdr {
			break
		}
	}
	r := apdu.Response{Data: tlv.Encode(0x53, rest[:room]), SW: apdu.SWOK}
	if room == len(rest) && len(r.Data) < cmd.Ne {
		r.SW = apdu.SWEndOfFile // the file ended before Ne was filled
	}
	return r
}

// sfi maps a short EF identifier of the current DF to its FID.
func (c *Card) sfi(s byte) (uint16, bool) {
	m := c.mfSFI
	if c.df == dfApp {
		m = c.appSFI
	}
	f, ok := m[s]
	return f, ok
}

// oddOffset decodes the DO'54' offset (1 to 4 bytes) of READ BINARY 'B1'.
func oddOffset(data []byte) (int, bool) {
	v, err := tlv.Unwrap(data, 0x54)
	if err != nil || len(v) == 0 || len(v) > 4 {
		return 0, false
	}
	off := 0
	for _, b := range v {
		off = off<<8 | int(b)
	}
	if off < 0 || off > 1<<30 {
		return 0, false
	}
	return off, true
}

// maxResponseData bounds one R-APDU's data: Ne, and at most 65533 bytes
// so data and SW fit the 2-byte length of a vpcd frame.
const maxResponseData = 0xFFFF - 2

// chain encodes r, splitting data longer than ne into 61xx chunks fetched
// with GET RESPONSE (ISO/IEC 7816-4:2005 §5.1.3, §7.6.1).
func (c *Card) chain(r apdu.Response, ne int) []byte {
	limit := min(ne, maxResponseData)
	if ne == 0 {
		limit = apdu.MaxShortNe // no Le: still chain a protected response
	}
	if len(r.Data) <= limit {
		return r.Encode()
	}
	c.pending = append([]byte(nil), r.Data[limit:]...)
	c.pendSW = r.SW
	return apdu.Response{Data: r.Data[:limit], SW: more(len(c.pending))}.Encode()
}

func more(n int) uint16 {
	if n >= apdu.MaxShortNe {
		return 0x6100
	}
	return 0x6100 | uint16(n)
}

// getResponse hands out the next chunk of a chained response.
func (c *Card) getResponse(cmd apdu.Command) []byte {
	if c.pending == nil {
		return status(apdu.SWConditionsNotSatisfied)
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		c.pending = nil
		return status(apdu.SWIncorrectP1P2)
	}
	ne := cmd.Ne
	if ne == 0 {
		ne = apdu.MaxShortNe
	}
	n := min(ne, len(c.pending), maxResponseData)
	out := apdu.Response{Data: c.pending[:n]}
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		out.SW = c.pendSW
		c.pending = nil
	} else {
		out.SW = more(len(c.pending))
	}
	return out.Encode()
}
