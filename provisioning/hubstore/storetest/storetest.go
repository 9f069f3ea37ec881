// Package storetest is the conformance suite every hubstore.Store
// implementation passes: deduplication, the daily limit, idempotent
// answers, pagination, retention, and the same answers when several
// instances receive one message at once.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// Open returns a fresh, empty store for one subtest; the suite closes it.
type Open func(t *testing.T) hubstore.Store

// Run runs every check against stores made by open.
func Run(t *testing.T, open Open) {
	t.Run("ApplyAndAuthorize", func(t *testing.T) { applyAndAuthorize(t, open(t)) })
	t.Run("Pagination", func(t *testing.T) { pagination(t, open(t)) })
	t.Run("Prune", func(t *testing.T) { prune(t, open(t)) })
	t.Run("ConcurrentApply", func(t *testing.T) { concurrentApply(t, open(t)) })
	t.Run("ConcurrentAuthorize", func(t *testing.T) { concurrentAuthorize(t, open(t)) })
	t.Run("Registry", func(t *testing.T) { registry(t, open(t)) })
	t.Run("ConcurrentUseToken", func(t *testing.T) { concurrentUseToken(t, open(t)) })
	t.Run("Enrolments", func(t *testing.T) { enrolments(t, open(t)) })
}

var day0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func report(terminal, txID string, amount int64, decision, mode string) *txreport.Report {
	r := &txreport.Report{V: 1, TxID: txID, Terminal: terminal, Kind: "payment", Amount: amount, Currency: "EUR",
		Started: txreport.Timestamp(day0), Decided: txreport.Timestamp(day0),
		Decision: decision, Auth: txreport.Auth{Mode: mode}}
	if decision == txreport.Declined {
		r.Reasons = []string{"cancelled_by_till"}
	}
	return r
}

func applyAndAuthorize(t *testing.T, s hubstore.Store) {
	defer s.Close()
	ctx := context.Background()
	now := day0
	r := report("k1", "t1", 700, txreport.Approved, txreport.AuthOffline)
	for i, wantDup := range []bool{false, true, true} {
		dup, err := s.Apply(ctx, r, []byte(`{"report":{}}`), "fp", "h0", now)
		if err != nil || dup != wantDup {
			t.Fatalf("apply %d: dup %v err %v", i, dup, err)
		}
	}
	// The same tx id from another terminal is another transaction.
	if dup, err := s.Apply(ctx, report("k2", "t1", 5, txreport.Approved, txreport.AuthOnline), []byte(`{}`), "fp2", "h1", now); err != nil || dup {
		t.Fatalf("same id, other terminal: dup %v err %v", dup, err)
	}
	p, err := s.List(ctx, hubstore.ListQuery{Terminal: "k1"})
	if err != nil || len(p.Items) != 1 || p.Items[0].Duplicates != 2 || p.Items[0].AppliedBy != "h0" || p.Items[0].Amount != 700 ||
		string(p.Items[0].Envelope) != `{"report":{}}` || p.Items[0].Report.TxID != "t1" || !p.Items[0].Received.Equal(now) {
		t.Fatalf("list: %+v %v", p, err)
	}
	l := hubstore.Limits{MaxTx: 500, MaxDaily: 1000}
	ask := func(tx string, amount int64, day time.Time) hub.AuthResponse {
		t.Helper()
		resp, err := s.Authorize(ctx, hub.AuthRequest{ID: "c-" + tx, TxID: tx, Merchant: "Shop", Amount: amount, Currency: "EUR"}, "k1", l, day)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ID != "c-"+tx || resp.TxID != tx || resp.Terminal != "k1" {
			t.Fatalf("response names %+v", resp)
		}
		return resp
	}
	// The offline 700 counts against today's 1000.
	if r := ask("a1", 300, now); !r.Approved || r.Ref == "" {
		t.Fatalf("a1: %+v", r)
	}
	if r := ask("a2", 1, now); r.Approved || r.Reason != hubstore.ReasonOverDailyLimit {
		t.Fatalf("a2: %+v", r)
	}
	if r := ask("a3", 501, now); r.Reason != hubstore.ReasonOverTxLimit {
		t.Fatalf("a3: %+v", r)
	}
	next := now.Add(24 * time.Hour)
	if r := ask("a4", 400, next); !r.Approved {
		t.Fatalf("next day: %+v", r)
	}
	first := ask("a1", 300, now)
	if !first.Approved || first.Amount != 300 {
		t.Fatalf("repeat a1: %+v", first)
	}
	// The same transaction id for another amount is refused, never
	// answered with the old approval.
	if r := ask("a1", 499, now); r.Approved || r.Reason != hubstore.ReasonInvalid {
		t.Fatalf("a1 again for another amount: %+v", r)
	}
	if r := ask("bad", 0, now); r.Reason != hubstore.ReasonInvalid {
		t.Fatalf("invalid: %+v", r)
	}
	// The next day's 400 was approved online, then the payment was
	// cancelled: its report is declined, and the 400 is free again.
	if r := ask("a5", 500, next); !r.Approved { // 900 of 1000 used
		t.Fatalf("a5: %+v", r)
	}
	if r := ask("a6", 200, next); r.Approved {
		t.Fatalf("over the next day's limit before the release: %+v", r)
	}
	if _, err := s.Apply(ctx, report("k1", "a4", 400, txreport.Declined, txreport.AuthOnline), []byte(`{}`), "fp", "h0", next); err != nil {
		t.Fatal(err)
	}
	if r := ask("a7", 200, next); !r.Approved {
		t.Fatalf("after the cancelled approval was released: %+v", r)
	}
}

