package emrtd

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/emrtd/aa"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/provisioning/issuer"
)

// modern is a document with both chip protocols, as issued today.
func modern(o *issuer.Options) {
	o.ChipAuth = &issuer.CAParams{ExplicitParams: true}
	o.ActiveAuth = issuer.AAECDSAP256
}

// legacy is a document whose chip supports neither protocol (its DG14
// holds EF.CardAccess's PACEInfo only).
func legacy(o *issuer.Options) { o.ChipAuth = nil }

// aaOnly is a document with Active Authentication alone.
func aaOnly(alg issuer.AAAlg) func(*issuer.Options) {
	return func(o *issuer.Options) { o.ChipAuth, o.ActiveAuth = nil, alg }
}

func readWith(t *testing.T, mod func(*issuer.Options), opts Options) *Report {
	t.Helper()
	img, trust := issue(t, mod)
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Password, opts.Trust, opts.ATR = Password{Kind: CAN, Secret: "123456"}, trust, card.ATR()
	r, err := Read(context.Background(), &handlerTransport{h: card}, opts)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return r
}

func TestChipAuthenticityGenuine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mod      func(*issuer.Options)
		ca, aa   bool
		protocol string
		alg      string
	}{
		{"CA brainpool AES + AA ECDSA", modern, true, true, "id-CA-ECDH-AES-CBC-CMAC-128", "ECDSA-SHA256"},
		{"CA P-256 3DES + AA RSA SHA-1", func(o *issuer.Options) {
			o.ChipAuth = &issuer.CAParams{Cipher: smcrypto.TDES, ParameterID: issuer.ParamNISTP256, KeyID: 5}
			o.ActiveAuth = issuer.AARSA2048
		}, true, true, "id-CA-ECDH-3DES-CBC-CBC", "RSA-ISO9796-2-SHA1"},
		{"CA AES-256 on BAC + AA RSA SHA-256", func(o *issuer.Options) {
			o.BACOnly = true
			o.ChipAuth = &issuer.CAParams{Cipher: smcrypto.AES256}
			o.ActiveAuth, o.AAHash = issuer.AARSA2048, crypto.SHA256
		}, true, true, "id-CA-ECDH-AES-CBC-CMAC-256", "RSA-ISO9796-2-SHA256"},
		{"CA DH only", func(o *issuer.Options) { o.ChipAuth = &issuer.CAParams{DH: true} }, true, false, "id-CA-DH-AES-CBC-CMAC-128", ""},
		{"AA only", aaOnly(issuer.AAECDSAP256), false, true, "", "ECDSA-SHA256"},
		{"AA RSA only", aaOnly(issuer.AARSA2048), false, true, "", "RSA-ISO9796-2-SHA1"},
		// DG14 with the key but no ChipAuthenticationInfo: 3DES assumed.
		{"CA without ChipAuthenticationInfo", func(o *issuer.Options) {
			o.ChipAuth = &issuer.CAParams{Cipher: smcrypto.TDES, NoInfo: true}
		}, true, false, "id-CA-ECDH-3DES-CBC-CBC", ""},
		{"CA without ChipAuthenticationInfo, on BAC", func(o *issuer.Options) {
			o.BACOnly, o.ChipAuth = true, &issuer.CAParams{Cipher: smcrypto.TDES, NoInfo: true, DH: true}
		}, true, false, "id-CA-DH-3DES-CBC-CBC", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, trust := issue(t, tc.mod)
			card, err := vcard.New(img, vcard.Options{})
			if err != nil {
				t.Fatal(err)
			}
			pw := Password{Kind: CAN, Secret: "123456"}
			if img.Meta.BAC {
				pw = mrzOf(img)
			}
			r, err := Read(context.Background(), &handlerTransport{h: card}, Options{Password: pw, Trust: trust, ATR: card.ATR(), AATransaction: []byte("txn-42")})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Passed {
				t.Fatalf("failures %v; CA %+v AA %+v", r.Failures, r.ChipAuthentication, r.ActiveAuthentication)
			}
			if c := r.ChipAuthentication; c.Ran != tc.ca || c.OK != tc.ca || (tc.ca && c.Protocol != tc.protocol) {
				t.Fatalf("CA %+v", c)
			}
			a := r.ActiveAuthentication
			if a.Ran != tc.aa || a.OK != tc.aa || (tc.aa && (a.Algorithm != tc.alg || !a.TransactionBound || a.Challenge != hex.EncodeToString(aa.ChallengeFor([]byte("txn-42"))))) {
				t.Fatalf("AA %+v", a)
			}
			if tc.ca && r.PhasesMS["chip_authentication"] <= 0 {
				t.Fatalf("no CA time: %v", r.PhasesMS)
			}
		})
	}
}

