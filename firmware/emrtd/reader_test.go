package emrtd

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/issuer"
)

// handlerTransport drives a card handler in-process and records the
// instruction bytes it saw.
type handlerTransport struct {
	h    cardreader.CardHandler
	mu   sync.Mutex
	inss []byte
}

func (t *handlerTransport) Transmit(_ context.Context, capdu []byte) ([]byte, error) {
	t.mu.Lock()
	if len(capdu) > 1 {
		t.inss = append(t.inss, capdu[1])
	}
	t.mu.Unlock()
	return t.h.Process(capdu), nil
}

func photo(t testing.TB) []byte {
	t.Helper()
	if !testing.Short() {
		b, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// -short: a generated picture keeps the protocol tests running.
	img := image.NewRGBA(image.Rect(0, 0, 120, 160))
	for y := 0; y < 160; y++ {
		for x := 0; x < 120; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 2), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func issue(t testing.TB, mod func(*issuer.Options)) (*cardimage.Image, *pa.TrustStore) {
	t.Helper()
	o := issuer.Options{
		DocNumber: "C01X00T47", Surname: "MUSTERMANN", Given: "ERIKA", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468",
		PINRetries: 3, Photo: photo(t),
		// A document as issued today: its chip proves itself with Chip
		// Authentication (without, the default policy refuses it).
		ChipAuth: &issuer.CAParams{},
	}
	if mod != nil {
		mod(&o)
	}
	img, trust, err := issuer.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return img, trust.Store()
}

func mrzOf(img *cardimage.Image) Password {
	return Password{Kind: MRZ, MRZ: bac.Key{DocumentNumber: img.Meta.MRZ.DocumentNumber, DateOfBirth: img.Meta.MRZ.Birth, DateOfExpiry: img.Meta.MRZ.Expiry}}
}

func readCard(t *testing.T, img *cardimage.Image, trust *pa.TrustStore, pw Password) (*Report, *handlerTransport) {
	t.Helper()
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &handlerTransport{h: card}
	r, err := Read(context.Background(), tr, Options{Password: pw, Trust: trust, ATR: card.ATR()})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return r, tr
}

func hasCheck(r *Report, code string) bool {
	for _, c := range r.Checks {
		if !c.OK && c.Code == code {
			return true
		}
	}
	return false
}

func TestGoodCards(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*issuer.Options)
		pw       func(*cardimage.Image) Password
		protocol string
		cipher   string
	}{
		{"PACE-CAN brainpool AES", nil, func(*cardimage.Image) Password { return Password{Kind: CAN, Secret: "123456"} }, "PACE", "AES-128"},
		{"PACE-PIN", nil, func(*cardimage.Image) Password { return Password{Kind: PIN, Secret: "2468"} }, "PACE", "AES-128"},
		{"PACE-MRZ", nil, mrzOf, "PACE", "AES-128"},
		{"PACE P-256", func(o *issuer.Options) {
			o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHGMAES128, ParameterID: issuer.ParamNISTP256}
		}, func(*cardimage.Image) Password { return Password{Kind: CAN, Secret: "123456"} }, "PACE", "AES-128"},
		{"PACE 3DES", func(o *issuer.Options) {
			o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHGM3DES, ParameterID: issuer.ParamBrainpoolP256}
		}, func(*cardimage.Image) Password { return Password{Kind: CAN, Secret: "123456"} }, "PACE", "3DES"},
		{"BAC", func(o *issuer.Options) { o.BACOnly = true }, mrzOf, "BAC", "3DES"},
		{"RSA-PSS signer, short APDUs", func(o *issuer.Options) { o.SignatureAlg = issuer.SigRSAPSS; o.ShortLengthOnly = true },
			func(*cardimage.Image) Password { return Password{Kind: CAN, Secret: "123456"} }, "PACE", "AES-128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, trust := issue(t, tt.mod)
			r, _ := readCard(t, img, trust, tt.pw(img))
			if !r.Passed {
				t.Fatalf("not passed: %v\n%+v", r.Failures, r.Checks)
			}
			if r.Access.Protocol != tt.protocol || !strings.Contains(r.Access.Cipher, tt.cipher) {
				t.Fatalf("access %+v", r.Access)
			}
			if r.Document.Surname != "MUSTERMANN" || r.Document.DocumentNumber != "C01X00T47" {
				t.Fatalf("document %+v", r.Document)
			}
			if r.Face == nil || len(r.Face.Image) < 100 || r.Face.Format != "jpeg" {
				t.Fatal("no JPEG face in the report")
			}
			if r.APDUs == 0 || r.BytesIn < len(r.Face.Image) || r.PhasesMS["access"] <= 0 {
				t.Fatalf("stats: %d APDUs, %d bytes in, phases %v", r.APDUs, r.BytesIn, r.PhasesMS)
			}
			face := r.Face.Image
			r.Wipe()
			if !bytes.Equal(face, make([]byte, len(face))) {
				t.Fatal("Wipe left face bytes")
			}
		})
	}
}

