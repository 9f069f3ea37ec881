package vcard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/sm"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/issuer"
)

func TestCardAccessPlain(t *testing.T) {
	im, _ := issue(t, smallJPEG(t), nil)
	c := newCard(t, im, Options{})
	ch := channel(c, false)
	ctx := context.Background()
	// Right after reset the MF is current: no SELECT needed.
	got, err := ch.ReadFile(ctx, lds.FIDCardAccess)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, im.Files[lds.FIDCardAccess]) {
		t.Fatalf("EF.CardAccess % X, want % X", got, im.Files[lds.FIDCardAccess])
	}
	if err := ch.SelectMF(ctx); err != nil {
		t.Fatal(err)
	}
	// By short EF identifier (READ BINARY P1 = 80 | 1C).
	r := do(t, c, 0x00, 0xB0, 0x9C, 0x00, 0x00)
	if r.SW != apdu.SWEndOfFile || !bytes.Equal(r.Data, got) {
		t.Fatalf("read by SFI: % X %04X", r.Data, r.SW)
	}
	infos, err := pace.ParseCardAccess(got)
	if err != nil || len(infos.PACE) != 1 || infos.PACE[0].Protocol != im.Meta.PACE.OID {
		t.Fatalf("PACEInfo %+v, %v", infos, err)
	}
}

func TestPACE(t *testing.T) {
	for _, curve := range []struct {
		name string
		id   int
	}{{"brainpoolP256r1", issuer.ParamBrainpoolP256}, {"P-256", issuer.ParamNISTP256}} {
		for _, cip := range []struct{ name, oid string }{
			{"AES-128", issuer.OIDPACEECDHGMAES128}, {"3DES", issuer.OIDPACEECDHGM3DES},
		} {
			im, trust := issue(t, smallJPEG(t), func(o *issuer.Options) {
				o.PACE = &issuer.PACEParams{OID: cip.oid, ParameterID: curve.id}
			})
			mrz, err := pace.MRZPassword(testKey)
			if err != nil {
				t.Fatal(err)
			}
			for _, pw := range []pace.Password{pace.CANPassword(testCAN), pace.PINPassword(testPIN), mrz} {
				t.Run(fmt.Sprintf("%s/%s/%s", curve.name, cip.name, pw.Type), func(t *testing.T) {
					c := newCard(t, im, Options{})
					ch := channel(c, true)
					res := establishPACE(t, ch, pw)
					if res.Parameters.ID != curve.id || res.Protocol.OID != cip.oid {
						t.Errorf("ran %s on %d", res.Protocol.OID, res.Parameters.ID)
					}
					if a, p := c.Session(); a != AuthPACE || p != pw.Type {
						t.Errorf("card session %s/%s", a, p)
					}
					dgs, v := readDocument(t, ch, trust)
					if !v.Passed {
						t.Fatalf("passive authentication: %v", v.Err())
					}
					if !bytes.Equal(dgs[1], im.Files[0x0101]) || !bytes.Equal(dgs[2], im.Files[0x0102]) {
						t.Fatal("data groups differ from the image")
					}
				})
			}
		}
	}
}

// TestReadDocumentRealPhoto reads a document whose DG2 holds a real face
// photo over PACE and BAC, short and extended length.
func TestReadDocumentRealPhoto(t *testing.T) {
	photo, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		bacOnly  bool
		extended bool
	}{{"pace short", false, false}, {"pace extended", false, true}, {"bac short", true, false}, {"bac extended", true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			im, trust := issue(t, photo, func(o *issuer.Options) {
				o.BACOnly, o.ShortLengthOnly = tt.bacOnly, !tt.extended
			})
			c := newCard(t, im, Options{})
			ch := channel(c, tt.extended)
			if tt.bacOnly {
				if err := ch.SelectApplication(context.Background(), []byte(lds.AIDeMRTD)); err != nil {
					t.Fatal(err)
				}
				s, err := bac.Authenticate(context.Background(), ch, testKey, bac.Options{})
				if err != nil {
					t.Fatal(err)
				}
				ch.SetWrapper(s)
			} else {
				establishPACE(t, ch, pace.CANPassword(testCAN))
			}
			dgs, v := readDocument(t, ch, trust)
			if !v.Passed {
				t.Fatalf("passive authentication: %v", v.Err())
			}
			d2, err := lds.ParseDG2(dgs[2])
			if err != nil {
				t.Fatal(err)
			}
			f, _ := d2.Primary()
			if !bytes.Equal(f.Image, photo) {
				t.Fatal("DG2 face differs from the photo")
			}
			m, err := lds.ParseDG1(dgs[1])
			if err != nil || m.DocumentNumber != testDoc || !m.Valid() {
				t.Fatalf("DG1 %+v, %v", m, err)
			}
			t.Logf("%s: %+v", tt.name, ch.Stats())
		})
	}
}