func TestCloneDetected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*issuer.Options)
		code   string
		caRan  bool
		caOK   bool
		aaRan  bool
		policy Policy
	}{
		{"clone CA", func(o *issuer.Options) { modern(o); o.ClonedCA = true }, CodeCAFailed, true, false, false, ""},
		{"clone CA 3DES", func(o *issuer.Options) {
			o.ChipAuth, o.ClonedCA = &issuer.CAParams{Cipher: smcrypto.TDES}, true
		}, CodeCAFailed, true, false, false, ""},
		{"clone AA", func(o *issuer.Options) { modern(o); o.ClonedAA = true }, CodeAAFailed, true, true, true, ""},
		{"clone AA RSA", func(o *issuer.Options) { aaOnly(issuer.AARSA2048)(o); o.ClonedAA = true }, CodeAAFailed, false, false, true, ""},
		// Even under a CA-only policy a failed AA is evidence of a clone.
		{"clone AA, policy ca", func(o *issuer.Options) { modern(o); o.ClonedAA = true }, CodeAAFailed, true, true, true, PolicyCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := readWith(t, tc.mod, Options{RequireChipAuthenticity: tc.policy})
			if r.Passed || !hasCheck(r, tc.code) || !hasCheck(r, CodeClone) {
				t.Fatalf("passed %v failures %v", r.Passed, r.Failures)
			}
			if r.ChipAuthentication.Ran != tc.caRan || r.ChipAuthentication.OK != tc.caOK || r.ActiveAuthentication.Ran != tc.aaRan || r.ActiveAuthentication.OK {
				t.Fatalf("CA %+v AA %+v", r.ChipAuthentication, r.ActiveAuthentication)
			}
			// Passive authentication itself passed: the SOD is genuine.
			for _, c := range r.Checks {
				if c.Name == "passive_authentication" && !c.OK {
					t.Fatal("PA failed")
				}
			}
		})
	}
}

