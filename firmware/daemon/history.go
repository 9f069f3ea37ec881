package daemon

import (
	"encoding/json"
	"fmt"
	"time"

	"kiosk/firmware/ecr"
	"kiosk/firmware/outbox"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
)

// reconcileHistory gives every decided transaction still in the outbox its
// payment-history entry. The report is made durable first and the history
// entry just after; a crash between the two would otherwise let a till's
// retry after the restart start a second payment. It returns how many
// entries it restored.
func reconcileHistory(ob *outbox.Outbox, h *ecr.History) (int, error) {
	restored := 0
	var after uint64
	for {
		recs, err := ob.Pending(after, 64)
		if err != nil {
			return restored, fmt.Errorf("reconcile payment history: %w", err)
		}
		if len(recs) == 0 {
			return restored, nil
		}
		for _, rec := range recs {
			after = rec.Seq
			if _, ok := h.Lookup(rec.TxID); ok {
				continue
			}
			st, err := statusFromEnvelope(rec.Payload)
			if err != nil {
				return restored, fmt.Errorf("reconcile payment history: %s: %w", rec.TxID, err)
			}
			if err := h.Put(st); err != nil {
				return restored, err
			}
			restored++
		}
	}
}

// statusFromEnvelope is what the till was told, rebuilt from the signed
// report the kiosk itself wrote (no signature check: it never left the
// kiosk's disk).
func statusFromEnvelope(b []byte) (session.Status, error) {
	env, err := txreport.ParseEnvelope(b)
	if err != nil {
		return session.Status{}, err
	}
	var r txreport.Report
	if err := json.Unmarshal(env.Report, &r); err != nil {
		return session.Status{}, err
	}
	started, _ := time.Parse(time.RFC3339Nano, r.Started)
	decided, err := time.Parse(time.RFC3339Nano, r.Decided)
	if err != nil {
		return session.Status{}, err
	}
	req := session.Request{ID: r.TxID, Kind: "service", Service: r.Service, MerchantRef: r.MerchantRef, Created: started}
	if r.Kind == "payment" {
		req.Kind, req.AmountMinor, req.Currency = "payment", r.Amount, r.Currency
	}
	out := &session.Outcome{Approved: r.Decision == txreport.Approved, Finished: decided}
	for _, c := range r.Reasons {
		out.Reasons = append(out.Reasons, session.Reason{Code: c})
	}
	return session.Status{State: session.Result, Request: &req, Outcome: out, Since: decided}, nil
}
