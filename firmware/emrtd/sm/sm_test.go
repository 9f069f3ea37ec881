package sm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/smcrypto"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func resp(t *testing.T, s string) apdu.Response {
	t.Helper()
	r, err := apdu.ParseResponse(h(s))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func encode(t *testing.T, c apdu.Command) string {
	t.Helper()
	b, err := c.Encode(false)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// 9303-11 Appendix D.4: the BAC secure messaging worked example (SELECT
// EF.COM, READ BINARY of 4 bytes, READ BINARY of the remaining 18 bytes).
func TestAppendixD4(t *testing.T) {
	s, err := New(smcrypto.TDES, h("979EC13B1CBFE9DCD01AB0FED307EAE5"), h("F1CB1F1FB5ADF208806B89DC579DC1F8"), h("887022120C06C226"))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		cmd       apdu.Command
		protected string
		response  string
		plain     string
		ssc       string // after the response
	}{
		{apdu.Command{INS: 0xA4, P1: 0x02, P2: 0x0C, Data: h("011E")},
			"0CA4020C158709016375432908C044F68E08BF8B92D635FF24F800",
			"990290008E08FA855A5D4C50A8ED9000", "", "887022120C06C228"},
		{apdu.Command{INS: 0xB0, Ne: 4},
			"0CB000000D9701048E08ED6705417E96BA5500",
			"8709019FF0EC34F9922651990290008E08AD55CC17140B2DED9000", "60145F01", "887022120C06C22A"},
		{apdu.Command{INS: 0xB0, P2: 0x04, Ne: 0x12},
			"0CB000040D9701128E082EA28A70F3C7B53500",
			"871901FB9235F4E4037F2327DCC8964F1F9B8C30F42C8E2FFF224A990290008E08C8B2787EAEA07D749000",
			"04303130365F36063034303030305C026175", "887022120C06C22C"},
	}
	for i, st := range steps {
		p, err := s.Wrap(st.cmd)
		if err != nil {
			t.Fatalf("step %d wrap: %v", i, err)
		}
		if got := encode(t, p); !strings.EqualFold(got, st.protected) {
			t.Errorf("step %d protected command\n got %s\nwant %s", i, got, st.protected)
		}
		r, err := s.Unwrap(resp(t, st.response))
		if err != nil {
			t.Fatalf("step %d unwrap: %v", i, err)
		}
		if r.SW != 0x9000 || !bytes.Equal(r.Data, h(st.plain)) {
			t.Errorf("step %d plain response %X %04X, want %s", i, r.Data, r.SW, st.plain)
		}
		if !bytes.Equal(s.SSC(), h(st.ssc)) {
			t.Errorf("step %d SSC %X, want %s", i, s.SSC(), st.ssc)
		}
	}
}

// The card side reproduces Appendix D.4 too: it accepts the standard's
// protected commands and produces the standard's protected responses.
func TestAppendixD4CardSide(t *testing.T) {
	card, err := New(smcrypto.TDES, h("979EC13B1CBFE9DCD01AB0FED307EAE5"), h("F1CB1F1FB5ADF208806B89DC579DC1F8"), h("887022120C06C226"))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		protected, plainData, response string
		ins                            byte
		ne                             int
	}{
		{"0CA4020C158709016375432908C044F68E08BF8B92D635FF24F800", "", "990290008E08FA855A5D4C50A8ED9000", 0xA4, 0},
		{"0CB000000D9701048E08ED6705417E96BA5500", "60145F01", "8709019FF0EC34F9922651990290008E08AD55CC17140B2DED9000", 0xB0, 4},
	}
	for i, st := range steps {
		c, _, err := apdu.ParseCommand(h(st.protected))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := card.UnwrapCommand(c)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if plain.CLA != 0 || plain.INS != st.ins || plain.Ne != st.ne {
			t.Errorf("step %d: plain command %+v", i, plain)
		}
		if i == 0 && !bytes.Equal(plain.Data, h("011E")) {
			t.Errorf("SELECT data %X", plain.Data)
		}
		r, err := card.WrapResponse(apdu.Response{Data: h(st.plainData), SW: 0x9000})
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(r.Encode()); !strings.EqualFold(got, st.response) {
			t.Errorf("step %d response\n got %s\nwant %s", i, got, st.response)
		}
	}
}