func pagination(t *testing.T, s hubstore.Store) {
	defer s.Close()
	ctx := context.Background()
	const n = 25
	for i := range n {
		// Two per instant, so order falls back to terminal and tx id.
		at := day0.Add(time.Duration(i/2) * time.Second)
		if _, err := s.Apply(ctx, report(fmt.Sprintf("k%d", i%3), fmt.Sprintf("p%03d", i), 1, txreport.Approved, txreport.AuthOnline), []byte(`{}`), "fp", "h", at); err != nil {
			t.Fatal(err)
		}
	}
	var got []hubstore.Transaction
	q := hubstore.ListQuery{Limit: 7}
	pages := 0
	for {
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, p.Items...)
		if p.Next == "" {
			break
		}
		if len(p.Items) != 7 {
			t.Fatalf("page %d has %d items and a next", pages, len(p.Items))
		}
		q.After = p.Next
	}
	if len(got) != n || pages != 4 {
		t.Fatalf("%d items in %d pages, want %d in 4", len(got), pages, n)
	}
	for i := 1; i < len(got); i++ {
		if hubstore.Less(got[i-1], got[i]) >= 0 {
			t.Fatalf("out of order at %d: %s/%s then %s/%s", i, got[i-1].Terminal, got[i-1].TxID, got[i].Terminal, got[i].TxID)
		}
	}
	p, err := s.List(ctx, hubstore.ListQuery{Terminal: "k1", Limit: 100})
	if err != nil || len(p.Items) != 8 || p.Next != "" {
		t.Fatalf("terminal k1: %d items, next %q, %v", len(p.Items), p.Next, err)
	}
	if _, err := s.List(ctx, hubstore.ListQuery{After: "not-a-cursor"}); err == nil {
		t.Fatal("a bad cursor was accepted")
	}
}