func TestDefectsFailWithTheirOwnReason(t *testing.T) {
	can := Password{Kind: CAN, Secret: "123456"}
	tests := []struct {
		name string
		mod  func(*issuer.Options)
		pw   Password
		code string
	}{
		{"DG2 altered after signing", func(o *issuer.Options) { o.AlterDGAfterSigning = 2 }, can, "dg_hash_mismatch"},
		{"DG1 altered after signing", func(o *issuer.Options) { o.AlterDGAfterSigning = 1 }, can, "dg_hash_mismatch"},
		{"unknown CSCA", func(o *issuer.Options) { o.UnknownCSCA = true }, can, "csca_unknown"},
		{"expired document signer", func(o *issuer.Options) { o.ExpiredDS = true }, can, "ds_expired"},
		{"wrong CAN", nil, Password{Kind: CAN, Secret: "654321"}, "wrong_password"},
		{"CAN on a BAC-only card", func(o *issuer.Options) { o.BACOnly = true }, can, "bac_needs_mrz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, trust := issue(t, tt.mod)
			r, _ := readCard(t, img, trust, tt.pw)
			if r.Passed {
				t.Fatal("a defective card passed")
			}
			if !hasCheck(r, tt.code) {
				t.Fatalf("no failed check %q: failures %v", tt.code, r.Failures)
			}
		})
	}
}

// PACE failing must never fall back to BAC (9303-11 §4.2), even on a chip
// that would accept BAC.
func TestNoFallbackToBAC(t *testing.T) {
	img, trust := issue(t, nil)
	r, tr := readCard(t, img, trust, Password{Kind: CAN, Secret: "000000"})
	if r.Passed || !hasCheck(r, "wrong_password") {
		t.Fatalf("wrong CAN: %v", r.Failures)
	}
	for _, ins := range tr.inss {
		if ins == 0x84 || ins == 0x82 { // GET CHALLENGE, EXTERNAL AUTHENTICATE
			t.Fatalf("terminal tried BAC after PACE failed: INS %02X in %X", ins, tr.inss)
		}
	}
}

func TestPINBlocksAfterRetries(t *testing.T) {
	img, trust := issue(t, nil)
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &handlerTransport{h: card}
	read := func(pin string) *Report {
		card.Reset()
		r, err := Read(context.Background(), tr, Options{Password: Password{Kind: PIN, Secret: pin}, Trust: trust, ATR: card.ATR()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var left []int
	for i := 0; i < 3; i++ {
		r := read("9999")
		if !hasCheck(r, "wrong_password") && !hasCheck(r, "pin_blocked") {
			t.Fatalf("attempt %d: %v", i, r.Failures)
		}
		if r.Access.RetriesLeft != nil {
			left = append(left, *r.Access.RetriesLeft)
		}
	}
	if !slices.Equal(left, []int{2, 1, 0}) {
		t.Fatalf("retries reported %v, want [2 1 0]", left)
	}
	// Now even the right PIN is refused: blocked, with its own reason.
	r := read("2468")
	if r.Passed || !hasCheck(r, "pin_blocked") {
		t.Fatalf("right PIN after blocking: %v", r.Failures)
	}
	// The CAN still opens the card.
	if r := read("x"); r.Passed {
		t.Fatal("garbage PIN passed")
	}
	card.Reset()
	r2, err := Read(context.Background(), tr, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust, ATR: card.ATR()})
	if err != nil || !r2.Passed {
		t.Fatalf("CAN after PIN blocked: %v %v", err, r2.Failures)
	}
}

// hostileTransport answers with a fixed script of garbage.
type hostileTransport struct {
	answer func(n int, capdu []byte) []byte
	n      int
}

func (h *hostileTransport) Transmit(_ context.Context, capdu []byte) ([]byte, error) {
	h.n++
	return h.answer(h.n, capdu), nil
}

func TestHostileChipNeverPanics(t *testing.T) {
	trust := pa.NewTrustStore()
	answers := map[string]func(int, []byte) []byte{
		"empty":            func(int, []byte) []byte { return nil },
		"one byte":         func(int, []byte) []byte { return []byte{0x90} },
		"endless 61xx":     func(int, []byte) []byte { return []byte{0x61, 0xFF} },
		"garbage ok":       func(n int, _ []byte) []byte { return append(bytes.Repeat([]byte{byte(n)}, 40), 0x90, 0x00) },
		"huge card access": func(int, []byte) []byte { return []byte{0x31, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x90, 0x00} },
		"6C loop":          func(int, []byte) []byte { return []byte{0x6C, 0x10} },
	}
	for name, a := range answers {
		t.Run(name, func(t *testing.T) {
			r, err := Read(context.Background(), &hostileTransport{answer: a}, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust})
			if err != nil && !errors.Is(err, ErrDevice) {
				t.Fatalf("unexpected error type: %v", err)
			}
			if r == nil || r.Passed || len(r.Failures) == 0 {
				t.Fatalf("hostile chip not failed with a reason: %+v", r)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte{0x90, 0x00}, uint8(3))
	f.Add([]byte{0x31, 0x14, 0x30, 0x12, 0x06, 0x0A, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x04, 0x02, 0x02, 0x02, 0x01, 0x02, 0x02, 0x01, 0x0D, 0x90, 0x00}, uint8(1))
	f.Fuzz(func(t *testing.T, resp []byte, every uint8) {
		// The chip answers resp to every every-th command and 9000 otherwise.
		tr := &hostileTransport{answer: func(n int, _ []byte) []byte {
			if every == 0 || n%int(every) == 0 {
				return resp
			}
			return []byte{0x90, 0x00}
		}}
		r, _ := Read(context.Background(), tr, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: pa.NewTrustStore()})
		if r != nil && r.Passed {
			t.Fatal("a scripted chip passed verification")
		}
	})
}

// The real stack: the virtual card behind pcscd, read through PC/SC.
func TestReadThroughPCSC(t *testing.T) {
	srv := pcscdtest.Start(t, 1)
	img, trust := issue(t, nil)
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = vpcd.Serve(ctx, srv.VPCDAddr(0), card, nil) }()
	drv := pcsc.New(pcsc.Options{TransmitTimeout: 5 * time.Second})
	defer drv.Wait()
	c := connect(t, drv)
	defer c.Close()
	r, err := Read(ctx, c, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust, ATR: c.ATR()})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed {
		t.Fatalf("through pcscd: %v", r.Failures)
	}
	if !r.ExtendedLength {
		t.Fatal("extended length not detected from the ATR")
	}
	t.Logf("read+verify through pcscd: %d APDUs, %d/%d bytes, phases %v", r.APDUs, r.BytesOut, r.BytesIn, r.PhasesMS)

	// Pulling the card mid-read is a device error, not a verdict.
	cancel()
	time.Sleep(800 * time.Millisecond)
	_, err = Read(context.Background(), c, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust, ATR: c.ATR()})
	if !errors.Is(err, ErrDevice) {
		t.Fatalf("read after removal: %v, want ErrDevice", err)
	}
}