func TestBACOnlyCard(t *testing.T) {
	im, trust := issue(t, smallJPEG(t), func(o *issuer.Options) { o.BACOnly = true })
	c := newCard(t, im, Options{})
	ctx := context.Background()
	ch := channel(c, false)
	if _, err := ch.ReadFile(ctx, lds.FIDCardAccess); !apdu.IsSW(err, apdu.SWFileNotFound) {
		t.Fatalf("EF.CardAccess on a BAC card: %v", err)
	}
	if r := do(t, c, 0x00, 0x22, 0xC1, 0xA4, 0x03, 0x83, 0x01, 0x02); r.SW != apdu.SWINSNotSupported {
		t.Fatalf("MSE:Set AT on a BAC card: %04X", r.SW)
	}
	if c.PINRetries() != -1 {
		t.Fatal("a BAC card has no PIN")
	}
	// Wrong MRZ data: 6300 and no session.
	wrong := testKey
	wrong.DateOfBirth = "740813"
	if _, err := bac.Authenticate(ctx, ch, wrong, bac.Options{}); !errors.Is(err, bac.ErrAuthenticationFailed) {
		t.Fatalf("BAC with a wrong key: %v", err)
	}
	s, err := bac.Authenticate(ctx, ch, testKey, bac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch.SetWrapper(s)
	if a, _ := c.Session(); a != AuthBAC {
		t.Fatalf("session %s", a)
	}
	if _, v := readDocument(t, ch, trust); !v.Passed {
		t.Fatalf("passive authentication: %v", v.Err())
	}
}

func TestBACOnPACECard(t *testing.T) {
	im, trust := issue(t, smallJPEG(t), nil)
	ctx := context.Background()
	t.Run("default answers BAC", func(t *testing.T) {
		c := newCard(t, im, Options{})
		ch := channel(c, false)
		s, err := bac.Authenticate(ctx, ch, testKey, bac.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ch.SetWrapper(s)
		if _, v := readDocument(t, ch, trust); !v.Passed {
			t.Fatalf("passive authentication: %v", v.Err())
		}
	})
	t.Run("NoBACOnPACE", func(t *testing.T) {
		c := newCard(t, im, Options{NoBACOnPACE: true})
		_, err := bac.Authenticate(ctx, channel(c, false), testKey, bac.Options{})
		if !apdu.IsSW(err, apdu.SWINSNotSupported) {
			t.Fatalf("BAC on a PACE-only chip: %v", err)
		}
	})
}

func TestPlainDataGroupReadRefused(t *testing.T) {
	im, _ := issue(t, smallJPEG(t), nil)
	c := newCard(t, im, Options{})
	ctx := context.Background()
	ch := channel(c, false)
	if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
		t.Fatal(err)
	}
	for _, fid := range []uint16{lds.FIDCOM, lds.FIDSOD, 0x0101, 0x0102} {
		if _, err := ch.ReadFile(ctx, fid); !apdu.IsSW(err, apdu.SWSecurityNotSatisfied) {
			t.Errorf("plain read of %04X: %v", fid, err)
		}
	}
	// By SFI (DG1 = 01) and with odd INS.
	if r := do(t, c, 0x00, 0xB0, 0x81, 0x00, 0x10); r.SW != apdu.SWSecurityNotSatisfied || len(r.Data) != 0 {
		t.Errorf("plain read of DG1 by SFI: % X %04X", r.Data, r.SW)
	}
	if r := do(t, c, 0x00, 0xB1, 0x01, 0x02, 0x03, 0x54, 0x01, 0x00, 0x10); r.SW != apdu.SWSecurityNotSatisfied {
		t.Errorf("plain B1 read of DG2: %04X", r.SW)
	}
	// A protected command without a session.
	if r := do(t, c, 0x0C, 0xB0, 0x00, 0x00, 0x10); r.SW != apdu.SWSMDataObjectsIncorrect {
		t.Errorf("protected command without session: %04X", r.SW)
	}
}

func TestWrongCAN(t *testing.T) {
	im, trust := issue(t, smallJPEG(t), nil)
	var reports []int
	c := newCard(t, im, Options{OnPINRetries: func(n int) { reports = append(reports, n) }})
	ch := channel(c, false)
	info := paceInfo(t, ch)
	_, err := pace.Establish(context.Background(), ch, pace.CANPassword("000000"), info, pace.Options{})
	var wp *pace.WrongPasswordError
	if !errors.Is(err, pace.ErrWrongPassword) || !errors.As(err, &wp) || wp.Password != pace.CAN {
		t.Fatalf("wrong CAN: %v", err)
	}
	if a, _ := c.Session(); a != AuthNone {
		t.Fatal("session after a failed PACE")
	}
	if c.PINRetries() != 3 || len(reports) != 0 {
		t.Fatalf("a wrong CAN touched the PIN counter: %d %v", c.PINRetries(), reports)
	}
	establishPACE(t, ch, pace.CANPassword(testCAN))
	if _, v := readDocument(t, ch, trust); !v.Passed {
		t.Fatalf("passive authentication: %v", v.Err())
	}
}

func TestPINRetries(t *testing.T) {
	im, _ := issue(t, smallJPEG(t), func(o *issuer.Options) { o.PINRetries = 3 })
	ctx := context.Background()
	var reports []int
	c := newCard(t, im, Options{OnPINRetries: func(n int) { reports = append(reports, n) }})
	ch := channel(c, false)
	info := paceInfo(t, ch)
	wrongPIN := func() error {
		_, err := pace.Establish(ctx, ch, pace.PINPassword("111111"), info, pace.Options{})
		return err
	}
	// One wrong PIN, then the right one resets the counter.
	var wp *pace.WrongPasswordError
	if err := wrongPIN(); !errors.As(err, &wp) || wp.RetriesLeft != 2 {
		t.Fatalf("first wrong PIN: %v", err)
	}
	res, err := pace.Establish(ctx, ch, pace.PINPassword(testPIN), info, pace.Options{})
	if err != nil || res.RetriesLeft != 2 {
		t.Fatalf("right PIN after one wrong: %+v %v", res, err)
	}
	if c.PINRetries() != 3 {
		t.Fatalf("counter %d after the right PIN", c.PINRetries())
	}
	c.Reset() // the session ends; the counter lives on
	for want := 2; want >= 1; want-- {
		if err := wrongPIN(); !errors.As(err, &wp) || wp.RetriesLeft != want {
			t.Fatalf("wrong PIN, want %d left: %v", want, err)
		}
	}
	if err := wrongPIN(); !errors.Is(err, pace.ErrPINBlocked) {
		t.Fatalf("last wrong PIN: %v", err)
	}
	c.Reset()
	if c.PINRetries() != 0 {
		t.Fatalf("counter %d after Reset", c.PINRetries())
	}
	// Blocked: even the right PIN is refused with 6983 at MSE:Set AT.
	_, err = pace.Establish(ctx, ch, pace.PINPassword(testPIN), info, pace.Options{})
	if !errors.Is(err, pace.ErrPINBlocked) {
		t.Fatalf("right PIN on a blocked card: %v", err)
	}
	r := do(t, c, 0x00, 0x22, 0xC1, 0xA4, 0x0F, 0x80, 0x0A, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x04, 0x02, 0x02, 0x83, 0x01, 0x03)
	if r.SW != apdu.SWAuthMethodBlocked {
		t.Fatalf("MSE:Set AT with the blocked PIN: %04X", r.SW)
	}
	if want := []int{2, 3, 2, 1, 0}; !slices.Equal(reports, want) {
		t.Fatalf("OnPINRetries %v, want %v", reports, want)
	}
	// The CAN still works.
	establishPACE(t, ch, pace.CANPassword(testCAN))

	// A persisted counter of 0 starts blocked.
	zero := 0
	c2 := newCard(t, im, Options{PINRetries: &zero})
	ch2 := channel(c2, false)
	if _, err := pace.Establish(ctx, ch2, pace.PINPassword(testPIN), paceInfo(t, ch2), pace.Options{}); !errors.Is(err, pace.ErrPINBlocked) {
		t.Fatalf("persisted blocked PIN: %v", err)
	}
}

func TestExtendedLength(t *testing.T) {
	ctx := context.Background()
	big := noiseJPEG(t, 40000) // DG2 beyond 32767 bytes: READ BINARY B1 on short cards
	imShortBig, _ := issue(t, big, func(o *issuer.Options) { o.ShortLengthOnly = true })
	imExtBig, trustExtBig := issue(t, big, nil)
	if len(imExtBig.Files[0x0102]) <= 0x7FFF {
		t.Fatalf("DG2 of %d bytes is too small for this test", len(imExtBig.Files[0x0102]))
	}
	open := func(t *testing.T, c *Card, extended bool) *apdu.Channel {
		ch := channel(c, extended)
		establishPACE(t, ch, pace.CANPassword(testCAN))
		if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
			t.Fatal(err)
		}
		return ch
	}

	t.Run("short card refuses extended APDUs", func(t *testing.T) {
		c := newCard(t, imShortBig, Options{})
		if !bytes.Equal(c.ATR(), DefaultATR(false)) {
			t.Fatalf("ATR % X", c.ATR())
		}
		if r := do(t, c, 0x00, 0xB0, 0x00, 0x00, 0x00, 0x01, 0x00); r.SW != apdu.SWWrongLength {
			t.Fatalf("extended READ BINARY: %04X", r.SW)
		}
		ch := open(t, c, true)
		// The terminal's extended READ BINARY: the card cannot parse it and
		// drops secure messaging.
		if _, err := ch.ReadFile(ctx, 0x0102); !apdu.IsSW(err, apdu.SWWrongLength) {
			t.Fatalf("extended read on a short card: %v", err)
		}
		if a, _ := c.Session(); a != AuthNone {
			t.Fatal("session survived")
		}
	})
	t.Run("short card Le 256 in SM chains with 61xx", func(t *testing.T) {
		c := newCard(t, imShortBig, Options{})
		ch := open(t, c, false)
		if err := ch.SelectEF(ctx, 0x0102); err != nil {
			t.Fatal(err)
		}
		before := ch.Stats().APDUs
		b, err := ch.ReadBinary(ctx, 100, 256)
		if err != nil || !bytes.Equal(b, imShortBig.Files[0x0102][100:356]) {
			t.Fatalf("256 bytes in SM: %d, %v", len(b), err)
		}
		if n := ch.Stats().APDUs - before; n != 2 {
			t.Fatalf("%d APDUs, want READ BINARY + GET RESPONSE", n)
		}
		// Inner Le > 256 (DO'97' of two bytes) in a short APDU: 6700,
		// protected, and the session stays.
		s := ch.Wrapper().(*sm.Session)
		w, err := s.Wrap(apdu.Command{INS: 0xB0, Ne: 300})
		if err != nil {
			t.Fatal(err)
		}
		w.Ne = apdu.MaxShortNe
		raw, err := w.Encode(false)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Unwrap(do(t, c, raw...))
		if err != nil || r.SW != apdu.SWWrongLength {
			t.Fatalf("inner Le 300: %04X %v", r.SW, err)
		}
		if a, _ := c.Session(); a != AuthPACE {
			t.Fatal("session lost")
		}
	})
	t.Run("B1 in secure messaging", func(t *testing.T) {
		c := newCard(t, imShortBig, Options{})
		ch := open(t, c, false)
		dg2 := imShortBig.Files[0x0102]
		if err := ch.SelectEF(ctx, 0x0102); err != nil {
			t.Fatal(err)
		}
		r, err := ch.Transmit(ctx, apdu.Command{INS: 0xB1, Data: []byte{0x54, 0x02, 0x80, 0x00}, Ne: 200})
		if err != nil || r.SW != apdu.SWOK {
			t.Fatalf("B1 at 32768: %v %04X", err, r.SW)
		}
		if want := append([]byte{0x53, 0x81, 0xC5}, dg2[32768:32768+197]...); !bytes.Equal(r.Data, want) {
			t.Fatalf("B1 at 32768: % X…", head(r.Data))
		}
		tail, err := ch.ReadBinary(ctx, len(dg2)-50, 100)
		if err != nil || !bytes.Equal(tail, dg2[len(dg2)-50:]) {
			t.Fatalf("B1 tail: %d bytes, %v", len(tail), err)
		}
		if a, _ := c.Session(); a != AuthPACE {
			t.Fatal("session lost")
		}
	})
	t.Run("extended card reads a 40 KB DG2 in one READ BINARY", func(t *testing.T) {
		c := newCard(t, imExtBig, Options{})
		if !bytes.Equal(c.ATR(), DefaultATR(true)) {
			t.Fatalf("ATR % X", c.ATR())
		}
		ch := open(t, c, true)
		before := ch.Stats().APDUs
		dg2, err := ch.ReadFile(ctx, 0x0102)
		if err != nil || !bytes.Equal(dg2, imExtBig.Files[0x0102]) {
			t.Fatalf("DG2: %d bytes, %v", len(dg2), err)
		}
		if n := ch.Stats().APDUs - before; n != 3 {
			t.Fatalf("%d APDUs, want SELECT + header + rest", n)
		}
		if _, v := readDocument(t, ch, trustExtBig); !v.Passed {
			t.Fatalf("passive authentication: %v", v.Err())
		}
	})

	// The same ~20 KB DG2 short and extended.
	photo := noiseJPEG(t, 20000)
	var apdus [2]int
	for i, extended := range []bool{false, true} {
		t.Run(fmt.Sprintf("read 20 KB extended=%v", extended), func(t *testing.T) {
			im, tr := issue(t, photo, func(o *issuer.Options) { o.ShortLengthOnly = !extended })
			c := newCard(t, im, Options{})
			ch := open(t, c, extended)
			before := ch.Stats().APDUs
			dg2, err := ch.ReadFile(ctx, 0x0102)
			if err != nil || !bytes.Equal(dg2, im.Files[0x0102]) {
				t.Fatalf("DG2: %d bytes, %v", len(dg2), err)
			}
			apdus[i] = ch.Stats().APDUs - before
			if _, v := readDocument(t, ch, tr); !v.Passed {
				t.Fatalf("passive authentication: %v", v.Err())
			}
		})
	}
	if apdus[1] >= apdus[0] || apdus[1] > 3 {
		t.Fatalf("DG2 took %d APDUs short, %d extended", apdus[0], apdus[1])
	}
	t.Logf("20 KB DG2: %d APDUs short, %d extended", apdus[0], apdus[1])
}

