package refhub

import (
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
)

func TestStoreApplyAndAuthorize(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	r := &txreport.Report{V: 1, TxID: "t1", Terminal: "k1", Kind: "payment", Amount: 700, Currency: "EUR",
		Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOffline}}
	for i, wantDup := range []bool{false, true, true} {
		dup, err := s.Apply(r, []byte(`{}`), "fp", "h0", now)
		if err != nil || dup != wantDup {
			t.Fatalf("apply %d: dup %v err %v", i, dup, err)
		}
	}
	txs, err := s.List()
	if err != nil || len(txs) != 1 || txs[0].Duplicates != 2 || txs[0].AppliedBy != "h0" {
		t.Fatalf("list: %+v %v", txs, err)
	}
	l := Limits{MaxTx: 500, MaxDaily: 1000}
	ask := func(tx string, amount int64, day time.Time) hub.AuthResponse {
		resp, err := s.Authorize(hub.AuthRequest{ID: "c-" + tx, TxID: tx, Amount: amount, Currency: "EUR"}, "k1", l, day)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ID != "c-"+tx {
			t.Fatalf("correlation id %q", resp.ID)
		}
		return resp
	}
	// The offline 700 counts against today's 1000.
	if r := ask("a1", 300, now); !r.Approved {
		t.Fatalf("a1: %+v", r)
	}
	if r := ask("a2", 1, now); r.Approved || r.Reason != ReasonOverDailyLimit {
		t.Fatalf("a2: %+v", r)
	}
	if r := ask("a3", 501, now); r.Reason != ReasonOverTxLimit {
		t.Fatalf("a3: %+v", r)
	}
	if r := ask("a4", 400, now.Add(24*time.Hour)); !r.Approved {
		t.Fatalf("next day: %+v", r)
	}
	if r := ask("a1", 300, now); !r.Approved || r.Amount != 300 || r.Terminal != "k1" {
		t.Fatalf("repeat a1: %+v", r)
	}
	// The same transaction id for another amount is refused, never
	// answered with the old approval.
	if r := ask("a1", 499, now); r.Approved || r.Reason != ReasonInvalid {
		t.Fatalf("a1 again for another amount: %+v", r)
	}
	if r := ask("bad", 0, now); r.Reason != ReasonInvalid {
		t.Fatalf("invalid: %+v", r)
	}
	// The next day's 400 was approved online, then the payment was
	// cancelled: its report is declined, and the 400 is free again.
	next := now.Add(24 * time.Hour)
	if r := ask("a5", 500, next); !r.Approved { // 900 of 1000 used
		t.Fatalf("a5: %+v", r)
	}
	if r := ask("a6", 200, next); r.Approved {
		t.Fatalf("over the next day's limit before the release: %+v", r)
	}
	cancelled := &txreport.Report{V: 1, TxID: "a4", Terminal: "k1", Kind: "payment", Amount: 400, Currency: "EUR",
		Started: txreport.Timestamp(next), Decided: txreport.Timestamp(next),
		Decision: txreport.Declined, Reasons: []string{"cancelled_by_till"}, Auth: txreport.Auth{Mode: txreport.AuthOnline}}
	if _, err := s.Apply(cancelled, []byte(`{}`), "fp", "h0", next); err != nil {
		t.Fatal(err)
	}
	if r := ask("a7", 200, next); !r.Approved {
		t.Fatalf("after the cancelled approval was released: %+v", r)
	}
	if _, err := ListFile(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Fatal("ListFile of a missing file")
	}
}

func TestDeviceOf(t *testing.T) {
	h, err := New(Options{Brokers: []string{"tcp://x:1"}, Keyring: txreport.NewKeyring(), Store: &Store{}})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]string{"kiosk/v1/k1/tx": "k1", "kiosk/v1//tx": "", "other/k1/tx": "", "kiosk/v1/k1": ""} {
		d, _, ok := h.deviceOf(topic)
		if d != want || ok != (want != "") {
			t.Errorf("deviceOf(%q) = %q %v", topic, d, ok)
		}
	}
}
