package refhub

import (
	"context"
	"testing"
	"time"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/bankissuer"
)

type cardTransport struct{ c *bankcard.Card }

func (t cardTransport) Transmit(_ context.Context, b []byte) ([]byte, error) {
	return t.c.Process(b), nil
}

// The hub verifies the holder's signature in a report: against the eID
// authority, and over this report's transaction only.
func TestVerifyHolderSignature(t *testing.T) {
	a, err := bankissuer.NewAuthority("Test eID Authority", false)
	if err != nil {
		t.Fatal(err)
	}
	im, err := a.Issue(bankissuer.Holder{Name: "ZHANG SAN", EIDNumber: "EID-1", PIN: "2468"}, bankcard.ProfileGood)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := bankcard.New(im, bankcard.Options{})
	trust, err := a.Trust()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bankeid.Read(context.Background(), cardTransport{c}, bankeid.Options{PIN: "2468", Trust: trust,
		Transaction: bankeid.Challenge{KioskID: "kiosk-1", TransactionID: "tx-1", Amount: 2350, Currency: "CNY"}})
	if err != nil || !rep.Passed {
		t.Fatalf("read: %v %v", err, rep.Failures)
	}
	ev := rep.Evidence
	report := func() *txreport.Report {
		return &txreport.Report{Terminal: "kiosk-1", TxID: "tx-1", Amount: 2350, Currency: "CNY", Decided: txreport.Timestamp(time.Now()),
			HolderSignature: &txreport.HolderSignature{Profile: ev.Profile, Algorithm: ev.Algorithm, Challenge: ev.Challenge, Signature: ev.Signature, Certificate: ev.Certificate}}
	}
	h := &Hub{opts: Options{BankEIDTrust: trust}}
	if err := h.verifyHolder(report()); err != nil {
		t.Fatalf("genuine holder signature refused: %v", err)
	}
	for name, mod := range map[string]func(*txreport.Report){
		"another amount":      func(r *txreport.Report) { r.Amount = 1 },
		"another transaction": func(r *txreport.Report) { r.TxID = "tx-2" },
		"another kiosk":       func(r *txreport.Report) { r.Terminal = "kiosk-2" },
		"altered signature": func(r *txreport.Report) {
			s := append([]byte(nil), ev.Signature...)
			s[len(s)-1] ^= 1
			r.HolderSignature.Signature = s
		},
	} {
		r := report()
		mod(r)
		if err := h.verifyHolder(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	other, _ := bankissuer.NewAuthority("Other Authority", false)
	otherTrust, _ := other.Trust()
	if err := (&Hub{opts: Options{BankEIDTrust: otherTrust}}).verifyHolder(report()); err == nil {
		t.Error("accepted under another authority")
	}
	if err := (&Hub{}).verifyHolder(report()); err == nil {
		t.Error("accepted without any eID authority")
	}
}
