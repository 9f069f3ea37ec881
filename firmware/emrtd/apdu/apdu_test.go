package apdu

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"kiosk/firmware/emrtd/tlv"
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

func TestEncodeParse(t *testing.T) {
	big := bytes.Repeat([]byte{0x5A}, 300)
	cases := []struct {
		name     string
		cmd      Command
		extended bool
		want     string
		wantExt  bool
	}{
		{"case 1", Command{INS: 0xA4, P1: 0x04}, false, "00A40400", false},
		{"case 2S", Command{INS: 0xB0, Ne: 4}, false, "00B0000004", false},
		{"case 2S 256", Command{INS: 0xB0, Ne: 256}, false, "00B0000000", false},
		{"case 3S", Command{INS: 0xA4, P1: 2, P2: 0x0C, Data: h("011E")}, false, "00A4020C02011E", false},
		{"case 4S", Command{INS: 0x86, Data: h("7C00"), Ne: 256}, false, "00860000027C0000", false},
		{"case 2E", Command{INS: 0xB0, Ne: 0x1234}, true, "00B00000001234", true},
		{"case 2E 65536", Command{INS: 0xB0, Ne: 65536}, true, "00B00000000000", true},
		{"case 3E", Command{INS: 0xDA, Data: big}, true, "00DA000000012C" + strings.Repeat("5A", 300), true},
		{"case 4E", Command{INS: 0xDA, Data: big, Ne: 65536}, true, "00DA000000012C" + strings.Repeat("5A", 300) + "0000", true},
		{"4E small data big Ne", Command{INS: 0xB1, Data: h("5401FF"), Ne: 1000}, true, "00B100000000035401FF03E8", true},
		{"short preferred", Command{INS: 0xB0, Ne: 4}, true, "00B0000004", false},
	}
	for _, c := range cases {
		b, err := c.cmd.Encode(c.extended)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(b, h(c.want)) {
			t.Errorf("%s: %X, want %s", c.name, b, c.want)
		}
		got, ext, err := ParseCommand(b)
		if err != nil {
			t.Fatalf("%s: parse: %v", c.name, err)
		}
		if ext != c.wantExt || got.CLA != c.cmd.CLA || got.INS != c.cmd.INS || got.P1 != c.cmd.P1 || got.P2 != c.cmd.P2 ||
			got.Ne != c.cmd.Ne || !bytes.Equal(got.Data, c.cmd.Data) {
			t.Errorf("%s: parsed %+v ext=%v", c.name, got, ext)
		}
	}
	if _, err := (Command{Ne: 300}).Encode(false); !errors.Is(err, ErrTooLong) {
		t.Errorf("Ne 300 short: %v", err)
	}
	if _, err := (Command{Data: big}).Encode(false); !errors.Is(err, ErrTooLong) {
		t.Errorf("Lc 300 short: %v", err)
	}
	if _, err := (Command{Ne: 65537}).Encode(true); !errors.Is(err, ErrTooLong) {
		t.Errorf("Ne 65537: %v", err)
	}
	for _, bad := range []string{"", "00A4", "00A4020C03011E", "00A4020C0000", "00A4020C00000201", "00B00000000000FF"} {
		if _, _, err := ParseCommand(h(bad)); !errors.Is(err, ErrMalformedCommand) {
			t.Errorf("ParseCommand(%s) err = %v", bad, err)
		}
	}
}