func TestChipAuthenticityPolicy(t *testing.T) {
	// A document whose chip supports neither protocol fails under every
	// policy but "none": chip authenticity is required (fail closed).
	for policy, code := range map[Policy]string{"": CodeAuthenticityUnavailable, PolicyAny: CodeAuthenticityUnavailable,
		PolicyCA: CodeCAUnavailable, PolicyAA: CodeAAUnavailable} {
		r := readWith(t, legacy, Options{RequireChipAuthenticity: policy})
		if r.Passed || !hasCheck(r, code) || r.ChipAuthentication.Ran || r.ActiveAuthentication.Ran {
			t.Fatalf("legacy/%q: %v", policy, r.Failures)
		}
		if r.Document.Type != "P" {
			t.Fatalf("legacy/%q: DG1 not read: %+v", policy, r.Document)
		}
	}
	// AA-only document under "ca": CA is required but missing.
	if r := readWith(t, aaOnly(issuer.AAECDSAP256), Options{RequireChipAuthenticity: PolicyCA}); r.Passed || !hasCheck(r, CodeCAUnavailable) || !r.ActiveAuthentication.OK {
		t.Fatalf("AA-only/ca: %v", r.Failures)
	}
	// "none" runs nothing, even on a clone.
	if r := readWith(t, func(o *issuer.Options) { modern(o); o.ClonedCA = true }, Options{RequireChipAuthenticity: PolicyNone}); !r.Passed || r.ChipAuthentication.Ran {
		t.Fatalf("none: %v", r.Failures)
	}
	// An invalid policy fails closed.
	if r := readWith(t, modern, Options{RequireChipAuthenticity: "sometimes"}); r.Passed {
		t.Fatal("invalid policy passed")
	}
	// When the SOD does not verify, neither runs (the DG14/DG15 keys are
	// not trusted) and no personal data is read.
	r := readWith(t, func(o *issuer.Options) { modern(o); o.UnknownCSCA = true }, Options{})
	if r.Passed || r.ChipAuthentication.Ran || r.ActiveAuthentication.Ran || hasCheck(r, CodeClone) || !hasCheck(r, "csca_unknown") {
		t.Fatalf("PA failed: %v CA %+v", r.Failures, r.ChipAuthentication)
	}
	if slices.Contains(r.DataGroups, "DG1") || r.Document.DocumentNumber != "" || r.Face != nil {
		t.Fatalf("personal data read from an unverified chip: %v %+v", r.DataGroups, r.Document)
	}
	// A data group altered after signing: the chip is genuine (CA and AA
	// pass), the DG2 hash does not match.
	r = readWith(t, func(o *issuer.Options) { modern(o); o.AlterDGAfterSigning = 2 }, Options{})
	if r.Passed || !r.ChipAuthentication.OK || !r.ActiveAuthentication.OK || !hasCheck(r, "dg_hash_mismatch") {
		t.Fatalf("DG2 altered: %v CA %+v", r.Failures, r.ChipAuthentication)
	}
}

