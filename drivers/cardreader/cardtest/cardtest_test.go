package cardtest

import (
	"bytes"
	"testing"
)

func TestCard(t *testing.T) {
	file := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	c := New(map[uint16][]byte{0x0101: file, 0x0102: {1, 2, 3}})
	type step struct {
		name  string
		capdu []byte
		data  []byte // nil = do not check
		sw    uint16
	}
	steps := []step{
		{"read before select", ReadBinary(0, 4), nil, SWNoCurrentEF},
		{"select missing", SelectEF(0x0BAD), nil, SWFileNotFound},
		{"select", SelectEF(0x0101), []byte{}, SWOK},
		{"read 4 at 0", ReadBinary(0, 4), file[:4], SWOK},
		{"read 256 at 10", ReadBinary(10, 256), file[10:266], SWOK},
		{"read extended 1000", ReadBinary(0, 1000), file, SWOK},
		{"read past end", ReadBinary(990, 20), file[990:], SWEndOfFile},
		{"offset beyond file", ReadBinary(1001, 1), nil, SWWrongOffset},
		{"select with FCP", []byte{0x00, 0xA4, 0x02, 0x04, 0x02, 0x01, 0x02, 0x00},
			[]byte{0x62, 0x08, 0x80, 0x02, 0x00, 0x03, 0x83, 0x02, 0x01, 0x02}, SWOK},
		{"select bad Lc", []byte{0x00, 0xA4, 0x02, 0x0C, 0x01, 0x01}, nil, SWWrongLength},
		{"malformed", []byte{0x00, 0xB0, 0x00}, nil, SWWrongLength},
		{"unknown INS", []byte{0x00, 0x20, 0x00, 0x00}, nil, SWINSNotSupported},
		{"unknown CLA", []byte{0x40, 0xB0, 0x00, 0x00, 0x01}, nil, SWCLANotSupported},
		{"echo pattern 300", Echo(300), Pattern(300), SWOK},
		{"echo pattern 65536", Echo(65536), Pattern(65536), SWOK},
		{"echo data 1000", EchoData(file), file, SWOK},
		{"echo data 3", EchoData([]byte{7, 8, 9}), []byte{7, 8, 9}, SWOK},
	}
	for _, s := range steps {
		r := c.Process(s.capdu)
		if len(r) < 2 {
			t.Fatalf("%s: short response % X", s.name, r)
		}
		got := uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
		if got != s.sw {
			t.Errorf("%s: SW %04X, want %04X", s.name, got, s.sw)
		}
		if s.data != nil && !bytes.Equal(r[:len(r)-2], s.data) {
			t.Errorf("%s: data % X..., want % X...", s.name, head(r[:len(r)-2]), head(s.data))
		}
	}
	ch1, ch2 := c.Process(GetChallenge(8)), c.Process(GetChallenge(8))
	if len(ch1) != 10 || bytes.Equal(ch1, ch2) {
		t.Errorf("GET CHALLENGE: % X, % X", ch1, ch2)
	}
	c.Reset()
	if r := c.Process(ReadBinary(0, 1)); !bytes.Equal(r, []byte{0x69, 0x86}) {
		t.Errorf("after Reset the selection must be gone, got % X", r)
	}
	atr := DefaultATR()
	var x byte
	for _, b := range atr[1:] {
		x ^= b
	}
	if x != 0 || !bytes.Equal(c.ATR(), atr) {
		t.Errorf("ATR % X: TCK check %02X", atr, x)
	}
}

func head(b []byte) []byte {
	if len(b) > 12 {
		return b[:12]
	}
	return b
}
