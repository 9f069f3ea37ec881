package atr

import (
	"bytes"
	"testing"
)

func TestHistoricalAndExtended(t *testing.T) {
	tests := []struct {
		name     string
		atr      []byte
		hist     []byte
		extended bool
	}{
		// A German eID through a PC/SC contactless reader (historical bytes
		// from its ATS): 3B 88 80 01 00 00 00 00 77 81 81 00 79.
		{"npa style", []byte{0x3B, 0x88, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x77, 0x81, 0x81, 0x00, 0x79}, []byte{0, 0, 0, 0, 0x77, 0x81, 0x81, 0}, false},
		{"built extended", Contactless(CardCapabilities(true)), CardCapabilities(true), true},
		{"built short", Contactless(CardCapabilities(false)), CardCapabilities(false), false},
		{"no interface bytes", []byte{0x3B, 0x02, 0x14, 0x50}, []byte{0x14, 0x50}, false},
		{"TA1 TB1 TC1", []byte{0x3B, 0x71, 0x11, 0x00, 0xFF, 0x80}, []byte{0x80}, false},
	}
	for _, tt := range tests {
		h, err := Historical(tt.atr)
		if err != nil || !bytes.Equal(h, tt.hist) {
			t.Errorf("%s: Historical = %X, %v; want %X", tt.name, h, err, tt.hist)
		}
		if got := ExtendedLength(tt.atr); got != tt.extended {
			t.Errorf("%s: ExtendedLength = %v", tt.name, got)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, a := range [][]byte{nil, {0x3B}, {0x12, 0x00}, {0x3B, 0x85, 0x80}, {0x3B, 0x8F, 0x80, 0x01, 0x80}} {
		if _, err := Historical(a); err == nil {
			t.Errorf("%X: no error", a)
		}
		if ExtendedLength(a) {
			t.Errorf("%X: extended", a)
		}
	}
}

func FuzzATR(f *testing.F) {
	f.Add(Contactless(CardCapabilities(true)))
	f.Add([]byte{0x3B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Historical(b)
		if err == nil && len(h) > len(b) {
			t.Fatal("historical longer than ATR")
		}
		_ = ExtendedLength(b)
	})
}
