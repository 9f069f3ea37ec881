package hubd

import (
	"context"
	"net/http"
	"time"

	"kiosk/provisioning/hubstore"
)

// GET /fleet/tx: the transactions the hub has applied, in received order,
// after a cursor, for kioskctl fleet tx tail. With wait the request is a
// long poll: the hub answers as soon as there is something after the
// cursor, or with nothing once wait has passed. The store is shared by
// every instance, so a tail at one instance sees what all of them apply.

// TxTailMaxWait bounds a long poll.
const TxTailMaxWait = 25 * time.Second

// txPoll is how often a waiting long poll looks at the store again.
const txPoll = 250 * time.Millisecond

// TxLine is one applied transaction as the tail shows it: the decision
// and its reasons, never the report's evidence.
type TxLine struct {
	TxID       string    `json:"tx_id"`
	Terminal   string    `json:"terminal_id"`
	Kind       string    `json:"kind"`
	Service    string    `json:"service,omitempty"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	Decision   string    `json:"decision"`
	Reasons    []string  `json:"reasons,omitempty"`
	AuthMode   string    `json:"auth_mode"`
	Received   time.Time `json:"received"`
	AppliedBy  string    `json:"applied_by"`
	Duplicates int       `json:"duplicates"`
}

// TxPage is GET /fleet/tx's answer. Next is the cursor after the last
// item (the request's own cursor when there is none).
type TxPage struct {
	Items []TxLine `json:"items"`
	Next  string   `json:"next"`
}

func txLine(t hubstore.Transaction) TxLine {
	return TxLine{TxID: t.TxID, Terminal: t.Terminal, Kind: t.Report.Kind, Service: t.Report.Service, Amount: t.Amount,
		Currency: t.Currency, Decision: t.Decision, Reasons: t.Report.Reasons, AuthMode: t.AuthMode, Received: t.Received,
		AppliedBy: t.AppliedBy, Duplicates: t.Duplicates}
}

func serveTxTail(store hubstore.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, terminal := q.Get("after"), q.Get("terminal")
		if after != "" {
			if _, _, _, err := hubstore.ParseCursor(after); err != nil {
				writeJSONError(w, http.StatusBadRequest, "after: "+err.Error())
				return
			}
		}
		var wait time.Duration
		if s := q.Get("wait"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 || d > TxTailMaxWait {
				writeJSONError(w, http.StatusBadRequest, "wait: a duration up to "+TxTailMaxWait.String())
				return
			}
			wait = d
		}
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		for {
			p, err := store.List(r.Context(), hubstore.ListQuery{Terminal: terminal, After: after, Limit: hubstore.MaxPage})
			if err != nil {
				writeJSONError(w, http.StatusInternalServerError, err.Error())
				return
			}
			if len(p.Items) > 0 || ctx.Err() != nil {
				page := TxPage{Items: make([]TxLine, 0, len(p.Items)), Next: after}
				for _, t := range p.Items {
					page.Items = append(page.Items, txLine(t))
				}
				if n := len(p.Items); n > 0 {
					page.Next = hubstore.Cursor(p.Items[n-1])
				}
				writeJSON(w, http.StatusOK, page)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(txPoll):
			}
		}
	}
}