// TestCommands checks the file system and command parsing with raw
// APDUs against the MF, whose files need no authentication.
func TestCommands(t *testing.T) {
	im, _ := issue(t, smallJPEG(t), nil)
	dir := make([]byte, 40000) // a large EF.DIR to reach offsets > 32767
	for i := range dir {
		dir[i] = byte(i * 7)
	}
	im.Files[lds.FIDDir] = dir
	ca := im.Files[lds.FIDCardAccess]
	aid := []byte(lds.AIDeMRTD)
	sel := func(p1, p2 byte, data ...byte) []byte {
		return append([]byte{0x00, 0xA4, p1, p2, byte(len(data))}, data...)
	}
	type step struct {
		name  string
		capdu []byte
		data  []byte // nil: not checked
		sw    uint16
	}
	n := len(ca)
	steps := []step{
		{"read before select", []byte{0x00, 0xB0, 0x00, 0x00, 0x04}, nil, swNoCurrentEF},
		{"select CardAccess", sel(0x02, 0x0C, 0x01, 0x1C), []byte{}, apdu.SWOK},
		{"read 4", []byte{0x00, 0xB0, 0x00, 0x00, 0x04}, ca[:4], apdu.SWOK},
		{"read to the end exactly", []byte{0x00, 0xB0, 0x00, 0x02, byte(n - 2)}, ca[2:], apdu.SWOK},
		{"read past the end", []byte{0x00, 0xB0, 0x00, 0x02, byte(n)}, ca[2:], apdu.SWEndOfFile},
		{"offset at the end", []byte{0x00, 0xB0, 0x00, byte(n), 0x01}, []byte{}, apdu.SWEndOfFile},
		{"offset beyond the end", []byte{0x00, 0xB0, 0x00, byte(n + 1), 0x01}, nil, apdu.SWWrongP1P2},
		{"no Le", []byte{0x00, 0xB0, 0x00, 0x00}, nil, apdu.SWWrongLength},
		{"B0 with data", []byte{0x00, 0xB0, 0x00, 0x00, 0x01, 0x00, 0x04}, nil, apdu.SWWrongLength},
		{"SFI bad P1", []byte{0x00, 0xB0, 0xE1, 0x00, 0x04}, nil, apdu.SWIncorrectP1P2},
		{"SFI unknown", []byte{0x00, 0xB0, 0x85, 0x00, 0x04}, nil, apdu.SWFileNotFound},
		{"select with FCP", append(sel(0x02, 0x04, 0x2F, 0x00), 0x00),
			[]byte{0x62, 0x0B, 0x80, 0x02, 0x9C, 0x40, 0x82, 0x01, 0x01, 0x83, 0x02, 0x2F, 0x00}, apdu.SWOK},
		{"select FCI cut to Le", append(sel(0x02, 0x00, 0x2F, 0x00), 0x03), []byte{0x6F, 0x0B, 0x80}, apdu.SWOK},
		{"B1 current EF offset 40000-3", []byte{0x00, 0xB1, 0x00, 0x00, 0x05, 0x54, 0x03, 0x00, 0x9C, 0x3D, 0x10},
			append([]byte{0x53, 0x03}, dir[39997:]...), apdu.SWEndOfFile},
		{"B1 by FID, offset 32768", []byte{0x00, 0xB1, 0x2F, 0x00, 0x04, 0x54, 0x02, 0x80, 0x00, 0x06},
			append([]byte{0x53, 0x04}, dir[32768:32772]...), apdu.SWOK},
		{"B1 Le 256 -> 253 data bytes", []byte{0x00, 0xB1, 0x00, 0x00, 0x04, 0x54, 0x02, 0x80, 0x00, 0x00},
			append([]byte{0x53, 0x81, 0xFD}, dir[32768:32768+253]...), apdu.SWOK},
		{"B1 offset beyond", []byte{0x00, 0xB1, 0x00, 0x00, 0x05, 0x54, 0x03, 0x01, 0x00, 0x00, 0x10}, nil, apdu.SWWrongP1P2},
		{"B1 bad DO", []byte{0x00, 0xB1, 0x00, 0x00, 0x02, 0x53, 0x00, 0x10}, nil, apdu.SWWrongData},
		{"B1 unknown FID", []byte{0x00, 0xB1, 0x01, 0x01, 0x03, 0x54, 0x01, 0x00, 0x10}, nil, apdu.SWFileNotFound},
		{"B1 Le 1", []byte{0x00, 0xB1, 0x00, 0x00, 0x03, 0x54, 0x01, 0x00, 0x01}, nil, apdu.SWWrongLength},
		{"select DG1 in the MF", sel(0x02, 0x0C, 0x01, 0x01), nil, apdu.SWFileNotFound},
		{"select bad Lc", sel(0x02, 0x0C, 0x01), nil, apdu.SWWrongLength},
		{"select bad P1", sel(0x08, 0x0C, 0x01, 0x1C), nil, apdu.SWIncorrectP1P2},
		{"select bad P2", sel(0x02, 0x08, 0x01, 0x1C), nil, apdu.SWIncorrectP1P2},
		{"select unknown AID", sel(0x04, 0x0C, 0xA0, 0x00, 0x00, 0x02, 0x47, 0x10, 0x02), nil, apdu.SWFileNotFound},
		{"select application with FCI", append(sel(0x04, 0x00, aid...), 0x00), append([]byte{0x6F, 0x09, 0x84, 0x07}, aid...), apdu.SWOK},
		{"CardAccess not in the application", sel(0x02, 0x0C, 0x01, 0x1C), nil, apdu.SWFileNotFound},
		{"select MF by 3F00", sel(0x00, 0x0C, 0x3F, 0x00), []byte{}, apdu.SWOK},
		{"select EF with P1=00", sel(0x00, 0x0C, 0x01, 0x1C), []byte{}, apdu.SWOK},
		{"malformed", []byte{0x00, 0xB0, 0x00}, nil, apdu.SWWrongLength},
		{"malformed Lc", []byte{0x00, 0xB0, 0x00, 0x00, 0x05, 0x01}, nil, apdu.SWWrongLength},
		{"unknown INS", []byte{0x00, 0x20, 0x00, 0x00}, nil, apdu.SWINSNotSupported},
		{"proprietary CLA", []byte{0x80, 0xB0, 0x00, 0x00, 0x01}, nil, apdu.SWCLANotSupported},
		{"logical channel", []byte{0x01, 0xB0, 0x00, 0x00, 0x01}, nil, 0x6881},
		{"chaining", []byte{0x10, 0xB0, 0x00, 0x00, 0x01}, nil, 0x6884},
		{"SM indication 04", []byte{0x04, 0xB0, 0x00, 0x00, 0x01}, nil, 0x6882},
		{"GET RESPONSE without chain", []byte{0x00, 0xC0, 0x00, 0x00, 0x00}, nil, apdu.SWConditionsNotSatisfied},
		{"GET CHALLENGE", []byte{0x00, 0x84, 0x00, 0x00, 0x08}, nil, apdu.SWOK},
		{"GET CHALLENGE wrong Le", []byte{0x00, 0x84, 0x00, 0x00, 0x10}, nil, apdu.SWWrongLength},
		{"EXTERNAL AUTHENTICATE without challenge", append([]byte{0x00, 0x82, 0x00, 0x00, 0x28}, make([]byte, 40)...), nil, apdu.SWConditionsNotSatisfied},
		{"General Authenticate without MSE", []byte{0x10, 0x86, 0x00, 0x00, 0x02, 0x7C, 0x00, 0x00}, nil, apdu.SWConditionsNotSatisfied},
	}
	c := newCard(t, im, Options{})
	for _, s := range steps {
		r := do(t, c, s.capdu...)
		if r.SW != s.sw {
			t.Errorf("%s: SW %04X, want %04X", s.name, r.SW, s.sw)
		}
		if s.data != nil && !bytes.Equal(r.Data, s.data) {
			t.Errorf("%s: data % X, want % X", s.name, head(r.Data), head(s.data))
		}
	}
	c.Reset()
	if r := do(t, c, 0x00, 0xB0, 0x00, 0x00, 0x01); r.SW != swNoCurrentEF {
		t.Errorf("after Reset the selection must be gone: %04X", r.SW)
	}
}

