package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
	"kiosk/internal/browsertest"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/bankissuer"
	"kiosk/provisioning/hubstore"
)

// bankEIDKiosk is a simulated kiosk whose reader holds a good bank eID
// card of ZHANG SAN (EID-3301-0001, PIN 246810) and trusts its authority.
func bankEIDKiosk(t *testing.T, video string) string {
	cfg, _ := bankEIDKioskCard(t, video)
	return cfg
}

// bankEIDKioskCard is bankEIDKiosk that also returns the card image's
// directory.
func bankEIDKioskCard(t *testing.T, video string) (cfg, card string) {
	t.Helper()
	cfg, dir := simConfigWith(t, video, nil, "")
	card = filepath.Join(dir, "bankcard")
	a, err := bankissuer.NewAuthority("Test eID Authority", false)
	if err != nil {
		t.Fatal(err)
	}
	im, err := a.Issue(bankissuer.Holder{Name: "ZHANG SAN", EIDNumber: "EID-3301-0001", PIN: "246810"}, bankcard.ProfileGood)
	if err != nil {
		t.Fatal(err)
	}
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
	return strings.Replace(cfg, old, fmt.Sprintf("sim_card = %q\nbankeid_trust_dir = %q", card, trust), 1), card
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
	checkHolderSignatureFor(t, rep, id, 2350, "CNY")
}

func checkHolderSignatureFor(t *testing.T, rep *txreport.Report, id string, amount int64, currency string) {
	t.Helper()
	hs := rep.HolderSignature
	if hs == nil || hs.Algorithm != "SM2-SM3" {
		t.Fatalf("report at the hub: holder signature %+v", hs)
	}
	c, err := bankeid.ParseChallenge(hs.Challenge)
	if err != nil || c.TransactionID != id || c.KioskID != "kiosk-test" || c.Amount != amount || c.Currency != currency {
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
			enrolled := &hubstore.MemoryEnrolments{}
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

// A shopper pays, and a customer opens an account, with a bank eID card
// on the real stack: pcscd with a vpcd reader and the Go bank eID card,
// real Chromium, the PIN typed on the shopper's pad, the face the bank
// enrolled matched against the test video. Each signed report at the hub
// carries the card's signature over its own transaction.
func TestShopperPaysAndOpensAccountWithBankEIDOverPCSC(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	srv := pcscdtest.Start(t, 1)
	cfg, cardDir := bankEIDKioskCard(t, video)
	for _, c := range []struct{ old, new string }{
		{"[cardreader]\nbackend = \"sim\"\n", "[cardreader]\nbackend = \"pcsc\"\nretry_min = \"50ms\"\nretry_max = \"500ms\"\n"},
		{fmt.Sprintf("sim_card = %q\n", cardDir), ""},
	} {
		if !strings.Contains(cfg, c.old) {
			t.Fatalf("config no longer has %q", c.old)
		}
		cfg = strings.Replace(cfg, c.old, c.new, 1)
	}
	face, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	enrolled := &hubstore.MemoryEnrolments{}
	enrolled.Enrol("EID-3301-0001", face)
	r := startWith(t, shopperConfigFrom(t, cfg), func(o *Options) { o.Enrolments = enrolled })
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	im, err := bankcard.Load(cardDir)
	if err != nil {
		t.Fatal(err)
	}
	card, err := bankcard.New(im, bankcard.Options{})
	if err != nil {
		t.Fatal(err)
	}

	b := browsertest.Start(t)
	b.Run(t, 30*time.Second,
		chromedp.EmulateViewport(1080, 1920, chromedp.EmulateTouch),
		chromedp.Navigate(r.base+"/"),
		setLang("en"),
		screenIs("attract"),
	)
	// present runs one session at the screen: the card on the reader, the
	// PIN on the pad, the face, the result; then the card is taken.
	present := func(what string) {
		t.Helper()
		b.Run(t, 20*time.Second, screenIs("insert_card"))
		ctx, cancel := context.WithCancel(context.Background())
		cardDone := make(chan error, 1)
		go func() { cardDone <- vpcd.Serve(ctx, srv.VPCDAddr(0), card, nil) }()
		stopCard := sync.OnceFunc(func() { cancel(); <-cardDone })
		defer stopCard()
		// The pad knows the card: it asks for the bank eID PIN (in the
		// screen's language, which is the default again for the next
		// customer).
		runSteps(t, b, what+": type the PIN", append(append([]chromedp.Action[chromedp.Void]{screenIs("enter_password"),
			chromedp.Poll[chromedp.Void](`window.kioskUI.kind === "pin" && document.getElementById("code-title").textContent === window.kioskUI.cat["code.title_bankeid"]`, chromedp.WithPollingTimeout(20*time.Second)),
		}, typeOn("246810")...),
			chromedp.Click(chromedp.CSS(`#key-ok`))))
		b.Run(t, 60*time.Second, screenIs("face"))
		b.Run(t, 90*time.Second,
			chromedp.Poll[chromedp.Void](`document.body.dataset.screen === "result" || document.body.dataset.screen === "remove_card"`, chromedp.WithPollingTimeout(80*time.Second)),
			chromedp.Poll[chromedp.Void](`document.querySelector("#result-icon.ok") !== null`),
		)
		b.Screenshot(t, "shopper-bankeid-"+what)
		b.Run(t, 30*time.Second, screenIs("remove_card"))
		stopCard()
		b.Run(t, 30*time.Second, screenIs("attract"))
	}

	id := createPayment(t, r, "bankeid-pay-1", 2350)
	present("pay")
	if p := ecrGet(t, r, id); p.Status != "approved" {
		t.Fatalf("the till sees %+v, want approved", p)
	}
	checkHolderSignatureFor(t, hubReport(t, r, id), id, 2350, "CNY")

	code, body := ecrPost(t, r, "/v1/services", `{"service":"open_account","merchant_ref":"bankeid-branch-1"}`)
	if code != http.StatusCreated {
		t.Fatalf("create service: %d %s", code, body)
	}
	var svc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &svc); err != nil || svc.ID == "" {
		t.Fatalf("service answer %s: %v", body, err)
	}
	present("open-account")
	rep := hubReportWhenHeld(t, r, svc.ID)
	if rep.Kind != "identity" || rep.Service != "open_account" || rep.Decision != "approved" {
		t.Fatalf("identity report %+v", rep)
	}
	checkHolderSignatureFor(t, rep, svc.ID, 0, "")
	b.Run(t, 10*time.Second, chromedp.Navigate("about:blank"))
	if c := b.Console(); len(c) > 0 {
		t.Fatalf("console errors: %v", c)
	}
}

// hubReportWhenHeld waits until the hub holds tx's report.
func hubReportWhenHeld(t *testing.T, r *running, id string) *txreport.Report {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
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
		if time.Now().After(deadline) {
			t.Fatalf("report of %s never reached the hub", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
