package emrtd

import (
	"context"
	"crypto"
	"encoding/hex"
	"testing"
	"time"

	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/emrtd/aa"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/provisioning/issuer"
)

// modern is a document with both chip protocols, as issued today.
func modern(o *issuer.Options) {
	o.ChipAuth = &issuer.CAParams{ExplicitParams: true}
	o.ActiveAuth = issuer.AAECDSAP256
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
		{"AA only", func(o *issuer.Options) { o.ActiveAuth = issuer.AAECDSAP256 }, false, true, "", "ECDSA-SHA256"},
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
		{"clone AA RSA", func(o *issuer.Options) { o.ActiveAuth, o.ClonedAA = issuer.AARSA2048, true }, CodeAAFailed, false, false, true, ""},
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
	// A legacy document (neither DG14 nor DG15) passes under "any" with a
	// note, fails under "ca" and "aa".
	r := readWith(t, nil, Options{})
	if !r.Passed || r.ChipAuthentication.Ran || r.ActiveAuthentication.Ran {
		t.Fatalf("legacy/any: %v", r.Failures)
	}
	for policy, code := range map[Policy]string{PolicyCA: CodeCAUnavailable, PolicyAA: CodeAAUnavailable} {
		if r := readWith(t, nil, Options{RequireChipAuthenticity: policy}); r.Passed || !hasCheck(r, code) {
			t.Fatalf("legacy/%s: %v", policy, r.Failures)
		}
	}
	// AA-only document under "ca": CA is required but missing.
	if r := readWith(t, func(o *issuer.Options) { o.ActiveAuth = issuer.AAECDSAP256 }, Options{RequireChipAuthenticity: PolicyCA}); r.Passed || !hasCheck(r, CodeCAUnavailable) || !r.ActiveAuthentication.OK {
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
	// After a failed PA, neither runs: the DG14/DG15 keys are not trusted.
	r = readWith(t, func(o *issuer.Options) { modern(o); o.AlterDGAfterSigning = 2 }, Options{})
	if r.Passed || r.ChipAuthentication.Ran || r.ActiveAuthentication.Ran || hasCheck(r, CodeClone) {
		t.Fatalf("PA failed: CA %+v", r.ChipAuthentication)
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
		benchPhase(b, func(o *issuer.Options) { o.ActiveAuth = issuer.AAECDSAP256 }, "active_authentication")
	})
	b.Run("RSA-2048", func(b *testing.B) {
		benchPhase(b, func(o *issuer.Options) { o.ActiveAuth = issuer.AARSA2048 }, "active_authentication")
	})
}
