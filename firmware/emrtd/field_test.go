package emrtd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/provisioning/issuer"
)

// fieldCase is one document or chip of issue 4's field list: what the
// issuer makes, which chip behaviour the card profile switches on, and
// the reason the terminal must give.
type fieldCase struct {
	name    string
	mod     func(*issuer.Options)
	profile string // vcard hostile profile
	opts    func(*Options)
	code    string // "" = passes
	device  bool   // a device error (ErrDevice), not a verdict
	check   func(t *testing.T, r *Report)
}

func fieldCases() []fieldCase {
	warnCode := func(code string) func(t *testing.T, r *Report) {
		return func(t *testing.T, r *Report) {
			t.Helper()
			for _, c := range r.Checks {
				if c.OK && c.Warning && c.Code == code {
					return
				}
			}
			t.Fatalf("no warning %s in %+v", code, r.Checks)
		}
	}
	return []fieldCase{
		{name: "good, fresh CRL", check: func(t *testing.T, r *Report) {
			if r.Revocation == nil || r.Revocation.DS != pa.StatusGood || r.Revocation.CSCA != pa.StatusGood ||
				r.Revocation.CRLFresh == nil || !*r.Revocation.CRLFresh {
				t.Fatalf("revocation %+v", r.Revocation)
			}
		}},
		{name: "revoked document signer", mod: func(o *issuer.Options) { o.RevokeDS = true }, code: pa.CodeDSRevoked,
			check: func(t *testing.T, r *Report) {
				if r.Revocation == nil || r.Revocation.DS != pa.StatusRevoked {
					t.Fatalf("revocation %+v", r.Revocation)
				}
			}},
		{name: "revoked CSCA", mod: func(o *issuer.Options) { o.RevokeCSCA = true }, code: pa.CodeCSCARevoked},
		{name: "stale CRL", mod: func(o *issuer.Options) { o.StaleCRL = true }, code: pa.CodeCRLStale},
		{name: "stale CRL, policy warn", mod: func(o *issuer.Options) { o.StaleCRL = true },
			opts: func(o *Options) { o.StaleCRL = pa.CRLWarn }, check: warnCode(pa.CodeCRLStale)},
		{name: "missing CRL warns", mod: func(o *issuer.Options) { o.NoCRL = true }, check: warnCode(pa.CodeCRLMissing)},
		{name: "missing CRL, policy decline", mod: func(o *issuer.Options) { o.NoCRL = true },
			opts: func(o *Options) { o.MissingCRL = pa.CRLDecline }, code: pa.CodeCRLMissing},
		{name: "CSCA from a master list", mod: func(o *issuer.Options) { o.MasterList = issuer.MasterListGood }},
		{name: "master list with a bad signature", mod: func(o *issuer.Options) { o.MasterList = issuer.MasterListBadSignature },
			code: pa.CodeMasterListSignature},
		{name: "DG11 and DG12", mod: func(o *issuer.Options) {
			o.DG11 = &lds.DG11{FullName: "MUSTERMANN<<ERIKA", PlaceOfBirth: "BERLIN"}
			o.DG12 = &lds.DG12{IssuingAuthority: "CITY OF KOELN", DateOfIssue: "20240105"}
		}, check: func(t *testing.T, r *Report) {
			if r.Document.Details == nil || r.Document.Details.PlaceOfBirth != "BERLIN" ||
				r.Document.DocumentDetails == nil || r.Document.DocumentDetails.IssuingAuthority != "CITY OF KOELN" {
				t.Fatalf("DG11/DG12 not in the report: %+v", r.Document)
			}
		}},
		{name: "card pulled out mid-read", profile: vcard.ProfilePulled, device: true},
		{name: "malformed TLV", profile: vcard.ProfileMalformedTLV, code: "file_malformed"},
		{name: "lengths larger than the data", profile: vcard.ProfileOverlongEF, code: "file_length_mismatch"},
		{name: "endless 61xx chaining", profile: vcard.ProfileEndlessChaining, code: "response_chaining_endless"},
		{name: "wrong MAC on a response", profile: vcard.ProfileWrongMAC, code: "sm_mac_invalid"},
		{name: "response to the wrong command", profile: vcard.ProfileWrongResponse, code: "unexpected_file_content"},
		{name: "replayed response", profile: vcard.ProfileReplayedResponse, code: "sm_mac_invalid"},
	}
}

