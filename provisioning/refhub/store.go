package refhub

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
)

var (
	bucketTx    = []byte("tx")    // tx id → Transaction JSON
	bucketAuth  = []byte("auth")  // terminal|tx id → authRecord JSON (idempotent answers)
	bucketDaily = []byte("daily") // terminal|YYYY-MM-DD|tx id → amount (8 bytes)
)

// Transaction is what the hub holds for one applied report.
type Transaction struct {
	TxID       string          `json:"tx_id"`
	Terminal   string          `json:"terminal_id"`
	Amount     int64           `json:"amount"`
	Currency   string          `json:"currency"`
	Decision   string          `json:"decision"`
	AuthMode   string          `json:"auth_mode"`
	Received   time.Time       `json:"received"`
	AppliedBy  string          `json:"applied_by"` // hub instance (MQTT client id)
	Duplicates int             `json:"duplicates"` // redeliveries seen after the first
	Report     txreport.Report `json:"report"`
	Envelope   json.RawMessage `json:"envelope"` // the signed evidence as received
	Cert       string          `json:"cert"`
}

// Store is the hub's bbolt file. It opens the file for each operation and
// closes it after, so several hub processes sharing the load (and
// `kioskctl hub tx list`) can use one file: bbolt's file lock serialises
// them. Within a process a mutex does, without bbolt's lock polling.
type Store struct {
	path string
	mu   sync.Mutex
}

// OpenStore creates the file and its buckets if needed.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path}
	if err := s.update(func(tx *bolt.Tx) error { return nil }); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) open(readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 10 * time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("hub store %s: %w", s.path, err)
	}
	return db, nil
}

func (s *Store) update(f func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTx, bucketAuth, bucketDaily} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return f(tx)
	})
	if err != nil {
		return fmt.Errorf("hub store: %w", err)
	}
	return nil
}

// Apply stores a verified report once. A report already held is not
// applied again: dup is true and its duplicate counter grows.
func (s *Store) Apply(r *txreport.Report, env []byte, cert, instance string, now time.Time) (dup bool, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTx)
		if old := b.Get([]byte(r.TxID)); old != nil {
			dup = true
			var t Transaction
			if err := json.Unmarshal(old, &t); err != nil {
				return err
			}
			t.Duplicates++
			v, err := json.Marshal(t)
			if err != nil {
				return err
			}
			return b.Put([]byte(r.TxID), v)
		}
		t := Transaction{
			TxID: r.TxID, Terminal: r.Terminal, Amount: r.Amount, Currency: r.Currency,
			Decision: r.Decision, AuthMode: r.Auth.Mode, Received: now.UTC(), AppliedBy: instance,
			Report: *r, Envelope: append(json.RawMessage(nil), env...), Cert: cert,
		}
		v, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(r.TxID), v); err != nil {
			return err
		}
		// Offline approvals count against the daily limit once they
		// arrive (online ones were counted when authorized). An online
		// approval the payment did not use (the till cancelled, the card
		// was pulled) gives its share back.
		switch {
		case r.Decision == txreport.Approved && r.Auth.Mode == txreport.AuthOffline:
			return putDaily(tx, r.Terminal, now, r.TxID, r.Amount)
		case r.Decision == txreport.Declined:
			old := tx.Bucket(bucketAuth).Get(authKey(r.Terminal, r.TxID))
			var rec authRecord
			if old != nil && json.Unmarshal(old, &rec) == nil && rec.DailyKey != "" {
				return tx.Bucket(bucketDaily).Delete([]byte(rec.DailyKey))
			}
		}
		return nil
	})
	return dup, err
}

func dailyPrefix(terminal string, now time.Time) []byte {
	return []byte(terminal + "|" + now.UTC().Format("2006-01-02") + "|")
}

func putDaily(tx *bolt.Tx, terminal string, now time.Time, txID string, amount int64) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, uint64(amount))
	return tx.Bucket(bucketDaily).Put(append(dailyPrefix(terminal, now), txID...), v)
}

