package ctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"kiosk/firmware/audit"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// maxAuditScan bounds how many of a terminal's transactions one check
// reads (at 100 staff actions a day, decades of them).
const maxAuditScan = 1_000_000

// hubAuditVerify checks a kiosk's staff audit chain from the copies the
// hub holds: every entry arrived as a signed report through the outbox,
// so a kiosk that removed, altered or rewrote entries after delivering
// them shows here even when its own file verifies.
func hubAuditVerify(e *env, args []string) int {
	fs := flag.NewFlagSet("hub audit verify", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	db := fs.String("db", "", "the hub's bbolt file")
	dsn := fs.String("dsn", "", "the hub's PostgreSQL database (postgres:// URL)")
	terminal := fs.String("terminal", "", "the kiosk whose chain to check")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*db == "") == (*dsn == "") || *terminal == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl hub audit verify (--db FILE | --dsn URL) --terminal ID [--json]")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, closeSrc, err := txSource(ctx, *db, *dsn)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub audit verify:", err)
		return ExitFail
	}
	defer closeSrc()
	txs, err := hubstore.All(ctx, src, hubstore.ListQuery{Terminal: *terminal, Limit: hubstore.MaxPage}, maxAuditScan)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub audit verify:", err)
		return ExitFail
	}
	var entries []audit.Entry
	for _, t := range txs {
		if t.Report.Service == txreport.EventStaffAudit && t.Report.Audit != nil {
			entries = append(entries, *t.Report.Audit)
		}
	}
	type chain struct {
		audit.Held
		Entries int    `json:"entries"`
		Started string `json:"started,omitempty"` // time of its entry 1, when held
		Intact  bool   `json:"intact"`
	}
	var chains []chain
	intact := true
	for _, g := range audit.Epochs(entries) {
		h := audit.VerifyHeld(g)
		c := chain{Held: h, Entries: len(g), Intact: h.Intact()}
		for _, x := range g {
			if x.Seq == 1 && x.Prev == audit.Genesis {
				c.Started = x.Time
			}
		}
		intact = intact && c.Intact
		chains = append(chains, c)
	}
	if *asJSON {
		_ = json.NewEncoder(e.stdout).Encode(struct {
			Terminal string  `json:"terminal_id"`
			Chains   []chain `json:"chains"`
			Intact   bool    `json:"intact"`
		}{*terminal, chains, intact})
	} else {
		if len(chains) == 0 {
			fmt.Fprintf(e.stdout, "audit %s: no entries held\n", *terminal)
		}
		for _, c := range chains {
			from := "earlier entries pruned"
			if c.Started != "" {
				from = "started " + c.Started
			}
			if c.Intact {
				fmt.Fprintf(e.stdout, "audit %s: entries %d..%d intact (%s)\n", *terminal, c.First, c.Last, from)
				continue
			}
			fmt.Fprintf(e.stdout, "audit %s: entries %d..%d NOT intact (%s)\n", *terminal, c.First, c.Last, from)
			for _, b := range c.Breaks {
				fmt.Fprintf(e.stdout, "  broken: %s\n", b)
			}
			if len(c.Missing) > 0 {
				fmt.Fprintf(e.stdout, "  missing: %d entries from %d: not delivered yet, or removed on the kiosk\n", len(c.Missing), c.Missing[0])
			}
		}
	}
	if !intact {
		return ExitFail
	}
	return ExitOK
}