func issueField(t testing.TB, fc fieldCase) (*cardimage.Image, *pa.TrustStore) {
	t.Helper()
	o := issuer.Options{
		DocNumber: "C01X00T47", Surname: "MUSTERMANN", Given: "ERIKA", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468",
		PINRetries: 3, Photo: photo(t),
		// A document as issued today: its chip proves itself with Chip
		// Authentication (without, the default policy refuses it).
		ChipAuth: &issuer.CAParams{},
	}
	if fc.mod != nil {
		fc.mod(&o)
	}
	img, trust, err := issuer.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	if fc.profile != "" {
		img.Meta.Profile = fc.profile
	}
	// What a kiosk loads from the trust directory: write and load it.
	dir := filepath.Join(t.TempDir(), "trust")
	if err := trust.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	store, err := pa.LoadTrustStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return img, store
}

func checkField(t *testing.T, fc fieldCase, r *Report, err error) {
	t.Helper()
	if fc.device {
		if !errors.Is(err, ErrDevice) {
			t.Fatalf("want ErrDevice, got %v (failures %v)", err, r.Failures)
		}
		return
	}
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if fc.code == "" && !r.Passed {
		t.Fatalf("not passed: %v\n%+v", r.Failures, r.Checks)
	}
	if fc.code != "" && (r.Passed || !hasCheck(r, fc.code)) {
		t.Fatalf("want failed check %q, failures %v", fc.code, r.Failures)
	}
	if fc.check != nil {
		fc.check(t, r)
	}
}

// pulledTransport is the in-process reader of a card that can be pulled.
type pulledTransport struct{ card *vcard.Card }

func (p pulledTransport) Transmit(_ context.Context, capdu []byte) ([]byte, error) {
	out := p.card.Process(capdu)
	select {
	case <-p.card.Removed():
		return nil, cardreader.ErrCardRemoved
	default:
		return out, nil
	}
}

func TestFieldProfilesInProcess(t *testing.T) {
	for _, fc := range fieldCases() {
		t.Run(fc.name, func(t *testing.T) {
			img, store := issueField(t, fc)
			card, err := vcard.New(img, vcard.Options{})
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: store, ATR: card.ATR()}
			if fc.opts != nil {
				fc.opts(&opts)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := Read(ctx, pulledTransport{card}, opts)
			checkField(t, fc, r, err)
		})
	}
}

// paceCases: every Generic Mapping parameter set of 9303-11 §9.5.1 the
// terminal implements, with every cipher.
func paceCases() []issuer.PACEParams {
	var out []issuer.PACEParams
	for _, ids := range []int{0, 1, 2, 12, 13, 15, 16, 17, 18} {
		for _, c := range [][2]string{{pace.OIDECDHGM3DES, pace.OIDDHGM3DES}, {pace.OIDECDHGMAES128, pace.OIDDHGMAES128},
			{pace.OIDECDHGMAES192, pace.OIDDHGMAES192}, {pace.OIDECDHGMAES256, pace.OIDDHGMAES256}} {
			oid := c[0]
			if ids <= 2 {
				oid = c[1]
			}
			out = append(out, issuer.PACEParams{OID: oid, ParameterID: ids})
		}
	}
	return out
}

func checkPACE(t *testing.T, p issuer.PACEParams, r *Report) {
	t.Helper()
	proto, _ := pace.ProtocolByOID(p.OID)
	if !r.Passed || r.Access.Protocol != "PACE" || r.Access.ParameterID != p.ParameterID ||
		r.Access.OID != p.OID || r.Access.Cipher != proto.Cipher.String() {
		t.Fatalf("%+v: passed %v %v access %+v", p, r.Passed, r.Failures, r.Access)
	}
}

func TestEveryPACEParameterSetInProcess(t *testing.T) {
	for _, p := range paceCases() {
		t.Run(fmt.Sprintf("%s/%d", p.OID, p.ParameterID), func(t *testing.T) {
			img, trust := issue(t, func(o *issuer.Options) { o.PACE = &p })
			r, _ := readCard(t, img, trust, Password{Kind: CAN, Secret: "123456"})
			checkPACE(t, p, r)
		})
	}
}

