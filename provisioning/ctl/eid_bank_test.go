package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/provisioning/bankissuer"
)

type bankReadResult struct {
	Document string   `json:"document"`
	Kind     string   `json:"kind"`
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures"`
	Reader   string   `json:"reader"`
	Identity *struct {
		Number       string `json:"eid_number"`
		Name         string `json:"name"`
		Authority    string `json:"authority"`
		KeyAlgorithm string `json:"key_algorithm"`
	} `json:"identity"`
	Evidence *struct {
		Algorithm string `json:"algorithm"`
		Signature []byte `json:"signature"`
	} `json:"evidence"`
	PINRetriesLeft *int `json:"pin_retries_left"`
}

// The bank eID staff commands through a real pcscd + vpcd: issue a card
// of every profile, emulate it, read it. A good card exits 0 with the
// identity and "document": "bankeid"; each hostile card exits 1 with its
// own reason.
func TestBankEIDIssueEmulateRead(t *testing.T) {
	srv := pcscdtest.Start(t, 10)
	bin := buildKioskctl(t)
	run := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	emulate := func(dir string, slot int) func() {
		t.Helper()
		cmd := exec.Command(bin, "eid", "emulate", "--card", dir, "--vpcd", srv.VPCDAddr(slot))
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("emulate exited: %v\n%s", err, errb.String())
				}
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Error("emulate did not stop on SIGTERM")
			}
		}
	}
	read := func(trust string, args ...string) (int, bankReadResult, string) {
		t.Helper()
		code, out, errs := run(append([]string{"eid", "read", "--json", "--wait", "15s", "--trust", trust,
			"--kiosk-id", "kiosk-0042", "--tx-id", "tx-1", "--amount", "2350", "--currency", "CNY"}, args...)...)
		var r bankReadResult
		if code != 2 {
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("eid read output %q: %v (stderr %s)", out, err, errs)
			}
		}
		return code, r, errs
	}

	// Every card at once, one per reader slot: pcscd notices them together.
	type card struct{ alg, profile, dir string }
	var cards []card
	for _, p := range []string{bankcard.ProfileGood, bankcard.ProfileWrongPIN, bankcard.ProfileBlockedPIN,
		bankcard.ProfileRevoked, bankcard.ProfileOtherAuthority, bankcard.ProfileReplay,
		bankcard.ProfileMalformedCert, bankcard.ProfileMalformedSignature, bankcard.ProfileMalformedStatus} {
		cards = append(cards, card{"sm2", p, ""})
	}
	// The hostile profiles do not depend on the algorithm (TestProfiles
	// covers both); a good ECDSA card shows the other key type.
	cards = append(cards, card{"ecdsa-p256", bankcard.ProfileGood, ""})
	ctx, cancel := context.WithCancel(context.Background())
	var served sync.WaitGroup
	defer func() { cancel(); served.Wait() }()
	for i := range cards {
		c := &cards[i]
		c.dir = filepath.Join(t.TempDir(), c.alg+"-"+c.profile)
		if i == 0 {
			// The good card through the staff commands themselves.
			if code, out, errs := run("eid", "issue", "--kind", "bankeid", "--out", c.dir, "--profile", c.profile,
				"--algorithm", c.alg, "--pin", "246810", "--name", "ZHANG SAN", "--eid-number", "EID-3301-0001"); code != 0 {
				t.Fatalf("issue %s: %d %s %s", c.profile, code, out, errs)
			}
			defer emulate(c.dir, i)()
			continue
		}
		// The others in process (the same issuer and card code, without
		// a process start each on a loaded machine).
		a, err := bankissuer.NewAuthority("Test eID Authority", c.alg == "ecdsa-p256")
		if err != nil {
			t.Fatal(err)
		}
		im, err := a.Issue(bankissuer.Holder{Name: "ZHANG SAN", EIDNumber: "EID-3301-0001", PIN: "246810"}, c.profile)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.WriteTrust(filepath.Join(c.dir, "trust")); err != nil {
			t.Fatal(err)
		}
		vc, err := bankcard.New(im, bankcard.Options{})
		if err != nil {
			t.Fatal(err)
		}
		served.Add(1)
		go func() {
			defer served.Done()
			_ = vpcd.Serve(ctx, srv.VPCDAddr(i), vc, nil)
		}()
	}
	for i, c := range cards {
		trust := filepath.Join(c.dir, "trust")
		rd := func(args ...string) (int, bankReadResult, string) {
			return read(trust, append([]string{"--reader", srv.ReaderName(i)}, args...)...)
		}
		code, r, errs := rd("--pin", "246810")
		want := bankcard.Profiles()[c.profile]
		if want != "" {
			if code != 1 || r.Passed || !slices.Equal(r.Failures, []string{want}) || !strings.Contains(errs, "refused: "+want) {
				t.Errorf("%s: code %d failures %v, want exit 1 with [%s]; stderr %s", c.profile, code, r.Failures, want, errs)
			}
			continue
		}
		if code != 0 || !r.Passed || r.Document != "bankeid" || r.Identity == nil || r.Identity.Number != "EID-3301-0001" ||
			r.Identity.Name != "ZHANG SAN" || r.Evidence == nil || len(r.Evidence.Signature) == 0 || r.Reader != srv.ReaderName(i) {
			t.Errorf("%s %s: code %d %+v %s", c.alg, c.profile, code, r, errs)
			continue
		}
		if wantKey := map[string]string{"sm2": "SM2", "ecdsa-p256": "ECDSA-P256"}[c.alg]; r.Identity.KeyAlgorithm != wantKey {
			t.Errorf("%s: key %s", c.alg, r.Identity.KeyAlgorithm)
		}
		if c.alg != "sm2" {
			continue
		}
		// A wrong PIN: exit 1 and the counter; the right one passes and
		// resets it. A bank eID takes only a PIN.
		if code, r, _ := rd("--pin", "111111"); code != 1 || !slices.Equal(r.Failures, []string{"pin_wrong"}) ||
			r.PINRetriesLeft == nil || *r.PINRetriesLeft != 2 {
			t.Errorf("wrong PIN: code %d %v %v", code, r.Failures, r.PINRetriesLeft)
		}
		if code, _, errs := rd("--pin", "246810"); code != 0 {
			t.Errorf("right PIN after a wrong one: %d %s", code, errs)
		}
		if code, _, _ := rd("--can", "123456"); code != 2 {
			t.Errorf("bank eID with --can: exit %d, want 2", code)
		}
	}
}