func head(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func TestATR(t *testing.T) {
	for _, ext := range []bool{false, true} {
		atr := DefaultATR(ext)
		var x byte
		for _, b := range atr[1:] {
			x ^= b
		}
		if x != 0 || atr[0] != 0x3B || int(atr[1]&0x0F) != len(atr)-5 {
			t.Errorf("ATR % X: TCK check %02X", atr, x)
		}
		// Card capabilities, third byte, bit b7: extended Lc/Le.
		if got := atr[len(atr)-2]&0x40 != 0; got != ext {
			t.Errorf("ATR % X: extended bit %v", atr, got)
		}
	}
	im, _ := issue(t, smallJPEG(t), nil)
	im.Meta.ATR = "3B8180018080"
	c := newCard(t, im, Options{})
	if !bytes.Equal(c.ATR(), []byte{0x3B, 0x81, 0x80, 0x01, 0x80, 0x80}) {
		t.Fatalf("ATR from the image: % X", c.ATR())
	}
	if !bytes.Equal(newCard(t, im, Options{}).ATR(), c.ATR()) {
		t.Fatal("ATR not stable")
	}
}

// TestSecureMessagingFailures: a command failing the SM check is answered
// in plain and ends the session; so does a plain command; Reset ends it too.
func TestSecureMessagingFailures(t *testing.T) {
	im, _ := issue(t, smallJPEG(t), nil)
	ctx := context.Background()
	setup := func(t *testing.T) (*Card, *apdu.Channel, *sm.Session) {
		c := newCard(t, im, Options{})
		ch := channel(c, false)
		res := establishPACE(t, ch, pace.CANPassword(testCAN))
		if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
			t.Fatal(err)
		}
		return c, ch, res.Session
	}
	readDG1 := func(ch *apdu.Channel) error { _, err := ch.ReadFile(ctx, 0x0101); return err }

	t.Run("bad MAC", func(t *testing.T) {
		c, ch, s := setup(t)
		w, err := s.Wrap(apdu.Command{INS: 0xB0, P1: 0x81, Ne: 4})
		if err != nil {
			t.Fatal(err)
		}
		w.Data[len(w.Data)-1] ^= 1
		raw, _ := w.Encode(false)
		if r := do(t, c, raw...); r.SW != apdu.SWSMDataObjectsIncorrect || len(r.Data) != 0 {
			t.Fatalf("tampered MAC: % X %04X", r.Data, r.SW)
		}
		if a, _ := c.Session(); a != AuthNone {
			t.Fatal("session survived a bad MAC")
		}
		// The terminal's session is out of step now; the card has none.
		if err := readDG1(ch); err == nil {
			t.Fatal("read after the session was dropped")
		}
	})
	t.Run("missing MAC", func(t *testing.T) {
		c, _, _ := setup(t)
		if r := do(t, c, 0x0C, 0xB0, 0x81, 0x00, 0x03, 0x97, 0x01, 0x04, 0x00); r.SW != apdu.SWSMDataObjectsMissing {
			t.Fatalf("no DO'8E': %04X", r.SW)
		}
		if a, _ := c.Session(); a != AuthNone {
			t.Fatal("session survived")
		}
	})
	t.Run("plain command in session", func(t *testing.T) {
		c, ch, _ := setup(t)
		if r := do(t, c, 0x00, 0xB0, 0x81, 0x00, 0x04); r.SW != apdu.SWSMDataObjectsMissing {
			t.Fatalf("plain read in session: %04X", r.SW)
		}
		if a, _ := c.Session(); a != AuthNone {
			t.Fatal("session survived")
		}
		// Authenticate again: PACE works (from the MF, as a terminal does).
		ch.SetWrapper(nil)
		if err := ch.SelectMF(ctx); err != nil {
			t.Fatal(err)
		}
		establishPACE(t, ch, pace.CANPassword(testCAN))
		if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
			t.Fatal(err)
		}
		if err := readDG1(ch); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("select application again keeps the session", func(t *testing.T) {
		c, ch, _ := setup(t)
		for range 2 {
			if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
				t.Fatal(err)
			}
			if err := readDG1(ch); err != nil {
				t.Fatal(err)
			}
		}
		if err := ch.SelectMF(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ch.ReadFile(ctx, lds.FIDCardAccess); err != nil {
			t.Fatalf("EF.CardAccess inside SM: %v", err)
		}
		if a, _ := c.Session(); a != AuthPACE {
			t.Fatal("session lost")
		}
		// PACE commands inside SM are refused, protected.
		if _, err := ch.Do(ctx, apdu.Command{INS: 0x22, P1: 0xC1, P2: 0xA4, Data: []byte{0x83, 0x01, 0x02}}); !apdu.IsSW(err, apdu.SWConditionsNotSatisfied) {
			t.Fatalf("MSE inside SM: %v", err)
		}
		if err := readDG1(ch); !apdu.IsSW(err, swNoCurrentEF) && !apdu.IsSW(err, apdu.SWFileNotFound) {
			t.Fatalf("DG1 from the MF: %v", err)
		}
	})
	t.Run("reset drops the session", func(t *testing.T) {
		c, ch, _ := setup(t)
		if err := readDG1(ch); err != nil {
			t.Fatal(err)
		}
		c.Reset()
		if a, _ := c.Session(); a != AuthNone {
			t.Fatal("session survived Reset")
		}
		err := readDG1(ch)
		if !apdu.IsSW(err, apdu.SWSMDataObjectsIncorrect) {
			t.Fatalf("protected read after Reset: %v", err)
		}
		ch.SetWrapper(nil)
		if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
			t.Fatal(err)
		}
		if err := readDG1(ch); !apdu.IsSW(err, apdu.SWSecurityNotSatisfied) {
			t.Fatalf("plain read after Reset: %v", err)
		}
	})
}

