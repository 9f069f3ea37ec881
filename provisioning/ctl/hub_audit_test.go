package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/audit"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// The hub's copies of a kiosk's audit entries, as the outbox delivered
// them: intact; then a rewritten entry arrives and the check fails.
func TestHubAuditVerify(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "hub.db")
	l, err := audit.Open(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var entries []audit.Entry
	for i := range 4 {
		e, err := l.Append("anna", "maintenance_on", "", now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	apply := func(es ...audit.Entry) {
		t.Helper()
		s, err := hubstore.OpenBolt(db)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, e := range es {
			h, _ := audit.Hash(e)
			ts := txreport.Timestamp(now)
			r := &txreport.Report{V: txreport.Version, TxID: fmt.Sprintf("audit-%d-%s", e.Seq, h[:16]), Terminal: "kiosk-a1",
				Merchant: "M1", Kind: txreport.KindEvent, Service: txreport.EventStaffAudit, Started: ts, Decided: ts,
				Auth: txreport.Auth{Mode: txreport.AuthNone}, Audit: &e}
			if _, err := s.Apply(context.Background(), r, []byte("{}"), "", "test", now); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Delivered out of order, one of them twice; another kiosk's
	// transactions beside them.
	apply(entries[1], entries[0], entries[3], entries[2], entries[1])
	code, out, errs := run("hub", "audit", "verify", "--db", db, "--terminal", "kiosk-a1")
	if code != ExitOK || !strings.Contains(out, "audit kiosk-a1: entries 1..4 intact") {
		t.Fatalf("intact chain: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("hub", "audit", "verify", "--db", db, "--terminal", "kiosk-zz"); code != ExitOK || !strings.Contains(out, "no entries held") {
		t.Fatalf("no entries: %d %q", code, out)
	}
	// The kiosk rewrote entry 3 after it was delivered.
	forged := entries[2]
	forged.Staff = "mallory"
	apply(forged)
	code, out, _ = run("hub", "audit", "verify", "--db", db, "--terminal", "kiosk-a1", "--json")
	var res struct {
		Intact bool `json:"intact"`
		Chains []struct {
			Breaks []string `json:"breaks"`
		} `json:"chains"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != ExitFail || res.Intact || len(res.Chains) != 1 ||
		!strings.Contains(strings.Join(res.Chains[0].Breaks, ";"), "sequence 3: two different entries") {
		t.Fatalf("rewritten entry: %d %q %v", code, out, err)
	}
	if code, _, errs := run("hub", "audit", "verify", "--db", db); code != ExitUsage || !strings.Contains(errs, "usage") {
		t.Fatalf("without --terminal: %d %q", code, errs)
	}
}