func prune(t *testing.T, s hubstore.Store) {
	defer s.Close()
	ctx := context.Background()
	old, recent := day0.Add(-40*24*time.Hour), day0
	for i, at := range []time.Time{old, old, recent} {
		if _, err := s.Apply(ctx, report("k1", fmt.Sprintf("r%d", i), 10, txreport.Approved, txreport.AuthOffline), []byte(`{}`), "fp", "h", at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Authorize(ctx, hub.AuthRequest{ID: "x", TxID: "o1", Amount: 5, Currency: "EUR"}, "k1", hubstore.Limits{}, old); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, day0.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n.Transactions != 2 || n.Authorizations != 1 || n.DailyEntries != 3 { // r0, r1 and o1's share
		t.Fatalf("pruned %+v", n)
	}
	p, err := s.List(ctx, hubstore.ListQuery{})
	if err != nil || len(p.Items) != 1 || p.Items[0].TxID != "r2" {
		t.Fatalf("after prune: %+v %v", p, err)
	}
	// Today's limit still counts today's offline approval.
	r, err := s.Authorize(ctx, hub.AuthRequest{ID: "y", TxID: "n1", Amount: 95, Currency: "EUR"}, "k1", hubstore.Limits{MaxDaily: 100}, recent)
	if err != nil || r.Approved {
		t.Fatalf("95 over today's 100 with 10 used: %+v %v", r, err)
	}
}

// concurrentApply: many instances receive the same reports at once; each
// is applied once, and every other copy counts as a duplicate.
func concurrentApply(t *testing.T, s hubstore.Store) {
	defer s.Close()
	ctx := context.Background()
	const copies, reports = 6, 20
	var mu sync.Mutex
	applied := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, copies*reports)
	for c := range copies {
		wg.Go(func() {
			for i := range reports {
				id := fmt.Sprintf("c%02d", i)
				dup, err := s.Apply(ctx, report("k1", id, 1, txreport.Approved, txreport.AuthOffline), []byte(`{}`), "fp", fmt.Sprintf("h%d", c), day0)
				if err != nil {
					errs <- err
					return
				}
				if !dup {
					mu.Lock()
					applied[id]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range reports {
		if id := fmt.Sprintf("c%02d", i); applied[id] != 1 {
			t.Fatalf("%s applied %d times", id, applied[id])
		}
	}
	p, err := s.List(ctx, hubstore.ListQuery{})
	if err != nil || len(p.Items) != reports {
		t.Fatalf("list: %d %v", len(p.Items), err)
	}
	for _, tx := range p.Items {
		if tx.Duplicates != copies-1 {
			t.Fatalf("%s: %d duplicates, want %d", tx.TxID, tx.Duplicates, copies-1)
		}
	}
	// Each offline approval counted once against the daily limit.
	r, err := s.Authorize(ctx, hub.AuthRequest{ID: "z", TxID: "z", Amount: 81, Currency: "EUR"}, "k1", hubstore.Limits{MaxDaily: 100}, day0)
	if err != nil || r.Approved {
		t.Fatalf("81 over 100 with 20 used: %+v %v", r, err)
	}
}

// concurrentAuthorize: the same request reaches several instances at once
// (they all give the same answer, counted once), and different requests
// race for the last of the daily limit (never more than the limit).
func concurrentAuthorize(t *testing.T, s hubstore.Store) {
	defer s.Close()
	ctx := context.Background()
	l := hubstore.Limits{MaxDaily: 1000}
	const instances = 6
	answers := make([]hub.AuthResponse, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() {
			r, err := s.Authorize(ctx, hub.AuthRequest{ID: "same", TxID: "s1", Merchant: "Shop", Amount: 400, Currency: "EUR"}, "k1", l, day0)
			if err != nil {
				t.Error(err)
			}
			answers[i] = r
		})
	}
	wg.Wait()
	for i, a := range answers {
		if !a.Approved || a != answers[0] {
			t.Fatalf("instance %d answered %+v, instance 0 %+v", i, a, answers[0])
		}
	}
	// 600 left: 10 requests of 100 race; exactly 6 fit.
	var mu sync.Mutex
	approved := 0
	for i := range 10 {
		wg.Go(func() {
			r, err := s.Authorize(ctx, hub.AuthRequest{ID: "r", TxID: fmt.Sprintf("r%d", i), Merchant: "Shop", Amount: 100, Currency: "EUR"}, "k1", l, day0)
			if err != nil {
				t.Error(err)
				return
			}
			if r.Approved {
				mu.Lock()
				approved++
				mu.Unlock()
			} else if r.Reason != hubstore.ReasonOverDailyLimit {
				t.Errorf("r%d: %+v", i, r)
			}
		})
	}
	wg.Wait()
	if approved != 6 {
		t.Fatalf("%d of 10 approved with 600 left of the daily 1000, want 6", approved)
	}
}