// Limits are the reference hub's authorization rules; zero means none.
type Limits struct {
	MaxTx    int64 // per transaction, minor units
	MaxDaily int64 // per terminal and UTC day
}

// Decline reasons of the reference hub.
const (
	ReasonOverTxLimit    = "hub_over_transaction_limit"
	ReasonOverDailyLimit = "hub_over_daily_limit"
	ReasonInvalid        = "hub_invalid_request"
)

// authRecord is a stored authorization answer: the request it decided
// and, for an approval, the key of its share of the daily limit.
type authRecord struct {
	Resp     hub.AuthResponse `json:"resp"`
	Merchant string           `json:"merchant"`
	DailyKey string           `json:"daily_key,omitempty"`
}

func authKey(terminal, txID string) []byte { return []byte(terminal + "|" + txID) }

// Authorize decides a payment request. The answer for a terminal's tx id
// is stored, so a repeated request (QoS 1 redelivery, kiosk retry) gets
// the same answer and is counted once; a "repeat" for another amount,
// currency or merchant is refused, never answered with the old approval.
func (s *Store) Authorize(req hub.AuthRequest, terminal string, l Limits, now time.Time) (hub.AuthResponse, error) {
	resp := hub.AuthResponse{ID: req.ID, TxID: req.TxID, Terminal: terminal, Amount: req.Amount, Currency: req.Currency}
	if req.TxID == "" || req.Amount <= 0 || len(req.Currency) != 3 {
		resp.Reason = ReasonInvalid
		return resp, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(bucketAuth)
		if old := ab.Get(authKey(terminal, req.TxID)); old != nil {
			var prev authRecord
			if err := json.Unmarshal(old, &prev); err != nil {
				return err
			}
			if prev.Resp.Amount != req.Amount || prev.Resp.Currency != req.Currency || prev.Merchant != req.Merchant {
				resp.Reason = ReasonInvalid // the same transaction, other terms
				return nil
			}
			resp = prev.Resp
			resp.ID = req.ID
			return nil
		}
		rec := authRecord{Merchant: req.Merchant}
		switch {
		case l.MaxTx > 0 && req.Amount > l.MaxTx:
			resp.Reason = ReasonOverTxLimit
		case l.MaxDaily > 0:
			used, err := dailyUsed(tx, terminal, now)
			if err != nil {
				return err
			}
			if used+req.Amount > l.MaxDaily {
				resp.Reason = ReasonOverDailyLimit
			}
		}
		if resp.Reason == "" {
			resp.Approved = true
			resp.Ref = "A-" + hub.NewID()[:12]
			if err := putDaily(tx, terminal, now, req.TxID, req.Amount); err != nil {
				return err
			}
			rec.DailyKey = string(append(dailyPrefix(terminal, now), req.TxID...))
		}
		rec.Resp = resp
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return ab.Put(authKey(terminal, req.TxID), v)
	})
	return resp, err
}

func dailyUsed(tx *bolt.Tx, terminal string, now time.Time) (int64, error) {
	p := dailyPrefix(terminal, now)
	var sum int64
	c := tx.Bucket(bucketDaily).Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if len(v) != 8 {
			return 0, errors.New("corrupt daily amount")
		}
		sum += int64(binary.BigEndian.Uint64(v))
	}
	return sum, nil
}

// List returns every transaction, ordered by received time then tx id.
func (s *Store) List() ([]Transaction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := []Transaction{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTx)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var t Transaction
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("hub store %s: %w", s.path, err)
	}
	slices.SortFunc(out, func(a, b Transaction) int {
		if c := a.Received.Compare(b.Received); c != 0 {
			return c
		}
		return strings.Compare(a.TxID, b.TxID)
	})
	return out, nil
}

// ListFile reads the transactions of an existing store file without
// creating or modifying it (kioskctl hub tx list).
func ListFile(path string) ([]Transaction, error) {
	return (&Store{path: path}).List()
}