// TestHooks: a profile can serve other data under a valid MAC (passive
// authentication must catch it) and mangle the raw bytes.
func TestHooks(t *testing.T) {
	im, trust := issue(t, smallJPEG(t), nil)
	ctx := context.Background()
	t.Run("Response alters DG1 under a valid MAC", func(t *testing.T) {
		var selected []byte
		c := newCard(t, im, Options{Hooks: Hooks{Response: func(cmd apdu.Command, r apdu.Response) apdu.Response {
			if cmd.INS == 0xA4 {
				selected = bytes.Clone(cmd.Data)
			}
			if cmd.INS == 0xB0 && bytes.Equal(selected, []byte{0x01, 0x01}) && len(r.Data) > 20 {
				r.Data = bytes.Clone(r.Data)
				r.Data[20] ^= 0x01 // a character of the MRZ
			}
			return r
		}}})
		ch := channel(c, true)
		establishPACE(t, ch, pace.CANPassword(testCAN))
		_, v := readDocument(t, ch, trust)
		if v.Passed || !slices.Contains(v.Codes(), "dg_hash_mismatch:DG1") {
			t.Fatalf("passive authentication passed an altered DG1: %v", v.Codes())
		}
	})
	t.Run("Mutate flips a MAC bit", func(t *testing.T) {
		var armed bool
		c := newCard(t, im, Options{Hooks: Hooks{Mutate: func(cmd apdu.Command, r []byte) []byte {
			if armed && cmd.INS == 0xB0 && len(r) > 4 {
				r[len(r)-3] ^= 0x80
			}
			return r
		}}})
		ch := channel(c, true)
		establishPACE(t, ch, pace.CANPassword(testCAN))
		if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
			t.Fatal(err)
		}
		armed = true
		if _, err := ch.ReadFile(ctx, 0x0101); !errors.Is(err, sm.ErrBadMAC) {
			t.Fatalf("terminal accepted a bad MAC: %v", err)
		}
	})
	t.Run("a panicking hook answers 6F00 and is logged", func(t *testing.T) {
		sink := &logSink{}
		c := newCard(t, im, Options{Logger: slog.New(sink), Hooks: Hooks{Response: func(cmd apdu.Command, r apdu.Response) apdu.Response {
			if cmd.INS == 0x84 {
				panic("profile bug")
			}
			return r
		}}})
		if r := do(t, c, 0x00, 0x84, 0x00, 0x00, 0x08); r.SW != apdu.SWUnknown {
			t.Fatalf("SW %04X", r.SW)
		}
		if !sink.has("ERROR vcard: panic") {
			t.Fatalf("panic not logged: %v", sink.recs)
		}
		if _, err := bac.Authenticate(ctx, channel(c, false), testKey, bac.Options{}); !apdu.IsSW(err, apdu.SWUnknown) {
			t.Fatalf("card after a panic: %v", err)
		}
		if _, err := pace.Establish(ctx, channel(c, false), pace.CANPassword(testCAN), paceInfo(t, channel(c, false)), pace.Options{}); err != nil {
			t.Fatalf("card unusable after a panic: %v", err)
		}
	})
}