// Legacy documents pass only when their type is exempted, and the
// exemption covers only chips that support neither protocol, under
// policy "any".
func TestExemptLegacyTypes(t *testing.T) {
	bacOnly := func(o *issuer.Options) { o.ChipAuth, o.BACOnly = nil, true }
	paceNoDG14 := func(o *issuer.Options) { o.ChipAuth, o.PACEWithoutDG14 = nil, true }
	for _, tc := range []struct {
		name   string
		mod    func(*issuer.Options)
		exempt []string
		policy Policy
		codes  []string // failures; nil = passes
	}{
		{name: "legacy PACE, nothing exempt", mod: legacy, codes: []string{CodeAuthenticityUnavailable}},
		{name: "legacy PACE, P exempt", mod: legacy, exempt: []string{"P"}},
		{name: "legacy PACE, all exempt", mod: legacy, exempt: []string{"*"}},
		{name: "legacy PACE, only I exempt", mod: legacy, exempt: []string{"I", "ID"}, codes: []string{CodeAuthenticityUnavailable}},
		{name: "legacy TD1, I exempt", mod: func(o *issuer.Options) { legacy(o); o.DocType = issuer.TD1 }, exempt: []string{"I"}},
		{name: "BAC, neither DG14 nor DG15", mod: bacOnly, codes: []string{CodeAuthenticityUnavailable}},
		{name: "BAC, neither DG14 nor DG15, P exempt", mod: bacOnly, exempt: []string{"P"}},
		{name: "PACE without DG14", mod: paceNoDG14, codes: []string{CodeCardAccessUnauthenticated, CodeAuthenticityUnavailable}},
		{name: "PACE without DG14, P exempt", mod: paceNoDG14, exempt: []string{"P"}},
		// Policy "ca" demands CA of every document: no exemption.
		{name: "legacy PACE, P exempt, policy ca", mod: legacy, exempt: []string{"P"}, policy: PolicyCA, codes: []string{CodeCAUnavailable}},
		// A chip that supports a protocol must pass it: no exemption.
		{name: "clone, P exempt", mod: func(o *issuer.Options) { modern(o); o.ClonedCA = true }, exempt: []string{"P"}, codes: []string{CodeCAFailed, CodeClone}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, trust := issue(t, tc.mod)
			card, err := vcard.New(img, vcard.Options{})
			if err != nil {
				t.Fatal(err)
			}
			pw := Password{Kind: CAN, Secret: "123456"}
			if img.Meta.BAC {
				pw = mrzOf(img)
			}
			var logBuf bytes.Buffer
			r, err := Read(context.Background(), &handlerTransport{h: card}, Options{Password: pw, Trust: trust, ATR: card.ATR(),
				ExemptTypes: tc.exempt, RequireChipAuthenticity: tc.policy, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if tc.codes == nil {
				if !r.Passed {
					t.Fatalf("failures %v", r.Failures)
				}
				// The exemption is visible: in the report and in the log.
				if !strings.Contains(logBuf.String(), "exempted") || !hasCheck(r, CodeAuthenticityUnavailable) {
					t.Fatalf("exemption not reported: %s %+v", logBuf.String(), r.Checks)
				}
				return
			}
			if r.Passed || !slices.Equal(r.Failures, tc.codes) {
				t.Fatalf("failures %v, want %v", r.Failures, tc.codes)
			}
		})
	}
}

// EF.CardAccess must be what the signed DG14 says: a rewritten one (the
// parameters a man in the middle chose) or a hidden one (BAC forced on a
// PACE chip) ends the read before any personal data.
func TestCardAccessAuthenticated(t *testing.T) {
	r := readWith(t, func(o *issuer.Options) { modern(o); o.CardAccessMismatch = true }, Options{})
	if r.Passed || !slices.Equal(r.Failures, []string{CodeCardAccessMismatch}) || r.ChipAuthentication.Ran {
		t.Fatalf("mismatch: %v CA %+v", r.Failures, r.ChipAuthentication)
	}
	if slices.Contains(r.DataGroups, "DG1") {
		t.Fatalf("DG1 read after a card access mismatch: %v", r.DataGroups)
	}
	// A PACE chip whose EF.CardAccess is hidden, read with BAC: DG14
	// says PACE.
	img, trust := issue(t, modern)
	delete(img.Files, lds.FIDCardAccess)
	img.Meta.PACE, img.Meta.BAC = nil, true
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err = Read(context.Background(), &handlerTransport{h: card}, Options{Password: mrzOf(img), Trust: trust, ATR: card.ATR()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Access.Protocol != "BAC" || r.Passed || !slices.Equal(r.Failures, []string{CodeCardAccessMismatch}) {
		t.Fatalf("hidden EF.CardAccess: %s %v", r.Access.Protocol, r.Failures)
	}
	// A genuine PACE chip passes the check, and says so.
	r = readWith(t, modern, Options{})
	ok := false
	for _, c := range r.Checks {
		ok = ok || (c.Name == checkCardAccessAuth && c.OK)
	}
	if !r.Passed || !ok {
		t.Fatalf("genuine: %v %+v", r.Failures, r.Checks)
	}
}

// orderTransport records each command's INS P1 P2.
type orderTransport struct {
	handlerTransport
	cmds [][3]byte
}

func (o *orderTransport) Transmit(ctx context.Context, capdu []byte) ([]byte, error) {
	if len(capdu) >= 4 {
		o.cmds = append(o.cmds, [3]byte{capdu[1], capdu[2], capdu[3]})
	}
	return o.handlerTransport.Transmit(ctx, capdu)
}

// TR-03135 order: the chip authenticates (CA's MSE:Set AT 22 41 A4,
// then AA's INTERNAL AUTHENTICATE 88) before DG1 and DG2 are read, and
// the files come in the documented order.
func TestReadOrder(t *testing.T) {
	img, trust := issue(t, modern)
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &orderTransport{handlerTransport: handlerTransport{h: card}}
	at := map[string]int{}
	r, err := Read(context.Background(), tr, Options{Password: Password{Kind: CAN, Secret: "123456"}, Trust: trust, ATR: card.ATR(),
		Progress: func(p Progress) { at[p.Name] = len(tr.cmds) }})
	if err != nil || !r.Passed {
		t.Fatalf("%v %v", err, r.Failures)
	}
	if want := []string{"EF.COM", "EF.SOD", "DG14", "DG15", "DG1", "DG2"}; !slices.Equal(r.DataGroups, want) {
		t.Fatalf("files read %v, want %v", r.DataGroups, want)
	}
	caAt, aaAt := -1, -1
	for i, c := range tr.cmds {
		switch {
		case c == [3]byte{0x22, 0x41, 0xA4} && caAt < 0:
			caAt = i
		case c[0] == 0x88 && aaAt < 0:
			aaAt = i
		}
	}
	if caAt < 0 || aaAt < caAt || aaAt >= at["DG1"] || at["DG1"] < at["chip_authenticity"] {
		t.Fatalf("CA at %d, AA at %d, DG1 from %d (steps %v)", caAt, aaAt, at["DG1"], at)
	}
}

func startPCSC(b *testing.B, mod func(*issuer.Options)) (func(opts Options) *Report, func()) {
	srv := pcscdtest.Start(b, 1)
	img, trust := issue(b, mod)
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = vpcd.Serve(ctx, srv.VPCDAddr(0), card, nil) }()
	// Every read starts from a reset chip (as the kiosk's next customer
	// does): connect, read, close with reset. The metrics are the
	// report's own phase times, so the reconnect is not counted.
	drv := pcsc.New(pcsc.Options{TransmitTimeout: 5 * time.Second, ResetOnClose: true})
	read := func(opts Options) *Report {
		c := connect(b, drv)
		defer c.Close()
		opts.Password, opts.Trust, opts.ATR = Password{Kind: CAN, Secret: "123456"}, trust, c.ATR()
		r, err := Read(ctx, c, opts)
		if err != nil || !r.Passed {
			b.Fatalf("%v %v", err, r.Failures)
		}
		r.Wipe()
		return r
	}
	return read, func() { drv.Wait(); cancel(); <-done }
}

// benchPhase measures one anti-cloning protocol through pcscd and vpcd:
// the phase time and the whole read with it, against the same read
// with policy "none" (the added latency).
func benchPhase(b *testing.B, mod func(*issuer.Options), phase string) {
	read, stop := startPCSC(b, mod)
	defer stop()
	var base, phaseMS, total float64
	n := 0
	for b.Loop() {
		// The same read without the protocol, interleaved so drift
		// affects both alike; timed by the report, not by b.
		base += read(Options{RequireChipAuthenticity: PolicyNone}).PhasesMS["total"]
		r := read(Options{})
		phaseMS += r.PhasesMS[phase]
		total += r.PhasesMS["total"]
		n++
	}
	base /= float64(n)
	b.ReportMetric(phaseMS/float64(n), phase+"-ms")
	b.ReportMetric(total/float64(n), "read-ms")
	b.ReportMetric(total/float64(n)-base, "added-ms")
}

// BenchmarkChipAuthenticationPCSC: CA (ECDH brainpoolP256r1, AES-128)
// through pcscd, on a document with CA only.
func BenchmarkChipAuthenticationPCSC(b *testing.B) {
	benchPhase(b, func(o *issuer.Options) { o.ChipAuth = &issuer.CAParams{ExplicitParams: true} }, "chip_authentication")
}

// BenchmarkActiveAuthenticationPCSC: AA (ECDSA P-256, SHA-256) through
// pcscd, on a document with AA only.
func BenchmarkActiveAuthenticationPCSC(b *testing.B) {
	b.Run("ECDSA-P256", func(b *testing.B) {
		benchPhase(b, aaOnly(issuer.AAECDSAP256), "active_authentication")
	})
	b.Run("RSA-2048", func(b *testing.B) {
		benchPhase(b, aaOnly(issuer.AARSA2048), "active_authentication")
	})
}
