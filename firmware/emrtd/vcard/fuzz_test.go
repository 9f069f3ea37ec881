package vcard

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/sm"
	"kiosk/provisioning/issuer"
)

var (
	fuzzOnce   sync.Once
	fuzzImages [2]*cardimage.Image // PACE (P-256, fast) and BAC-only
)

func fuzzImage(tb testing.TB, bacOnly bool) *cardimage.Image {
	fuzzOnce.Do(func() {
		for i, b := range []bool{false, true} {
			fuzzImages[i], _ = issue(tb, smallJPEG(tb), func(o *issuer.Options) {
				o.BACOnly = b
				if !b {
					o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHGMAES128, ParameterID: issuer.ParamNISTP256}
				}
			})
		}
	})
	if bacOnly {
		return fuzzImages[1]
	}
	return fuzzImages[0]
}

// FuzzProcess feeds the card sequences of APDUs: raw bytes on a fresh card
// (mode 0), raw bytes after a secure messaging session was set up (mode 1),
// and fuzzed plain commands protected with the terminal's session (mode 2),
// which reach the dispatch behind the MAC check. The card must never panic
// (the recover in Process would hide it, so the log is checked), must
// always answer at least a status word, and must never hand out data group
// contents without a session.
func FuzzProcess(f *testing.F) {
	seeds := [][]byte{
		{0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x02, 0x47, 0x10, 0x01},
		{0x00, 0xB0, 0x81, 0x00, 0x00},
		{0x00, 0xB1, 0x00, 0x00, 0x04, 0x54, 0x02, 0x80, 0x00, 0x00},
		{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x01, 0x1C},
		{0x00, 0x22, 0xC1, 0xA4, 0x0F, 0x80, 0x0A, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x04, 0x02, 0x02, 0x83, 0x01, 0x02},
		{0x10, 0x86, 0x00, 0x00, 0x02, 0x7C, 0x00, 0x00},
		{0x00, 0x84, 0x00, 0x00, 0x08},
		{0x0C, 0xB0, 0x00, 0x00, 0x0D, 0x97, 0x01, 0x04, 0x8E, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00},
		{0x00, 0xC0, 0x00, 0x00, 0x00},
		{0x00, 0xB0, 0x00, 0x00, 0x00, 0xFF, 0xFF},
	}
	for mode := range byte(3) {
		for _, s := range seeds {
			// One APDU per seed, length-prefixed; mode 2 reads it as fields.
			f.Add(mode, append([]byte{byte(len(s))}, s...))
		}
		f.Add(mode, []byte{})
		f.Add(mode, []byte{0x05, 0x00, 0xB0, 0x81, 0x00, 0x04, 0x01, 0x00, 0x04, 0x00, 0xB0, 0x00, 0x00})
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		sink := &logSink{}
		im := fuzzImage(t, mode&0x10 != 0)
		c, err := New(im, Options{Logger: slog.New(sink), NoBACOnPACE: mode&0x20 != 0})
		if err != nil {
			t.Fatal(err)
		}
		var s *sm.Session
		if mode%3 != 0 {
			s = fuzzSession(t, c, im, mode)
		}
		secret := []byte(testDoc)
		for len(data) > 0 {
			n := min(int(data[0]), len(data)-1)
			piece := data[1 : 1+n]
			data = data[1+n:]
			var raw []byte
			var wrapped bool
			if mode%3 == 2 && len(piece) >= 5 {
				cmd := apdu.Command{CLA: piece[0] &^ 0x0C, INS: piece[1], P1: piece[2], P2: piece[3], Ne: int(piece[4]), Data: piece[5:]}
				if w, err := s.Wrap(cmd); err == nil {
					if raw, err = w.Encode(im.Meta.ExtendedLength); err == nil {
						wrapped = true
					}
				}
			}
			if !wrapped {
				raw = piece
			}
			out := c.Process(raw)
			if len(out) < 2 {
				t.Fatalf("% X: answer % X", raw, out)
			}
			if sink.has("panic") {
				t.Fatalf("% X: panicked: %v", raw, sink.recs)
			}
			if a, _ := c.Session(); a == AuthNone && bytes.Contains(out, secret) {
				t.Fatalf("% X: DG1 data without a session: % X", raw, out)
			}
			if wrapped {
				r, _ := apdu.ParseResponse(out)
				_, _ = s.Unwrap(r) // the terminal side must not panic either
			}
		}
	})
}

// fuzzSession sets up a session (BAC or PACE-CAN by mode) through the
// terminal side and returns the terminal's half of it.
func fuzzSession(t *testing.T, c *Card, im *cardimage.Image, mode byte) *sm.Session {
	ctx := context.Background()
	ch := channel(c, im.Meta.ExtendedLength)
	if im.Meta.BAC || mode&0x40 != 0 && mode&0x20 == 0 {
		s, err := bac.Authenticate(ctx, ch, testKey, bac.Options{})
		if err != nil {
			t.Fatalf("BAC: %v", err)
		}
		return s
	}
	res, err := pace.Establish(ctx, ch, pace.CANPassword(testCAN), paceInfo(t, ch), pace.Options{})
	if err != nil {
		t.Fatalf("PACE: %v", err)
	}
	return res.Session
}