func TestNewRejectsBadImages(t *testing.T) {
	if _, err := New(nil, Options{}); !errors.Is(err, ErrImage) {
		t.Fatalf("nil image: %v", err)
	}
	im, _ := issue(t, smallJPEG(t), nil)
	bad := *im
	bad.Meta.PACE = nil // a PACE image (EF.CardAccess) without PACE parameters
	if _, err := New(&bad, Options{}); !errors.Is(err, ErrImage) {
		t.Fatalf("inconsistent image: %v", err)
	}
	bad = *im
	bad.Meta.PACE = &cardimage.PACE{OID: "0.4.0.127.0.7.2.2.4.3.1", ParameterID: 13}
	if _, err := New(&bad, Options{}); !errors.Is(err, ErrImage) {
		t.Fatalf("unsupported PACE protocol: %v", err)
	}
	// The card keeps its own copy of the files.
	c := newCard(t, im, Options{})
	orig := bytes.Clone(im.Files[lds.FIDCardAccess])
	im.Files[lds.FIDCardAccess][0] ^= 0xFF
	got, err := channel(c, false).ReadFile(context.Background(), lds.FIDCardAccess)
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("card shares the image's buffers: %v", err)
	}
}

// TestConcurrentUse runs Process, Reset and ATR from several goroutines
// (meaningful under -race): vpcd's reader goroutine and a caller's Reset.
func TestConcurrentUse(t *testing.T) {
	im, _ := issue(t, smallJPEG(t), func(o *issuer.Options) { o.BACOnly = true })
	c := newCard(t, im, Options{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				switch (i + j) % 4 {
				case 0:
					c.Reset()
				case 1:
					_ = c.ATR()
				default:
					if r := c.Process([]byte{0x00, 0x84, 0x00, 0x00, 0x08}); len(r) != 10 {
						t.Errorf("GET CHALLENGE: % X", r)
					}
				}
			}
		})
	}
	wg.Wait()
	if _, err := bac.Authenticate(context.Background(), channel(c, false), testKey, bac.Options{}); err != nil {
		t.Fatal(err)
	}
}

