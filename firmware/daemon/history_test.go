package daemon

import (
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/ecr"
	"kiosk/firmware/outbox"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
)

// A crash after the report reached the outbox but before its history
// entry was written: at the next start the entry is rebuilt from the
// outbox, so the till's retry gets this result, not a second payment.
func TestHistoryReconciledFromOutbox(t *testing.T) {
	dir := t.TempDir()
	key, cert, err := devkey.Generate("kiosk-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := txreport.NewSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	now := time.Now()
	r := &txreport.Report{V: txreport.Version, TxID: "tx-crash", Terminal: "kiosk-test", Merchant: "M", MerchantRef: "till-9",
		Kind: "payment", Amount: 2350, Currency: "CNY", Started: txreport.Timestamp(now.Add(-20 * time.Second)),
		Decided: txreport.Timestamp(now), Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOnline, Ref: "A-1"}}
	env, err := signer.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Put(r.TxID, env); err != nil {
		t.Fatal(err)
	}
	h, err := ecr.OpenHistory(filepath.Join(dir, "payments.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if n, err := reconcileHistory(ob, h); err != nil || n != 1 {
		t.Fatalf("reconcile: %d restored, %v", n, err)
	}
	st, ok := h.Lookup("till-9")
	if !ok || st.Request.ID != "tx-crash" || st.Request.AmountMinor != 2350 || st.Request.Currency != "CNY" || !st.Outcome.Approved {
		t.Fatalf("restored entry %+v %v", st, ok)
	}
	if n, err := reconcileHistory(ob, h); err != nil || n != 0 {
		t.Fatalf("second reconcile: %d restored, %v (want nothing to do)", n, err)
	}
}
