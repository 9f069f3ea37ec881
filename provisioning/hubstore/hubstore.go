// Package hubstore is the bank hub's durable state: the transaction
// reports it applied, the authorization answers it gave and the
// daily-limit ledger behind them. Every hub instance works through a
// Store, so instances stay stateless and share the work.
//
// Two implementations: Bolt (one bbolt file, for the single-machine demo
// and tests) and pgstore (PostgreSQL, production: unique keys make
// deduplication and the daily limit correct when several instances
// receive the same message at once).
package hubstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
)

// Store is what a hub instance needs. Implementations are safe for
// concurrent use, also across processes sharing one store.
type Store interface {
	// Apply stores a verified report once. A report already held (same
	// terminal and tx id) is not applied again: dup is true and its
	// duplicate counter grows. Offline approvals count against the daily
	// limit when they arrive; an online approval whose payment ended
	// declined gives its share back.
	Apply(ctx context.Context, r *txreport.Report, env []byte, cert, instance string, now time.Time) (dup bool, err error)
	// Authorize decides a payment request. The answer for a terminal's tx
	// id is stored, so a repeated request gets the same answer and is
	// counted once; a repeat for other terms is refused (ReasonInvalid).
	Authorize(ctx context.Context, req hub.AuthRequest, terminal string, l Limits, now time.Time) (hub.AuthResponse, error)
	// List returns one page of transactions in received order.
	List(ctx context.Context, q ListQuery) (Page, error)
	// Prune removes transactions, authorization answers and daily-limit
	// entries older than before (retention).
	Prune(ctx context.Context, before time.Time) (Pruned, error)
	Close() error
}

// Transaction is what the hub holds for one applied report.
type Transaction struct {
	TxID       string          `json:"tx_id"`
	Terminal   string          `json:"terminal_id"`
	Amount     int64           `json:"amount"`
	Currency   string          `json:"currency"`
	Decision   string          `json:"decision"`
	AuthMode   string          `json:"auth_mode"`
	Received   time.Time       `json:"received"`
	AppliedBy  string          `json:"applied_by"` // hub instance
	Duplicates int             `json:"duplicates"` // redeliveries seen after the first
	Report     txreport.Report `json:"report"`
	Envelope   json.RawMessage `json:"envelope"` // the signed evidence as received
	Cert       string          `json:"cert"`
}

// Limits are the hub's authorization rules; zero means none.
type Limits struct {
	MaxTx    int64 // per transaction, minor units
	MaxDaily int64 // per terminal and UTC day
}

// Decline reasons of the hub.
const (
	ReasonOverTxLimit    = "hub_over_transaction_limit"
	ReasonOverDailyLimit = "hub_over_daily_limit"
	ReasonInvalid        = "hub_invalid_request"
)

// ListQuery selects a page. After is the Next of the previous page ("" for
// the first); Terminal, when set, filters; Limit defaults to 100 and is
// at most MaxPage.
type ListQuery struct {
	Terminal string
	After    string
	Limit    int
}

// MaxPage bounds one page.
const MaxPage = 1000

// Page is one page of transactions; Next is "" on the last.
type Page struct {
	Items []Transaction `json:"items"`
	Next  string        `json:"next,omitempty"`
}

// Pruned counts what Prune removed.
type Pruned struct {
	Transactions   int64 `json:"transactions"`
	Authorizations int64 `json:"authorizations"`
	DailyEntries   int64 `json:"daily_entries"`
}

// ErrBadCursor is returned for an After that no page produced.
var ErrBadCursor = errors.New("hubstore: bad page cursor")

// PageSize applies ListQuery's default and bound to Limit.
func (q ListQuery) PageSize() int {
	switch {
	case q.Limit <= 0:
		return 100
	case q.Limit > MaxPage:
		return MaxPage
	}
	return q.Limit
}

// cursor is a position in received order: (received, terminal, tx id).
type cursor struct {
	received time.Time
	terminal string
	txID     string
}

func (c cursor) String() string {
	b, _ := json.Marshal([]string{strconv.FormatInt(c.received.UnixNano(), 10), c.terminal, c.txID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	var parts []string
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	n, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	return cursor{received: time.Unix(0, n).UTC(), terminal: parts[1], txID: parts[2]}, nil
}

// precedes reports whether c comes before t in list order.
func (c cursor) precedes(t Transaction) bool {
	if d := t.Received.Compare(c.received); d != 0 {
		return d > 0
	}
	if d := strings.Compare(t.Terminal, c.terminal); d != 0 {
		return d > 0
	}
	return t.TxID > c.txID
}

// ParseCursor checks a page cursor (for implementations outside this
// package) and returns its parts.
func ParseCursor(s string) (received time.Time, terminal, txID string, err error) {
	c, err := parseCursor(s)
	if err != nil {
		return time.Time{}, "", "", err
	}
	return c.received, c.terminal, c.txID, nil
}

// Cursor is the Next for a page whose last item is t.
func Cursor(t Transaction) string {
	return cursor{received: t.Received, terminal: t.Terminal, txID: t.TxID}.String()
}

// Less orders transactions as List does.
func Less(a, b Transaction) int {
	if c := a.Received.Compare(b.Received); c != 0 {
		return c
	}
	if c := strings.Compare(a.Terminal, b.Terminal); c != 0 {
		return c
	}
	return strings.Compare(a.TxID, b.TxID)
}

// All pages through q's selection (q.Limit is the page size) and returns
// at most max transactions; for tests, tools and reconciliations of a
// bounded set.
func All(ctx context.Context, s interface {
	List(context.Context, ListQuery) (Page, error)
}, q ListQuery, max int) ([]Transaction, error) {
	var out []Transaction
	for {
		p, err := s.List(ctx, q)
		if err != nil {
			return out, err
		}
		out = append(out, p.Items...)
		if len(out) >= max {
			return out[:max], nil
		}
		if p.Next == "" {
			return out, nil
		}
		q.After = p.Next
	}
}