func TestStatus(t *testing.T) {
	r, err := ParseResponse(h("01029000"))
	if err != nil || !r.OK() || !bytes.Equal(r.Data, h("0102")) || r.Err() != nil {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := ParseResponse(h("90")); !errors.Is(err, ErrShortResponse) {
		t.Errorf("short response err = %v", err)
	}
	err = Response{SW: 0x6A82}.Err()
	if !IsSW(err, 0x6A82) || IsSW(err, 0x6A83) || !strings.Contains(err.Error(), "file not found") {
		t.Errorf("status error %v", err)
	}
	if n, ok := RetriesLeft(0x63C2); !ok || n != 2 {
		t.Errorf("RetriesLeft(63C2) = %d %v", n, ok)
	}
	if _, ok := RetriesLeft(0x6300); ok {
		t.Error("6300 has no counter")
	}
	if !bytes.Equal((Response{Data: h("AA"), SW: 0x6282}).Encode(), h("AA6282")) {
		t.Error("Response.Encode")
	}
}

// script is a Transport answering from a list and recording commands.
type script struct {
	sent    []string
	answers []string
	i       int
}

func (s *script) Transmit(_ context.Context, c []byte) ([]byte, error) {
	s.sent = append(s.sent, strings.ToUpper(hex.EncodeToString(c)))
	if s.i >= len(s.answers) {
		return nil, errors.New("script exhausted")
	}
	s.i++
	return h(s.answers[s.i-1]), nil
}

func TestChaining(t *testing.T) {
	s := &script{answers: []string{"6C04", "01026104", "030405069000"}}
	ch := NewChannel(s, Options{})
	data, err := ch.Do(context.Background(), Command{INS: 0xB0, Ne: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, h("010203040506")) {
		t.Errorf("data %X", data)
	}
	want := []string{"00B0000002", "00B0000004", "00C0000004"}
	if strings.Join(s.sent, ",") != strings.Join(want, ",") {
		t.Errorf("sent %v, want %v", s.sent, want)
	}
	st := ch.Stats()
	if st.APDUs != 3 || st.BytesOut != 15 || st.BytesIn != 2+4+6 {
		t.Errorf("stats %+v", st)
	}
}

// endless answers 61xx forever: the channel must give up, not hang.
type endless struct{ n int }

func (e *endless) Transmit(context.Context, []byte) ([]byte, error) {
	e.n++
	return h("AAAA6102"), nil
}

func TestEndless61xx(t *testing.T) {
	e := &endless{}
	ch := NewChannel(e, Options{MaxChained: 10})
	if _, err := ch.Do(context.Background(), Command{INS: 0xB0, Ne: 2}); !errors.Is(err, ErrTooManyChained) {
		t.Fatalf("err = %v", err)
	}
	if e.n != 11 {
		t.Errorf("%d exchanges", e.n)
	}
	ch = NewChannel(&endless{}, Options{MaxResponse: 7})
	if _, err := ch.Do(context.Background(), Command{INS: 0xB0, Ne: 2}); !errors.Is(err, ErrResponseTooLong) {
		t.Fatalf("err = %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch := NewChannel(&endless{}, Options{})
	if _, err := ch.Transmit(ctx, Command{INS: 0xB0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// fileCard is a minimal card with EFs, answering SELECT and READ BINARY
// (B0 and B1). maxOut limits the data of one response, as a real card's
// buffer does.
type fileCard struct {
	files    map[uint16][]byte
	cur      []byte
	maxOut   int
	extended bool
	cmds     []Command
	overrun  bool // answer one byte more than asked
}

func (f *fileCard) Transmit(_ context.Context, raw []byte) ([]byte, error) {
	cmd, ext, err := ParseCommand(raw)
	if err != nil {
		return Status(0x6700).Encode(), nil
	}
	if ext && !f.extended {
		return Status(0x6700).Encode(), nil
	}
	f.cmds = append(f.cmds, cmd)
	switch cmd.INS {
	case 0xA4:
		fid := uint16(cmd.Data[0])<<8 | uint16(cmd.Data[1])
		b, ok := f.files[fid]
		if !ok {
			return Status(SWFileNotFound).Encode(), nil
		}
		f.cur = b
		return Status(SWOK).Encode(), nil
	case 0xB0, 0xB1:
		off := int(cmd.P1)<<8 | int(cmd.P2)
		if cmd.INS == 0xB1 {
			off = 0
			for _, c := range cmd.Data[2:] {
				off = off<<8 | int(c)
			}
		}
		n := cmd.Ne
		if cmd.INS == 0xB1 {
			n = do53Capacity(n)
		}
		n = min(n, f.maxOut)
		if f.overrun {
			n++
		}
		if off >= len(f.cur) {
			return Status(SWWrongP1P2).Encode(), nil
		}
		end := min(off+n, len(f.cur))
		data := f.cur[off:end]
		if cmd.INS == 0xB1 {
			data = tlv.Encode(0x53, data)
		}
		sw := SWOK
		if end-off < n && !f.overrun {
			sw = SWEndOfFile
		}
		return Response{Data: data, SW: sw}.Encode(), nil
	}
	return Status(SWINSNotSupported).Encode(), nil
}

func lds(tag byte, n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(i * 7)
	}
	var hdr []byte
	switch {
	case n < 0x80:
		hdr = []byte{tag, byte(n)}
	case n < 0x100:
		hdr = []byte{tag, 0x81, byte(n)}
	default:
		hdr = []byte{tag, 0x82, byte(n >> 8), byte(n)}
	}
	return append(hdr, v...)
}

func TestReadFile(t *testing.T) {
	files := map[uint16][]byte{0x011E: lds(0x60, 0x14), 0x0102: lds(0x75, 40000), 0x0101: lds(0x61, 0x5B), 0x0103: h("6300")}
	cases := []struct {
		name     string
		extended bool
		maxOut   int
		chunk    int
	}{
		{"short", false, 256, 0},
		{"extended", true, 65536, 0},
		{"extended small card buffer", true, 1000, 4096},
	}
	for _, c := range cases {
		card := &fileCard{files: files, maxOut: c.maxOut, extended: c.extended}
		ch := NewChannel(card, Options{Extended: c.extended, ChunkSize: c.chunk})
		for fid, want := range files {
			got, err := ch.ReadFile(context.Background(), fid)
			if err != nil {
				t.Fatalf("%s: EF %04X: %v", c.name, fid, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: EF %04X: %d bytes differ from %d", c.name, fid, len(got), len(want))
			}
		}
		sawB1 := false
		for _, cmd := range card.cmds {
			if cmd.INS == 0xB0 && !c.extended && cmd.Ne > ShortChunk {
				t.Errorf("%s: short read of %d", c.name, cmd.Ne)
			}
			sawB1 = sawB1 || cmd.INS == 0xB1
		}
		if wantB1 := !(c.extended && c.chunk == 0); sawB1 != wantB1 {
			t.Errorf("%s: READ BINARY B1 used=%v; it is needed for reads beyond offset 32767", c.name, sawB1)
		}
	}
	ch := NewChannel(&fileCard{files: files, maxOut: 256}, Options{})
	if _, err := ch.ReadFile(context.Background(), 0x0104); !IsSW(err, SWFileNotFound) {
		t.Errorf("missing file: %v", err)
	}
	ch = NewChannel(&fileCard{files: files, maxOut: 256, overrun: true}, Options{})
	if _, err := ch.ReadFile(context.Background(), 0x0101); !errors.Is(err, ErrTooMuchData) {
		t.Errorf("overrun: %v", err)
	}
	ch = NewChannel(&fileCard{files: map[uint16][]byte{1: h("7584FFFFFFFF00")}, maxOut: 256}, Options{})
	if _, err := ch.ReadFile(context.Background(), 1); !errors.Is(err, ErrBadFileHeader) && !errors.Is(err, ErrFileTooLarge) {
		t.Errorf("huge length: %v", err)
	}
	ch = NewChannel(&fileCard{files: map[uint16][]byte{1: lds(0x75, 5000)}, maxOut: 256}, Options{MaxFileSize: 4096})
	if _, err := ch.ReadFile(context.Background(), 1); !errors.Is(err, ErrFileTooLarge) {
		t.Errorf("limit: %v", err)
	}
	// A file shorter than its header claims: the card answers 6282/6B00,
	// the reader stops with an error instead of looping.
	ch = NewChannel(&fileCard{files: map[uint16][]byte{1: h("6110AABB")}, maxOut: 256}, Options{})
	if _, err := ch.ReadFile(context.Background(), 1); err == nil {
		t.Error("truncated file accepted")
	}
}

func TestTLVSize(t *testing.T) {
	cases := []struct {
		in    string
		total int
		more  bool
		bad   bool
	}{
		{"", 0, true, false},
		{"60", 0, true, false},
		{"6014", 22, false, false},
		{"758201", 0, true, false},
		{"75820100", 0x104, false, false},
		{"7F61", 0, true, false},
		{"7F6181FF", 4 + 0xFF, false, false},
		{"7F618483", 0, true, false},
		{"6080", 0, false, true},
		{"6085", 0, false, true},
		{"1F81818181", 0, false, true},
	}
	for _, c := range cases {
		total, more, err := tlvSize(h(c.in))
		if (err != nil) != c.bad || more != c.more || (!c.bad && !c.more && total != c.total) {
			t.Errorf("tlvSize(%s) = %d %v %v", c.in, total, more, err)
		}
	}
}

// FuzzParseCommand: the card side's parser never panics and what it
// accepts re-encodes to the same bytes.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"00A40400", "00B0000004", "00A4020C02011E", "00DA000000012C", "00B00000001234", "00B000000000035401FF03E8", "0CB000000D9701048E08ED6705417E96BA5500"} {
		f.Add(h(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, ext, err := ParseCommand(b)
		if err != nil {
			return
		}
		if ext && cmd.Fits() {
			return // an extended encoding of a short-able command; Encode prefers short
		}
		out, err := cmd.Encode(true)
		if err != nil {
			t.Fatalf("re-encode %X: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encode %X → %X", b, out)
		}
	})
}

// do53Capacity is the most data bytes a DO'53' of at most ne bytes holds.
func do53Capacity(ne int) int {
	n := ne - 2
	for n > 0 && 1+len(tlv.EncodeLength(n))+n > ne {
		n--
	}
	return max(n, 0)
}
