// Package offline decides payments when the bank hub cannot be reached:
// approve only at or under a per-transaction floor limit and while the
// cumulative offline exposure stays within a cap. The exposure is the sum
// of offline approvals the hub has not yet acknowledged; it is persisted
// (bbolt, fsynced) so a restart does not reset it, and it shrinks as the
// hub acknowledges those transactions (Settle).
package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketOpen = []byte("open") // tx id → amount (8 bytes big endian)

// Limits configure offline approval. Zero Floor disables offline approval.
type Limits struct {
	Floor    int64  // highest amount approved offline, minor units
	Cap      int64  // highest total of unacknowledged offline approvals
	Currency string // the only currency approved offline (ISO 4217)
}

// Decline reasons (machine codes, also in reports).
const (
	ReasonDisabled    = "offline_disabled"
	ReasonCurrency    = "offline_currency"
	ReasonOverFloor   = "offline_over_floor_limit"
	ReasonCapReached  = "offline_cap_reached"
	ReasonOutboxFull  = "offline_outbox_full"
	ReasonInvalidAmnt = "invalid_amount"
)

// Decision is an offline verdict.
type Decision struct {
	Approved bool   `json:"approved"`
	Reason   string `json:"reason,omitempty"`
}

// Ledger is safe for concurrent use.
type Ledger struct {
	db     *bolt.DB
	limits Limits

	mu       sync.Mutex
	exposure int64
	count    int
}

// Open opens (creating) the ledger file.
func Open(path string, l Limits) (*Ledger, error) {
	if l.Floor < 0 || l.Cap < 0 {
		return nil, errors.New("offline: negative limit")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("offline ledger %s: %w", path, err)
	}
	lg := &Ledger{db: db, limits: l}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOpen)
		if err != nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			if len(v) != 8 {
				return errors.New("corrupt amount")
			}
			lg.exposure += int64(binary.BigEndian.Uint64(v))
			lg.count++
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("offline ledger %s: %w", path, err)
	}
	return lg, nil
}

// Close closes the file.
func (l *Ledger) Close() error { return l.db.Close() }

// Check says whether an offline approval of amount would be refused now,
// and why ("" when it would be given), without recording anything: the
// session asks before the shopper inserts a card.
func (l *Ledger) Check(amount int64, currency string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refusal(amount, currency)
}

// refusal is the offline rules' reason to refuse amount; l.mu is held.
func (l *Ledger) refusal(amount int64, currency string) string {
	switch {
	case amount <= 0:
		return ReasonInvalidAmnt
	case l.limits.Floor == 0:
		return ReasonDisabled
	case currency != l.limits.Currency:
		return ReasonCurrency
	case amount > l.limits.Floor:
		return ReasonOverFloor
	case l.exposure+amount > l.limits.Cap:
		return ReasonCapReached
	}
	return ""
}

// Approve decides txID offline and, when approved, records the exposure
// (fsynced) before returning. Asking again for a txID already approved
// returns the same approval without counting it twice.
func (l *Ledger) Approve(txID string, amount int64, currency string) (Decision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if reason := l.refusal(amount, currency); reason != "" && reason != ReasonCapReached {
		return Decision{Reason: reason}, nil
	}
	dup := false
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOpen)
		if b.Get([]byte(txID)) != nil {
			dup = true
			return nil
		}
		if l.exposure+amount > l.limits.Cap {
			return nil
		}
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, uint64(amount))
		return b.Put([]byte(txID), v)
	})
	if err != nil {
		return Decision{}, fmt.Errorf("offline approve %s: %w", txID, err)
	}
	if dup {
		return Decision{Approved: true}, nil
	}
	if l.exposure+amount > l.limits.Cap {
		return Decision{Reason: ReasonCapReached}, nil
	}
	l.exposure += amount
	l.count++
	return Decision{Approved: true}, nil
}

// Settle removes txID from the exposure: the hub acknowledged it (or the
// approved transaction was cancelled before it was committed). Unknown
// ids are ignored, so every hub ack can be passed here.
func (l *Ledger) Settle(txID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Most acks are of online payments: look before taking a write
	// transaction, whose commit costs an fsync even when nothing changed.
	var open bool
	if err := l.db.View(func(tx *bolt.Tx) error {
		open = tx.Bucket(bucketOpen).Get([]byte(txID)) != nil
		return nil
	}); err != nil {
		return fmt.Errorf("offline settle %s: %w", txID, err)
	}
	if !open {
		return nil
	}
	var amount int64
	found := false
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOpen)
		v := b.Get([]byte(txID))
		if v == nil {
			return nil
		}
		amount, found = int64(binary.BigEndian.Uint64(v)), true
		return b.Delete([]byte(txID))
	})
	if err != nil {
		return fmt.Errorf("offline settle %s: %w", txID, err)
	}
	if found {
		l.exposure -= amount
		l.count--
	}
	return nil
}

// Status is the ledger's state for health.
type Status struct {
	Exposure int64  `json:"exposure"`
	Count    int    `json:"count"`
	Cap      int64  `json:"cap"`
	Floor    int64  `json:"floor"`
	Currency string `json:"currency"`
}

// Status returns the current exposure and limits.
func (l *Ledger) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Exposure: l.exposure, Count: l.count, Cap: l.limits.Cap, Floor: l.limits.Floor, Currency: l.limits.Currency}
}
