package bankeid_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/provisioning/bankissuer"
)

// handlerTransport is a card in the terminal's hand, in process.
type handlerTransport struct{ h cardreader.CardHandler }

func (t handlerTransport) Transmit(_ context.Context, capdu []byte) ([]byte, error) {
	return t.h.Process(capdu), nil
}

const testPIN = "246810"

var tx = bankeid.Challenge{KioskID: "kiosk-0042", TransactionID: "tx-7f3a", Amount: 2350, Currency: "CNY"}

func issue(t *testing.T, a *bankissuer.Authority, profile string) *bankcard.Card {
	t.Helper()
	im, err := a.Issue(bankissuer.Holder{Name: "ZHANG SAN", EIDNumber: "EID-3301-0001", PIN: testPIN}, profile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bankcard.New(im, bankcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every profile, SM2 and ECDSA: good cards pass with the holder's
// identity and verifiable evidence, each hostile card fails with its own
// code, and nothing else fails.
func TestProfiles(t *testing.T) {
	for _, ecdsa := range []bool{false, true} {
		a, err := bankissuer.NewAuthority("Test eID Authority", ecdsa)
		if err != nil {
			t.Fatal(err)
		}
		cards := map[string]*bankcard.Card{}
		for p := range bankcard.Profiles() {
			cards[p] = issue(t, a, p)
		}
		trust, err := a.Trust() // after issuing: the CRL lists the revoked card
		if err != nil {
			t.Fatal(err)
		}
		for p, want := range bankcard.Profiles() {
			r, err := bankeid.Read(context.Background(), handlerTransport{cards[p]}, bankeid.Options{PIN: testPIN, Trust: trust, Transaction: tx})
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if want == "" {
				if !r.Passed || len(r.Failures) != 0 {
					t.Errorf("ecdsa=%v %s: failed %v %+v", ecdsa, p, r.Failures, r.Checks)
					continue
				}
				if r.Identity.Number != "EID-3301-0001" || r.Identity.Name != "ZHANG SAN" || r.Evidence == nil {
					t.Errorf("%s: identity %+v", p, r.Identity)
					continue
				}
				num, err := bankeid.VerifyEvidence(r.Evidence, trust, time.Now(), tx)
				if err != nil || num != "EID-3301-0001" {
					t.Errorf("%s: evidence: %q %v", p, num, err)
				}
				other := tx
				other.Amount++
				if _, err := bankeid.VerifyEvidence(r.Evidence, trust, time.Now(), other); !errors.Is(err, bankeid.ErrBadSignature) {
					t.Errorf("%s: evidence accepted for another amount: %v", p, err)
				}
				continue
			}
			if r.Passed || !slices.Equal(r.Failures, []string{want}) {
				t.Errorf("ecdsa=%v %s: passed=%v failures %v, want [%s]", ecdsa, p, r.Passed, r.Failures, want)
			}
			if r.Evidence != nil {
				t.Errorf("%s: evidence from a refused card", p)
			}
		}
	}
}

// The retry counter counts down, blocks at zero, and a right PIN resets it.
func TestPINRetries(t *testing.T) {
	a, err := bankissuer.NewAuthority("Test eID Authority", false)
	if err != nil {
		t.Fatal(err)
	}
	c := issue(t, a, bankcard.ProfileGood)
	trust, err := a.Trust()
	if err != nil {
		t.Fatal(err)
	}
	read := func(pin string) *bankeid.Report {
		r, err := bankeid.Read(context.Background(), handlerTransport{c}, bankeid.Options{PIN: bankeid.PIN(pin), Trust: trust, Transaction: tx})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := read("000000")
	if !slices.Equal(r.Failures, []string{bankeid.CodePINWrong}) || r.PINRetriesLeft == nil || *r.PINRetriesLeft != 2 {
		t.Fatalf("first wrong PIN: %v, retries %v", r.Failures, r.PINRetriesLeft)
	}
	if r := read(testPIN); !r.Passed {
		t.Fatalf("right PIN after one wrong: %v", r.Failures)
	}
	if c.RetriesLeft() != 3 {
		t.Fatalf("counter %d after a right PIN, want 3", c.RetriesLeft())
	}
	read("1111")
	read("1111")
	if r := read("1111"); !slices.Equal(r.Failures, []string{bankeid.CodePINBlocked}) {
		t.Fatalf("third wrong PIN: %v", r.Failures)
	}
	if r := read(testPIN); !slices.Equal(r.Failures, []string{bankeid.CodePINBlocked}) {
		t.Fatalf("right PIN on a blocked card: %v", r.Failures)
	}
	if r := read("12a4"); r.Passed {
		t.Fatal("a PIN with a letter passed")
	}
}

// A missing or stale CRL declines (fail closed); an ICAO chip (no such
// application) is "not_bankeid".
func TestRevocationPolicyAndForeignCard(t *testing.T) {
	a, err := bankissuer.NewAuthority("Test eID Authority", false)
	if err != nil {
		t.Fatal(err)
	}
	c := issue(t, a, bankcard.ProfileGood)
	noCRL, err := bankeid.NewTrust([][]byte{a.Cert.Raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := bankeid.Read(context.Background(), handlerTransport{c}, bankeid.Options{PIN: testPIN, Trust: noCRL, Transaction: tx})
	if !slices.Equal(r.Failures, []string{bankeid.CodeCRLMissing}) {
		t.Errorf("no CRL: %v", r.Failures)
	}
	trust, _ := a.Trust()
	late := func() time.Time { return time.Now().AddDate(0, 0, 8) }
	r, _ = bankeid.Read(context.Background(), handlerTransport{c}, bankeid.Options{PIN: testPIN, Trust: trust, Transaction: tx, Now: late})
	if !slices.Equal(r.Failures, []string{bankeid.CodeCRLStale}) {
		t.Errorf("CRL past next update: %v", r.Failures)
	}
	other, _ := bankissuer.NewAuthority("Other", false)
	crl, _ := other.CRL()
	if _, err := bankeid.NewTrust([][]byte{a.Cert.Raw}, [][]byte{crl}); err == nil {
		t.Error("a CRL of an untrusted authority was accepted")
	}
	r, _ = bankeid.Read(context.Background(), handlerTransport{foreign{}}, bankeid.Options{PIN: testPIN, Trust: trust, Transaction: tx})
	if !slices.Equal(r.Failures, []string{bankeid.CodeNotBankEID}) {
		t.Errorf("foreign card: %v", r.Failures)
	}
}

type foreign struct{}

func (foreign) ATR() []byte             { return bankcard.ATR() }
func (foreign) Reset()                  {}
func (foreign) Process(c []byte) []byte { return []byte{0x6A, 0x82} }