// A PACE-CAM chip serves EF.CardSecurity from the master file, after PACE
// only, and its mapping data proves the key EF.CardSecurity publishes.
func TestPACECAMCardSecurity(t *testing.T) {
	im, trust := issue(t, smallJPEG(t), func(o *issuer.Options) {
		o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHCAMAES128, ParameterID: issuer.ParamBrainpoolP256}
		o.ChipAuth = &issuer.CAParams{}
	})
	c := newCard(t, im, Options{})
	ctx := context.Background()
	ch := channel(c, false)
	if _, err := ch.ReadFile(ctx, lds.FIDCardSecurity); !apdu.IsSW(err, apdu.SWSecurityNotSatisfied) {
		t.Fatalf("plain read of EF.CardSecurity: %v", err)
	}
	res := establishPACE(t, ch, pace.CANPassword("123456"))
	if res.CAM == nil {
		t.Fatal("no CAM data from a PACE-CAM chip")
	}
	b, err := ch.ReadFile(ctx, lds.FIDCardSecurity)
	if err != nil || !bytes.Equal(b, im.CardSecurity) {
		t.Fatalf("EF.CardSecurity over SM: %v", err)
	}
	cs, pr := pa.VerifyCardSecurity(b, nil, trust.Store(), pa.Options{At: time.Now()})
	if !pr.Passed {
		t.Fatalf("EF.CardSecurity: %v", pr.Codes())
	}
	key, err := pubkey.ParseSPKI(cs.Infos.CAKeys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.CAM.Verify(key.EC.Bytes()); err != nil {
		t.Fatalf("CAM: %v", err)
	}
	// The application's EF.SOD still answers at 011D once selected.
	if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
		t.Fatal(err)
	}
	if sod, err := ch.ReadFile(ctx, lds.FIDSOD); err != nil || !bytes.Equal(sod, im.Files[lds.FIDSOD]) {
		t.Fatalf("EF.SOD: %v", err)
	}
}
