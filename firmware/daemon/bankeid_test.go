package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/session"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/bankissuer"
	"kiosk/provisioning/hubstore"
)

// A payment with a bank eID card in the simulated reader: kioskd detects
// the card's driver, the PIN pad's digits go to the card (a wrong PIN
// comes back with the counter), the card signs the transaction, and with
// no enrolled face reference at the bank the payment declines with
// no_face_reference. The signed report at the embedded hub carries the
// holder's signature, which the hub verified before applying it.
func TestBankEIDPaymentThroughKioskd(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	cfg, dir := simConfigWith(t, video, nil, "")
	a, err := bankissuer.NewAuthority("Test eID Authority", false)
	if err != nil {
		t.Fatal(err)
	}
	im, err := a.Issue(bankissuer.Holder{Name: "ZHANG SAN", EIDNumber: "EID-3301-0001", PIN: "246810"}, bankcard.ProfileGood)
	if err != nil {
		t.Fatal(err)
	}
	card := filepath.Join(dir, "bankcard")
	if err := im.Save(card); err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(card, "trust")
	if err := a.WriteTrust(trust); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("sim_card = %q", filepath.Join(dir, "card"))
	if !strings.Contains(cfg, old) {
		t.Fatalf("config has no %s", old)
	}
	cfg = strings.Replace(cfg, old, fmt.Sprintf("sim_card = %q\nbankeid_trust_dir = %q", card, trust), 1)

	r := start(t, cfg)
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	createPayment(t, r, "till-bankeid", 2350)
	r.waitEvent(t, "session.insert_card", nil)
	if code, body := postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`); code != 200 {
		t.Fatalf("insert: %d %s", code, body)
	}
	r.waitEvent(t, "session.enter_password", nil)
	if code, body := postJSON(t, r.base+"/api/session/password", `{"kind":"pin","digits":"111111"}`); code != 202 {
		t.Fatalf("password: %d %s", code, body)
	}
	r.waitEventWithin(t, 30*time.Second, "session.wrong_password", nil)
	if st := r.d.session.Status(); st.PINRetriesLeft == nil || *st.PINRetriesLeft != 2 {
		t.Fatalf("retries after a wrong PIN: %v", st.PINRetriesLeft)
	}
	if code, body := postJSON(t, r.base+"/api/session/password", `{"kind":"pin","digits":"246810"}`); code != 202 {
		t.Fatalf("password: %d %s", code, body)
	}
	e := r.waitEventWithin(t, 60*time.Second, "session.result", nil)
	st := e.Data.(session.Status)
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	if st.Outcome == nil || st.Outcome.Approved || !slices.ContainsFunc(st.Outcome.Reasons, func(r session.Reason) bool { return r.Code == "no_face_reference" }) {
		t.Fatalf("outcome %+v, want a decline for no_face_reference", st.Outcome)
	}
	id := st.Request.ID

	deadline := time.Now().Add(20 * time.Second)
	for fs := r.d.tx.flow.Status(); fs.Delivered < 1 || fs.Outbox.Depth > 0; fs = r.d.tx.flow.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("report not delivered: %+v", fs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	txs, err := hubstore.All(context.Background(), &hubstore.File{Path: filepath.Join(r.d.cfg.Tx.StateDir, "hub.db")}, hubstore.ListQuery{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range txs {
		if tx.Report.TxID != id {
			continue
		}
		hs := tx.Report.HolderSignature
		if hs == nil || hs.Algorithm != "SM2-SM3" {
			t.Fatalf("report at the hub: holder signature %+v", hs)
		}
		c, err := bankeid.ParseChallenge(hs.Challenge)
		if err != nil || c.TransactionID != id || c.KioskID != "kiosk-test" || c.Amount != 2350 || c.Currency != "CNY" {
			t.Fatalf("signed challenge %+v (%v)", c, err)
		}
		return
	}
	t.Fatalf("transaction %s not at the hub (%d held)", id, len(txs))
}
