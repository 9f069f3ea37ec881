// Package cardtest provides a small but real ISO/IEC 7816-4 test card
// (a cardreader.CardHandler) for the reader tests: a flat file system with
// SELECT by file identifier, READ BINARY with offsets, GET CHALLENGE, and a
// proprietary ECHO command that returns data of any length so that extended
// length responses can be exercised.
package cardtest

import (
	"crypto/rand"
	"maps"
	"sync"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/internal/apdu"
)

// Status words (ISO/IEC 7816-4:2005 §5.1.3, Tables 5 and 6).
const (
	SWOK                = 0x9000
	SWEndOfFile         = 0x6282 // end of file reached before reading Ne bytes
	SWWrongLength       = 0x6700
	SWNoCurrentEF       = 0x6986
	SWWrongData         = 0x6A80
	SWFileNotFound      = 0x6A82
	SWIncorrectP1P2     = 0x6A86
	SWWrongOffset       = 0x6B00
	SWINSNotSupported   = 0x6D00
	SWCLANotSupported   = 0x6E00
	SWFunctionNotSupp   = 0x6A81
	SWNoPreciseDiagnose = 0x6F00
)

// Instructions understood by the card.
const (
	InsSelect       = 0xA4
	InsReadBinary   = 0xB0
	InsGetChallenge = 0x84
	// InsEcho (with CLA 80, proprietary per §5.1.1) returns the command data,
	// or, without data, Ne bytes of the pattern 00 01 02 ... FF 00 01 ...
	InsEcho = 0xEE
	// ClaProprietary is the class byte of ECHO.
	ClaProprietary = 0x80
)

// defaultATRBody is a T=1 ATR without TCK (ISO/IEC 7816-3 §8.2): TS=3B, T0=88 (TD1 present,
// 8 historical bytes), TD1=80 (TD2 present, T=0 offered), TD2=01 (T=1),
// historical bytes "KIOSK-T1", TCK.
var defaultATRBody = []byte{0x3B, 0x88, 0x80, 0x01, 'K', 'I', 'O', 'S', 'K', '-', 'T', '1'}

// DefaultATR returns a fresh copy of the default ATR including its TCK.
func DefaultATR() []byte { return WithTCK(defaultATRBody) }

// WithTCK appends the check byte TCK (XOR of T0..last byte, ISO/IEC 7816-3 §8.2.5).
func WithTCK(atr []byte) []byte {
	var x byte
	for _, b := range atr[1:] {
		x ^= b
	}
	return append(append([]byte(nil), atr...), x)
}

// Card is the test card. It is safe for concurrent use.
type Card struct {
	mu      sync.Mutex
	atr     []byte
	files   map[uint16][]byte
	current int32 // selected EF id, -1 = none
}

var _ cardreader.CardHandler = (*Card)(nil)

// New returns a card with the given elementary files (file id → content)
// and DefaultATR. The map is copied.
func New(files map[uint16][]byte) *Card {
	return &Card{atr: DefaultATR(), files: maps.Clone(files), current: -1}
}

// ATR implements cardreader.CardHandler.
func (c *Card) ATR() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.atr...)
}

// Reset implements cardreader.CardHandler: the file selection is volatile.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current = -1
}