// TestDG2JPEG2000 reads a real JPEG 2000 face (encoded by ffmpeg's
// jpeg2000 encoder) as a JP2 file and as a raw codestream, end to end.
func TestDG2JPEG2000(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs ffmpeg to encode JPEG 2000")
	}
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: install the Debian package ffmpeg (make deps)")
	}
	src := filepath.Join(t.TempDir(), "face.jpg")
	if err := os.WriteFile(src, photo(t), 0o600); err != nil {
		t.Fatal(err)
	}
	jp2Path := filepath.Join(t.TempDir(), "face.jp2")
	if out, err := exec.Command(ff, "-hide_banner", "-loglevel", "error", "-i", src, "-vf", "scale=240:-2",
		"-frames:v", "1", "-c:v", "jpeg2000", "-y", jp2Path).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
	jp2, err := os.ReadFile(jp2Path)
	if err != nil {
		t.Fatal(err)
	}
	j2k := jp2Codestream(t, jp2)
	for _, tc := range []struct {
		name, format string
		img          []byte
	}{{"JP2 file", "jp2", jp2}, {"raw codestream", "j2k", j2k}} {
		t.Run(tc.name, func(t *testing.T) {
			img, trust := issue(t, func(o *issuer.Options) { o.Photo = tc.img })
			r, _ := readCard(t, img, trust, Password{Kind: CAN, Secret: "123456"})
			if !r.Passed || r.Face == nil || !strings.EqualFold(r.Face.Format, tc.format) || r.Face.Width != 240 ||
				!bytes.Equal(r.Face.Image, tc.img) {
				t.Fatalf("passed %v %v face %+v", r.Passed, r.Failures, r.Face)
			}
		})
	}
}

// jp2Codestream returns the contents of the JP2 file's 'jp2c' box
// (ISO/IEC 15444-1 Annex I).
func jp2Codestream(t *testing.T, b []byte) []byte {
	for len(b) >= 8 {
		n := int(binary.BigEndian.Uint32(b))
		if n < 8 || n > len(b) {
			n = len(b) // 0: to the end
		}
		if string(b[4:8]) == "jp2c" {
			return b[8:n]
		}
		b = b[n:]
	}
	t.Fatal("no jp2c box")
	return nil
}

// The same through the real stack: one pcscd, the card swapped per case.
func TestFieldThroughPCSC(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs pcscd and vpcd")
	}
	srv := pcscdtest.Start(t, 1)
	drv := pcsc.New(pcsc.Options{TransmitTimeout: 5 * time.Second, ResetOnClose: true})
	defer drv.Wait()
	run := func(t *testing.T, img *cardimage.Image, store *pa.TrustStore, mod func(*Options)) (*Report, error) {
		card, err := vcard.New(img, vcard.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = vpcd.Serve(ctx, srv.VPCDAddr(0), &pullOnRemove{card, cancel}, nil) }()
		defer func() {
			cancel()
			<-done
			time.Sleep(600 * time.Millisecond) // pcscd sees the card gone
		}()
		c := connect(t, drv)
		defer c.Close()
		opts := Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: store, ATR: c.ATR()}
		if mod != nil {
			mod(&opts)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rcancel()
		start := time.Now()
		r, err := Read(rctx, c, opts)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("read took %v", d)
		}
		return r, err
	}
	for _, fc := range fieldCases() {
		t.Run(fc.name, func(t *testing.T) {
			img, store := issueField(t, fc)
			r, err := run(t, img, store, fc.opts)
			checkField(t, fc, r, err)
		})
	}
	// Each parameter set once, the ciphers rotating over them; every
	// combination runs in-process above.
	for i, p := range paceCases() {
		if i%4 != (i/4)%4 {
			continue
		}
		t.Run(fmt.Sprintf("PACE %s/%d", p.OID, p.ParameterID), func(t *testing.T) {
			img, trust := issue(t, func(o *issuer.Options) { o.PACE = &p })
			r, err := run(t, img, trust, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkPACE(t, p, r)
		})
	}
}

// pullOnRemove closes the vpcd connection when a "pulled" card leaves,
// before the answer in progress is written (as kioskctl eid emulate does).
type pullOnRemove struct {
	*vcard.Card
	pull context.CancelFunc
}

func (p *pullOnRemove) Process(capdu []byte) []byte {
	out := p.Card.Process(capdu)
	select {
	case <-p.Removed():
		p.pull()
		time.Sleep(200 * time.Millisecond)
	default:
	}
	return out
}
