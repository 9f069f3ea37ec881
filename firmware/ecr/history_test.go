package ecr

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/session"
)

func finished(id, ref string, approved bool, at time.Time) session.Status {
	return session.Status{State: session.Result, Since: at,
		Request: &session.Request{ID: id, Kind: "payment", AmountMinor: 2350, Currency: "CNY", MerchantRef: ref, Created: at.Add(-time.Minute)},
		Outcome: &session.Outcome{Approved: approved, Finished: at}}
}

// Finished payments survive a restart (the file is reopened), are found by
// id and by merchant reference, and leave after the retention.
func TestHistoryKeepsFinishedPayments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "payments.db")
	h, err := OpenHistory(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := h.Put(finished("tx-new", "till-1", true, now)); err != nil {
		t.Fatal(err)
	}
	if err := h.Put(finished("tx-old", "till-0", false, now.Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := h.Put(session.Status{Request: &session.Request{ID: "running"}}); err == nil {
		t.Error("an unfinished payment was kept")
	}
	h.Close()

	h, err = OpenHistory(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, key := range []string{"tx-new", "till-1"} {
		if st, ok := h.Lookup(key); !ok || st.Request.ID != "tx-new" || !st.Outcome.Approved {
			t.Errorf("lookup %s: %+v %v", key, st, ok)
		}
	}
	for _, key := range []string{"tx-old", "till-0", "nothing"} {
		if _, ok := h.Lookup(key); ok {
			t.Errorf("lookup %s: found, want gone (older than the retention) or unknown", key)
		}
	}
}

// After a restart the session has forgotten the payment; the till's retry
// with the same merchant reference gets the recorded result (200), not a
// second payment (201), and its status stays readable.
func TestRetryAfterRestartAnsweredFromHistory(t *testing.T) {
	h, err := OpenHistory(filepath.Join(t.TempDir(), "payments.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Put(finished("tx-1", "till-77", true, time.Now())); err != nil {
		t.Fatal(err)
	}
	_, m := newAPI(t, "tok")
	srv := httptest.NewServer(Handler(Options{Sessions: m, Token: "tok", History: h}))
	defer srv.Close()
	code, body := call(t, srv.Client(), "POST", srv.URL+"/v1/payments", "tok", `{"amount_minor":2350,"currency":"CNY","merchant_ref":"till-77"}`)
	if code != http.StatusOK || body["id"] != "tx-1" || body["status"] != "approved" {
		t.Fatalf("retry after restart: %d %v", code, body)
	}
	if code, body := call(t, srv.Client(), "POST", srv.URL+"/v1/payments", "tok", `{"amount_minor":999,"currency":"CNY","merchant_ref":"till-77"}`); code != http.StatusConflict {
		t.Fatalf("same reference, other amount: %d %v", code, body)
	}
	if code, body := call(t, srv.Client(), "GET", srv.URL+"/v1/payments/tx-1", "tok", ""); code != http.StatusOK || body["status"] != "approved" {
		t.Fatalf("status after restart: %d %v", code, body)
	}
	if m.Status().State != session.Idle {
		t.Fatalf("a second payment started: %s", m.Status().State)
	}
}