// Process implements cardreader.CardHandler.
func (c *Card) Process(capdu []byte) []byte {
	cmd, err := apdu.Parse(capdu)
	if err != nil {
		return sw(SWWrongLength)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd.CLA == ClaProprietary {
		if cmd.INS == InsEcho {
			return c.echo(cmd)
		}
		return sw(SWINSNotSupported)
	}
	if cmd.CLA != 0x00 {
		return sw(SWCLANotSupported)
	}
	switch cmd.INS {
	case InsSelect:
		return c.selectFile(cmd)
	case InsReadBinary:
		return c.readBinary(cmd)
	case InsGetChallenge:
		return c.getChallenge(cmd)
	}
	return sw(SWINSNotSupported)
}

// selectFile: SELECT by file identifier (§7.1.1, P1=00 or 02), P2=0C (no
// response data) or 00/04 (return a minimal FCP template: 80 size, 83 fid).
func (c *Card) selectFile(cmd apdu.Command) []byte {
	if cmd.P1 != 0x00 && cmd.P1 != 0x02 {
		return sw(SWIncorrectP1P2)
	}
	if len(cmd.Data) != 2 {
		return sw(SWWrongLength)
	}
	fid := uint16(cmd.Data[0])<<8 | uint16(cmd.Data[1])
	content, ok := c.files[fid]
	if !ok {
		return sw(SWFileNotFound)
	}
	c.current = int32(fid)
	switch cmd.P2 {
	case 0x0C:
		return sw(SWOK)
	case 0x00, 0x04:
		n := len(content)
		fcp := []byte{0x62, 0x08, 0x80, 0x02, byte(n >> 8), byte(n), 0x83, 0x02, cmd.Data[0], cmd.Data[1]}
		if cmd.Ne > 0 && cmd.Ne < len(fcp) {
			fcp = fcp[:cmd.Ne]
		}
		return append(fcp, 0x90, 0x00)
	}
	return sw(SWIncorrectP1P2)
}

// readBinary: READ BINARY with a 15-bit offset in P1-P2 (§7.2.3, P1 bit 8 = 0).
func (c *Card) readBinary(cmd apdu.Command) []byte {
	if cmd.P1&0x80 != 0 {
		return sw(SWFunctionNotSupp) // short EF identifier addressing not implemented
	}
	if cmd.Ne == 0 || len(cmd.Data) != 0 {
		return sw(SWWrongLength)
	}
	if c.current < 0 {
		return sw(SWNoCurrentEF)
	}
	content := c.files[uint16(c.current)]
	off := int(cmd.P1)<<8 | int(cmd.P2)
	if off > len(content) {
		return sw(SWWrongOffset)
	}
	data := content[off:]
	status := uint16(SWOK)
	if len(data) > cmd.Ne {
		data = data[:cmd.Ne]
	} else if len(data) < cmd.Ne {
		status = SWEndOfFile
	}
	return append(append([]byte(nil), data...), byte(status>>8), byte(status))
}

// getChallenge: GET CHALLENGE (§7.5.3), Ne random bytes.
func (c *Card) getChallenge(cmd apdu.Command) []byte {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return sw(SWIncorrectP1P2)
	}
	if cmd.Ne == 0 || len(cmd.Data) != 0 {
		return sw(SWWrongLength)
	}
	out := make([]byte, cmd.Ne, cmd.Ne+2)
	if _, err := rand.Read(out); err != nil {
		return sw(SWNoPreciseDiagnose)
	}
	return append(out, 0x90, 0x00)
}

func (c *Card) echo(cmd apdu.Command) []byte {
	if len(cmd.Data) > 0 {
		return append(append([]byte(nil), cmd.Data...), 0x90, 0x00)
	}
	out := make([]byte, cmd.Ne, cmd.Ne+2)
	for i := range out {
		out[i] = byte(i)
	}
	return append(out, 0x90, 0x00)
}

func sw(s uint16) []byte { return []byte{byte(s >> 8), byte(s)} }

// Command builders for tests (not a general APDU library: the eID layer owns that).

// SelectEF returns SELECT by file id with no response data (P2=0C).
func SelectEF(fid uint16) []byte {
	return []byte{0x00, InsSelect, 0x02, 0x0C, 0x02, byte(fid >> 8), byte(fid)}
}

// ReadBinary returns READ BINARY at offset for ne bytes (1..65536), using
// extended Le when ne > 256.
func ReadBinary(offset uint16, ne int) []byte {
	return withLe([]byte{0x00, InsReadBinary, byte(offset>>8) & 0x7F, byte(offset)}, ne)
}

// GetChallenge returns GET CHALLENGE for n bytes (1..256).
func GetChallenge(n int) []byte {
	return withLe([]byte{0x00, InsGetChallenge, 0x00, 0x00}, n)
}

// Echo returns an ECHO command asking for ne pattern bytes (1..65536).
func Echo(ne int) []byte {
	return withLe([]byte{ClaProprietary, InsEcho, 0x00, 0x00}, ne)
}

// EchoData returns an ECHO command carrying data (case 3S or 3E).
func EchoData(data []byte) []byte {
	h := []byte{ClaProprietary, InsEcho, 0x00, 0x00}
	if len(data) <= 255 {
		return append(append(h, byte(len(data))), data...)
	}
	return append(append(h, 0x00, byte(len(data)>>8), byte(len(data))), data...)
}

// Pattern returns the n bytes ECHO produces without command data.
func Pattern(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i)
	}
	return out
}

func withLe(h []byte, ne int) []byte {
	if ne <= 256 {
		return append(h, byte(ne)) // 256 → 00
	}
	return append(h, 0x00, byte(ne>>8), byte(ne)) // 65536 → 0000
}
