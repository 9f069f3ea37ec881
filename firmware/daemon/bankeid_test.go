package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/bankissuer"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

// bankEIDKiosk is a simulated kiosk whose reader holds a good bank eID
// card of ZHANG SAN (EID-3301-0001, PIN 246810) and trusts its authority.
func bankEIDKiosk(t *testing.T, video string) string {
	t.Helper()
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
	return strings.Replace(cfg, old, fmt.Sprintf("sim_card = %q\nbankeid_trust_dir = %q", card, trust), 1)
}

// payBankEID pays at the till with the bank eID card: a wrong PIN first
// (it comes back with the counter), then the right one.
func payBankEID(t *testing.T, r *running, ref string) session.Status {
	t.Helper()
	createPayment(t, r, ref, 2350)
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
	e := r.waitEventWithin(t, 90*time.Second, "session.result", nil)
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	return e.Data.(session.Status)
}

// hubReport waits for the report of tx at the embedded hub.
func hubReport(t *testing.T, r *running, id string) *txreport.Report {
	t.Helper()
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
		if tx.Report.TxID == id {
			rep := tx.Report
			return &rep
		}
	}
	t.Fatalf("transaction %s not at the hub (%d held)", id, len(txs))
	return nil
}

func checkHolderSignature(t *testing.T, rep *txreport.Report, id string) {
	t.Helper()
	hs := rep.HolderSignature
	if hs == nil || hs.Algorithm != "SM2-SM3" {
		t.Fatalf("report at the hub: holder signature %+v", hs)
	}
	c, err := bankeid.ParseChallenge(hs.Challenge)
	if err != nil || c.TransactionID != id || c.KioskID != "kiosk-test" || c.Amount != 2350 || c.Currency != "CNY" {
		t.Fatalf("signed challenge %+v (%v)", c, err)
	}
}

// A payment with a bank eID card in the simulated reader, no face
// enrolled at the bank: kioskd detects the card's driver, the PIN pad's
// digits go to the card, the card signs the transaction, the hub answers
// "none enrolled" and the payment declines with no_face_reference. The
// signed report at the hub carries the holder's signature, which the hub
// verified before applying it.
func TestBankEIDPaymentWithoutEnrolledFace(t *testing.T) {
	r := start(t, bankEIDKiosk(t, testmedia.Path(t, "franck.mp4")))
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	st := payBankEID(t, r, "till-bankeid-none")
	if st.Outcome == nil || st.Outcome.Approved || !slices.ContainsFunc(st.Outcome.Reasons, func(r session.Reason) bool { return r.Code == "no_face_reference" }) {
		t.Fatalf("outcome %+v, want a decline for no_face_reference", st.Outcome)
	}
	checkHolderSignature(t, hubReport(t, r, st.Request.ID), st.Request.ID)
}

// The same card with a face enrolled at the bank: the kiosk asks the hub
// (device-signed request, one-time key), the hub answers the face
// encrypted to that key and sealed, and the kiosk matches the camera
// (Franck smiling) against it. The holder's face approves, with the
// holder's signature in the report; another person's enrolled face
// declines face_mismatch.
func TestBankEIDPaymentWithEnrolledFace(t *testing.T) {
	for _, tc := range []struct {
		photo    string
		approved bool
	}{{"franck_01829.jpg", true}, {"audrey.jpg", false}} {
		t.Run(tc.photo, func(t *testing.T) {
			face, err := os.ReadFile(testmedia.Path(t, tc.photo))
			if err != nil {
				t.Fatal(err)
			}
			enrolled := &refhub.MemoryEnrolments{}
			enrolled.Enrol("EID-3301-0001", face)
			cfg := bankEIDKiosk(t, testmedia.Path(t, "franck.mp4")) + "\n[policy]\nface_timeout = \"60s\"\n"
			r := startWith(t, cfg, func(o *Options) { o.Enrolments = enrolled })
			r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
			st := payBankEID(t, r, "till-bankeid-enrolled")
			if st.Outcome == nil || st.Outcome.Approved != tc.approved {
				t.Fatalf("outcome %+v, want approved=%v", st.Outcome, tc.approved)
			}
			if !tc.approved && !slices.ContainsFunc(st.Outcome.Reasons, func(r session.Reason) bool { return r.Code == "face_mismatch" }) {
				t.Fatalf("another person's face: %+v", st.Outcome.Reasons)
			}
			checkHolderSignature(t, hubReport(t, r, st.Request.ID), st.Request.ID)
		})
	}
}
