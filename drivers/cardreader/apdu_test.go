package cardreader

import (
	"bytes"
	"errors"
	"testing"

	"kiosk/drivers/cardreader/internal/apdu"
)

func rep(n int) []byte { return bytes.Repeat([]byte{0xA5}, n) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestValidateCommand(t *testing.T) {
	hdr := []byte{0x00, 0xB0, 0x00, 0x00}
	tests := []struct {
		name  string
		capdu []byte
		ok    bool
		cas   apdu.Case
		nc    int
		ne    int
	}{
		{"empty", nil, false, 0, 0, 0},
		{"3 bytes", hdr[:3], false, 0, 0, 0},
		{"case 1", hdr, true, apdu.Case1, 0, 0},
		{"case 2S Le=01", cat(hdr, []byte{1}), true, apdu.Case2S, 0, 1},
		{"case 2S Le=00 is 256", cat(hdr, []byte{0}), true, apdu.Case2S, 0, 256},
		{"case 3S", cat(hdr, []byte{3}, rep(3)), true, apdu.Case3S, 3, 0},
		{"case 3S 255", cat(hdr, []byte{255}, rep(255)), true, apdu.Case3S, 255, 0},
		{"case 4S", cat(hdr, []byte{2}, rep(2), []byte{0}), true, apdu.Case4S, 2, 256},
		{"case 3S Lc too big", cat(hdr, []byte{4}, rep(3)), false, 0, 0, 0},
		{"case 3S Lc too small", cat(hdr, []byte{2}, rep(4)), false, 0, 0, 0},
		{"00 + 1 byte", cat(hdr, []byte{0, 1}), false, 0, 0, 0},
		{"case 2E", cat(hdr, []byte{0, 0x10, 0x00}), true, apdu.Case2E, 0, 4096},
		{"case 2E 0000 is 65536", cat(hdr, []byte{0, 0, 0}), true, apdu.Case2E, 0, 65536},
		{"case 3E", cat(hdr, []byte{0, 0x01, 0x00}, rep(256)), true, apdu.Case3E, 256, 0},
		{"case 4E", cat(hdr, []byte{0, 0x01, 0x2C}, rep(300), []byte{0x04, 0x00}), true, apdu.Case4E, 300, 1024},
		{"case 4E Le 0000", cat(hdr, []byte{0, 0, 1}, rep(1), []byte{0, 0}), true, apdu.Case4E, 1, 65536},
		{"case 3E max", cat(hdr, []byte{0, 0xFF, 0xFF}, rep(65535)), true, apdu.Case3E, 65535, 0},
		{"extended Lc 0000", cat(hdr, []byte{0, 0, 0}, rep(2)), false, 0, 0, 0},
		{"extended Lc short", cat(hdr, []byte{0, 0, 5}, rep(4)), false, 0, 0, 0},
		{"extended with short Le", cat(hdr, []byte{0, 0, 2}, rep(2), []byte{0}), false, 0, 0, 0},
		{"INS 6X", []byte{0x00, 0x61, 0, 0}, false, 0, 0, 0},
		{"INS 9X", []byte{0x00, 0x9F, 0, 0}, false, 0, 0, 0},
		{"CLA FF (PC/SC pseudo-APDU)", []byte{0xFF, 0xCA, 0, 0, 0}, true, apdu.Case2S, 0, 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCommand(tt.capdu)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidateCommand(% X) = %v, want ok=%v", head(tt.capdu), err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformedCommand) {
					t.Fatalf("error %v does not wrap ErrMalformedCommand", err)
				}
				return
			}
			c, err := apdu.Parse(tt.capdu)
			if err != nil {
				t.Fatal(err)
			}
			if c.Case != tt.cas || len(c.Data) != tt.nc || c.Ne != tt.ne {
				t.Fatalf("got case %d Nc %d Ne %d, want %d %d %d", c.Case, len(c.Data), c.Ne, tt.cas, tt.nc, tt.ne)
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// encode is an independent encoder of a parsed command; a valid C-APDU must
// survive Parse→encode unchanged, which pins down every length-field rule.
func encode(c apdu.Command) []byte {
	out := []byte{c.CLA, c.INS, c.P1, c.P2}
	le := func(ext bool) []byte {
		if c.Ne == 0 {
			return nil
		}
		if ext {
			return []byte{byte(c.Ne >> 8), byte(c.Ne)} // 65536 encodes as 0000
		}
		return []byte{byte(c.Ne)} // 256 encodes as 00
	}
	switch {
	case !c.Extended && len(c.Data) > 0:
		out = append(out, byte(len(c.Data)))
		out = append(out, c.Data...)
		out = append(out, le(false)...)
	case !c.Extended:
		out = append(out, le(false)...)
	case len(c.Data) > 0:
		out = append(out, 0, byte(len(c.Data)>>8), byte(len(c.Data)))
		out = append(out, c.Data...)
		out = append(out, le(true)...)
	default:
		out = append(out, 0)
		out = append(out, le(true)...)
	}
	return out
}

func FuzzValidateCommand(f *testing.F) {
	hdr := []byte{0x00, 0xA4, 0x04, 0x0C}
	for _, s := range [][]byte{
		nil, {0}, hdr, cat(hdr, []byte{0}), cat(hdr, []byte{2, 1, 2}), cat(hdr, []byte{2, 1, 2, 0}),
		cat(hdr, []byte{0, 0, 0}), cat(hdr, []byte{0, 0, 2, 1, 2}), cat(hdr, []byte{0, 0, 2, 1, 2, 0, 0}),
		cat(hdr, []byte{0, 1}), {0x00, 0x6C, 0, 0}, cat(hdr, []byte{0, 0, 3, 1, 2}),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := ValidateCommand(b)
		c, perr := apdu.Parse(b)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ValidateCommand and Parse disagree: %v vs %v", err, perr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("error %v does not wrap ErrMalformedCommand", err)
			}
			return
		}
		if got := encode(c); !bytes.Equal(got, b) {
			t.Fatalf("round trip mismatch:\n in  % X\n out % X", b, got)
		}
		if c.Ne < 0 || c.Ne > 65536 || len(c.Data) > 65535 {
			t.Fatalf("out of range Ne=%d Nc=%d", c.Ne, len(c.Data))
		}
	})
}

func TestEventKindString(t *testing.T) {
	want := map[EventKind]string{
		ReaderAdded: "reader.added", ReaderRemoved: "reader.removed", CardInserted: "card.inserted",
		CardRemoved: "card.removed", ServiceDown: "service.down", ServiceUp: "service.up", 0: "EventKind(0)",
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), s)
		}
	}
}