// AES secure messaging: ICAO publishes no AES trace. These values come
// from an independent implementation's test suite (Proxmark3 emrtd), with
// the Appendix G session keys and SSC 0: a cross-implementation check, not
// a value from the standard.
func TestAESCrossImplementation(t *testing.T) {
	s, err := New(smcrypto.AES128, h("F5F0E35C0D7161EE6724EE513A0D9A7F"), h("FE251C7858B356B24514B3BD5F4297D1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Wrap(apdu.Command{INS: 0xA4, P1: 0x02, P2: 0x0C, Data: h("011E")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := encode(t, p), "0ca4020c1d871101ee0e4724f4465c1be9c2f73abdd73a3d8e08835d1b54575c955f00"; got != want {
		t.Errorf("SELECT\n got %s\nwant %s", got, want)
	}
	if _, err := s.Unwrap(resp(t, "990290008E08BEA7B381C494A0799000")); err != nil {
		t.Fatalf("SELECT response: %v", err)
	}
	p, err = s.Wrap(apdu.Command{INS: 0xB0, Ne: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := encode(t, p), "0cb000000d9701048e08aa6ba54f44df836400"; got != want {
		t.Errorf("READ BINARY\n got %s\nwant %s", got, want)
	}
	r, err := s.Unwrap(resp(t, "871101645C0B1F998A088278D07942BBE94B60990290008E0894A33C6AA2D8CCC89000"))
	if err != nil || !bytes.Equal(r.Data, h("60145F01")) {
		t.Fatalf("READ BINARY response %X, %v", r.Data, err)
	}
}

func pair(t *testing.T, c smcrypto.Cipher) (term, card *Session) {
	t.Helper()
	ke, km := bytes.Repeat([]byte{0x11}, c.KeySize()), bytes.Repeat([]byte{0x22}, c.KeySize())
	term, err := New(c, ke, km, nil)
	if err != nil {
		t.Fatal(err)
	}
	card, err = New(c, ke, km, nil)
	if err != nil {
		t.Fatal(err)
	}
	return term, card
}

func TestRoundTrip(t *testing.T) {
	cmds := []apdu.Command{
		{INS: 0xA4, P1: 0x02, P2: 0x0C, Data: h("011E")},
		{INS: 0xB0, Ne: 256},
		{INS: 0xB0, Ne: 0xDF},
		{INS: 0xB1, Data: h("5403012345"), Ne: 0xFF00},
		{INS: 0x84, Ne: 8},
		{INS: 0x44},
		{INS: 0xDA, Data: bytes.Repeat([]byte{7}, 300)},
	}
	for _, c := range []smcrypto.Cipher{smcrypto.TDES, smcrypto.AES128, smcrypto.AES192, smcrypto.AES256} {
		term, card := pair(t, c)
		for _, cmd := range cmds {
			p, err := term.Wrap(cmd)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := p.Encode(true)
			if err != nil {
				t.Fatal(err)
			}
			pc, _, err := apdu.ParseCommand(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := card.UnwrapCommand(pc)
			if err != nil {
				t.Fatalf("%s INS %02X: card unwrap: %v", c, cmd.INS, err)
			}
			if got.INS != cmd.INS || got.Ne != cmd.Ne || !bytes.Equal(got.Data, cmd.Data) {
				t.Fatalf("%s: card saw %+v, sent %+v", c, got, cmd)
			}
			data := bytes.Repeat([]byte{0xAB}, cmd.Ne%300)
			pr, err := card.WrapResponse(apdu.Response{Data: data, SW: 0x9000})
			if err != nil {
				t.Fatal(err)
			}
			if cmd.INS&1 == 1 && len(data) > 0 && pr.Data[0] != 0x85 {
				t.Errorf("odd INS response uses DO'%02X', want DO'85'", pr.Data[0])
			}
			r, err := term.Unwrap(pr)
			if err != nil {
				t.Fatalf("%s INS %02X: terminal unwrap: %v", c, cmd.INS, err)
			}
			if !bytes.Equal(r.Data, data) || r.SW != 0x9000 {
				t.Fatalf("%s: response %X %04X", c, r.Data, r.SW)
			}
		}
		// An error status is protected too.
		if _, err := term.Wrap(apdu.Command{INS: 0xA4, P1: 2, P2: 0x0C, Data: h("0102")}); err != nil {
			t.Fatal(err)
		}
		card.incSSC()
		pr, _ := card.WrapResponse(apdu.Response{SW: 0x6A82})
		r, err := term.Unwrap(pr)
		if err != nil || r.SW != 0x6A82 {
			t.Fatalf("%s: protected 6A82: %v %04X", c, err, r.SW)
		}
	}
}

func TestTamperedResponse(t *testing.T) {
	for _, c := range []smcrypto.Cipher{smcrypto.TDES, smcrypto.AES128} {
		term, card := pair(t, c)
		p, _ := term.Wrap(apdu.Command{INS: 0xB0, Ne: 4})
		if _, err := card.UnwrapCommand(p); err != nil {
			t.Fatal(err)
		}
		pr, _ := card.WrapResponse(apdu.Response{Data: h("60145F01"), SW: 0x9000})
		pr.Data[len(pr.Data)-1] ^= 1
		if _, err := term.Unwrap(pr); !errors.Is(err, ErrBadMAC) {
			t.Fatalf("%s: err = %v, want ErrBadMAC", c, err)
		}
		if _, err := term.Wrap(apdu.Command{INS: 0xB0, Ne: 4}); !errors.Is(err, ErrSessionFailed) {
			t.Fatalf("%s: after a bad MAC: %v", c, err)
		}
	}
}

func TestUnwrapRejects(t *testing.T) {
	mk := func() *Session {
		s, _ := New(smcrypto.TDES, make([]byte, 16), make([]byte, 16), nil)
		return s
	}
	cases := []struct {
		name string
		resp apdu.Response
		want error
	}{
		{"plain 9000", apdu.Response{SW: 0x9000}, ErrMissingDO},
		{"plain 61xx", apdu.Response{SW: 0x6110}, ErrMissingDO},
		{"no 8E", apdu.Response{Data: h("99029000"), SW: 0x9000}, ErrMissingDO},
		{"no 99", apdu.Response{Data: h("8E080000000000000000"), SW: 0x9000}, ErrMissingDO},
		{"short 8E", apdu.Response{Data: h("990290008E0400000000"), SW: 0x9000}, ErrMalformed},
		{"after 8E", apdu.Response{Data: h("990290008E08000000000000000000"), SW: 0x9000}, ErrMalformed},
		{"unknown DO", apdu.Response{Data: h("53019990029000"), SW: 0x9000}, ErrMalformed},
		{"bad TLV", apdu.Response{Data: h("8710"), SW: 0x9000}, ErrMalformed},
		{"wrong MAC", apdu.Response{Data: h("990290008E080000000000000000"), SW: 0x9000}, ErrBadMAC},
	}
	for _, c := range cases {
		if _, err := mk().Unwrap(c.resp); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	s := mk()
	r, err := s.Unwrap(apdu.Response{SW: 0x6A82})
	if err != nil || r.SW != 0x6A82 || s.Failed() {
		t.Errorf("plain 6A82: %v %04X failed=%v", err, r.SW, s.Failed())
	}
	if _, err := s.Unwrap(apdu.Response{SW: 0x6988}); err != nil || !s.Failed() {
		t.Errorf("plain 6988 should end the session: %v %v", err, s.Failed())
	}
	if _, err := mk().UnwrapCommand(apdu.Command{INS: 0xB0}); !errors.Is(err, ErrNotProtected) || ErrorStatus(err) != 0x6987 {
		t.Errorf("unprotected command: %v", err)
	}
	if _, err := mk().UnwrapCommand(apdu.Command{CLA: 0x0C, INS: 0xB0, Data: h("970100")}); !errors.Is(err, ErrMissingDO) {
		t.Errorf("command without 8E: %v", err)
	}
	if _, err := mk().Wrap(apdu.Command{CLA: 0x0C}); !errors.Is(err, ErrAlreadyProtected) {
		t.Errorf("double wrap: %v", err)
	}
	if _, err := New(smcrypto.AES128, make([]byte, 16), make([]byte, 16), make([]byte, 8)); err == nil {
		t.Error("8-byte SSC accepted for AES")
	}
}

var typed = []error{ErrBadMAC, ErrMissingDO, ErrMalformed, ErrBadPadding, ErrNotProtected, ErrSessionFailed}

func isTyped(err error) bool {
	for _, e := range typed {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzUnwrap feeds hostile responses to the terminal and hostile commands
// to the card side: no panic, and every error is one of the typed ones.
func FuzzUnwrap(f *testing.F) {
	for _, s := range []string{
		"990290008E08FA855A5D4C50A8ED9000",
		"8709019FF0EC34F9922651990290008E08AD55CC17140B2DED9000",
		"871901FB9235F4E4037F2327DCC8964F1F9B8C30F42C8E2FFF224A990290008E08C8B2787EAEA07D749000",
		"9000", "6A82", "", "87", "8E08", "878401000000",
	} {
		f.Add(h(s), false)
		f.Add(h(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, aes bool) {
		c := smcrypto.TDES
		if aes {
			c = smcrypto.AES128
		}
		s, err := New(c, h("979EC13B1CBFE9DCD01AB0FED307EAE5979EC13B1CBFE9DC")[:16], h("F1CB1F1FB5ADF208806B89DC579DC1F8"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := apdu.ParseResponse(b); err == nil {
			if _, err := s.Unwrap(r); err != nil && !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
		}
		card, _ := New(c, make([]byte, 16), make([]byte, 16), nil)
		if cmd, _, err := apdu.ParseCommand(b); err == nil {
			cmd.CLA |= 0x0C
			if _, err := card.UnwrapCommand(cmd); err != nil && !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
		}
	})
}