func connect(t testing.TB, drv cardreader.Driver) cardreader.Card {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := drv.Connect(context.Background(), "")
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkReadVerifyPCSC is the whole inspection (PACE-CAN on
// brainpoolP256r1, EF.COM, EF.SOD, DG14, PA of the security objects,
// EF.CardAccess ⊆ DG14, Chip Authentication, DG1, a real-photo DG2,
// passive authentication) through pcscd and vpcd, as the kiosk does it.
func BenchmarkReadVerifyPCSC(b *testing.B) {
	srv := pcscdtest.Start(b, 1)
	img, trust := issue(b, nil)
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = vpcd.Serve(ctx, srv.VPCDAddr(0), card, nil) }()
	// Each read is a fresh card session: connect, read, close with a
	// reset, as the kiosk does for every shopper.
	drv := pcsc.New(pcsc.Options{TransmitTimeout: 5 * time.Second, ResetOnClose: true})
	defer drv.Wait()
	var apdus, bytesIn int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := connect(b, drv)
		r, err := Read(ctx, c, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust, ATR: c.ATR()})
		if err != nil || !r.Passed {
			b.Fatalf("%v %v", err, r.Failures)
		}
		apdus, bytesIn = r.APDUs, r.BytesIn
		r.Wipe()
		c.Close()
	}
	b.ReportMetric(float64(apdus), "apdus/read")
	b.ReportMetric(float64(bytesIn), "bytes-in/read")
}

// The read reports its steps in order, for the shopper's progress bar; a
// read that stops early (wrong CAN) stops reporting there.
func TestReadProgress(t *testing.T) {
	img, trust := issue(t, nil)
	for _, tt := range []struct {
		can  string
		want []string
	}{
		{"123456", ReadSteps()},
		{"000000", []string{"access"}},
	} {
		card, err := vcard.New(img, vcard.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		_, err = Read(context.Background(), &handlerTransport{h: card}, Options{Password: Password{Kind: CAN, Secret: tt.can}, Trust: trust,
			ATR: card.ATR(), Progress: func(p Progress) {
				if p.Step != len(got)+1 || p.Total != readSteps {
					t.Errorf("progress %+v after %v", p, got)
				}
				got = append(got, p.Name)
			}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("CAN %s: steps %v, want %v", tt.can, got, tt.want)
		}
	}
}
