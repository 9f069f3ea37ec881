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
	blocked  bool // set by Block (outbox full)
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

// Block refuses (or, with false, allows again) offline approvals, e.g.
// while the outbox is full: an approval that cannot be queued must not
// happen.
func (l *Ledger) Block(b bool) {
	l.mu.Lock()
	l.blocked = b
	l.mu.Unlock()
}

// Approve decides txID offline and, when approved, records the exposure
// (fsynced) before returning. Asking again for a txID already approved
// returns the same approval without counting it twice.
func (l *Ledger) Approve(txID string, amount int64, currency string) (Decision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case amount <= 0:
		return Decision{Reason: ReasonInvalidAmnt}, nil
	case l.limits.Floor == 0:
		return Decision{Reason: ReasonDisabled}, nil
	case l.blocked:
		return Decision{Reason: ReasonOutboxFull}, nil
	case currency != l.limits.Currency:
		return Decision{Reason: ReasonCurrency}, nil
	case amount > l.limits.Floor:
		return Decision{Reason: ReasonOverFloor}, nil
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
	Blocked  bool   `json:"blocked"`
}

// Status returns the current exposure and limits.
func (l *Ledger) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Exposure: l.exposure, Count: l.count, Cap: l.limits.Cap, Floor: l.limits.Floor, Currency: l.limits.Currency, Blocked: l.blocked}
}
