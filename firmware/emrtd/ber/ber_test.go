package ber

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestToDER(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"DER unchanged", "30 06 02 01 01 04 01 AA", "30 06 02 01 01 04 01 AA"},
		{"indefinite sequence", "30 80 02 01 01 00 00", "30 03 02 01 01"},
		{"nested indefinite", "30 80 A0 80 04 01 AA 00 00 00 00", "30 05 A0 03 04 01 AA"},
		{"indefinite inside definite", "30 07 A0 80 04 01 AA 00 00", "30 05 A0 03 04 01 AA"},
		{"constructed octet string", "24 80 04 02 AA BB 04 01 CC 00 00", "04 03 AA BB CC"},
		{"definite constructed octet string", "24 07 04 02 AA BB 04 01 CC", "04 03 AA BB CC"},
		{"nested constructed octet string", "24 80 24 80 04 01 AA 00 00 04 01 BB 00 00", "04 02 AA BB"},
		{"constructed bit string", "23 80 03 02 00 AA 03 02 04 B0 00 00", "03 03 04 AA B0"},
		{"empty indefinite", "30 80 00 00", "30 00"},
		{"non-minimal length kept", "04 81 01 AA", "04 81 01 AA"},
		{"high tag", "7F 61 80 5F 1F 01 41 00 00", "7F 61 04 5F 1F 01 41"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ToDER(h(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, h(tc.want)) {
				t.Fatalf("got % X, want %s", got, tc.want)
			}
		})
	}
}

func TestToDERLongContent(t *testing.T) {
	payload := bytes.Repeat([]byte{0x5A}, 300)
	in := append([]byte{0x30, 0x80, 0x04, 0x82, 0x01, 0x2C}, payload...)
	in = append(in, 0, 0)
	got, err := ToDER(in)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ B []byte }
	if rest, err := asn1.Unmarshal(got, &v); err != nil || len(rest) != 0 || !bytes.Equal(v.B, payload) {
		t.Fatalf("not DER: %v", err)
	}
}

func TestToDERRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"truncated", "30 05 02 01"},
		{"missing EOC", "30 80 02 01 01"},
		{"primitive indefinite", "04 80 AA 00 00"},
		{"trailing", "02 01 01 00"},
		{"stray EOC", "30 02 00 00"},
		{"mixed string segments", "24 80 03 01 00 00 00"},
		{"bit string unused bits in the middle", "23 80 03 02 04 A0 03 02 00 AA 00 00"},
		{"long length", "04 85 00 00 00 00 01 AA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ToDER(h(tc.in)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v, want ErrMalformed", err)
			}
		})
	}
}

func TestDepthLimit(t *testing.T) {
	var in []byte
	for range MaxDepth + 2 {
		in = append(in, 0x30, 0x80)
	}
	for range MaxDepth + 2 {
		in = append(in, 0, 0)
	}
	if _, err := ToDER(in); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v", err)
	}
}

func TestIsIndefinite(t *testing.T) {
	if !IsIndefinite(h("30 80 00 00")) || IsIndefinite(h("30 00")) || IsIndefinite(h("04 80")) || IsIndefinite(nil) {
		t.Fatal("IsIndefinite")
	}
}

// FuzzToDER: no panic; the output is DER-shaped (a second pass changes
// nothing and finds no indefinite length); DER input comes back as is.
func FuzzToDER(f *testing.F) {
	for _, s := range []string{"30 80 02 01 01 00 00", "24 80 04 02 AA BB 04 01 CC 00 00", "23 80 03 02 00 AA 03 02 04 B0 00 00",
		"30 06 02 01 01 04 01 AA", "7F 61 80 5F 1F 01 41 00 00", "30 80 A0 80 30 80 04 01 AA 00 00 00 00 00 00"} {
		f.Add(h(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := ToDER(b)
		if err != nil {
			return
		}
		again, err := ToDER(out)
		if err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: % X -> % X", out, again)
		}
		// Constructed universal string identifiers (X.690 §8.21).
		if bytes.Contains(b, []byte{0x80}) || bytes.ContainsAny(b, "\x23\x24\x2c\x32\x33\x34\x35\x36\x39\x3a\x3b\x3c\x3e") {
			return
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("input without indefinite lengths or constructed strings changed")
		}
	})
}
