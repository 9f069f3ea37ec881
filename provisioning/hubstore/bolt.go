package hubstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
)

var (
	bucketTx    = []byte("tx")    // terminal|tx id → Transaction JSON
	bucketAuth  = []byte("auth")  // terminal|tx id → authRecord JSON (idempotent answers)
	bucketDaily = []byte("daily") // terminal|YYYY-MM-DD|tx id → amount (8 bytes)

	// The device registry (Registry).
	bucketTokens  = []byte("tokens")  // token hash → Token JSON
	bucketCerts   = []byte("certs")   // fingerprint → DeviceCert JSON
	bucketRevoked = []byte("revoked") // serial → Revocation JSON

	// Enrolled face references (EnrolmentStore).
	bucketFaces = []byte("faces") // identity → faceRecord JSON
)

// Bolt is a Store in one bbolt file, for one machine: the demo's embedded
// hub, `kioskctl hub serve` and tests. It opens the file for each
// operation and closes it after, so several hub processes on one host
// (and `kioskctl hub tx list`) can share it: bbolt's file lock serialises
// them. Within a process a mutex does, without bbolt's lock polling.
// Production hubs use PostgreSQL (package pgstore).
type Bolt struct {
	path string
	mu   sync.Mutex
}

var (
	_ Store    = (*Bolt)(nil)
	_ Registry = (*Bolt)(nil)
)

// OpenBolt creates the file and its buckets if needed.
func OpenBolt(path string) (*Bolt, error) {
	s := &Bolt{path: path}
	if err := s.update(func(tx *bolt.Tx) error { return nil }); err != nil {
		return nil, err
	}
	return s, nil
}

// Close releases nothing: the file is open only during an operation.
func (s *Bolt) Close() error { return nil }

func (s *Bolt) open(readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 10 * time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("hub store %s: %w", s.path, err)
	}
	return db, nil
}

func (s *Bolt) update(f func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTx, bucketAuth, bucketDaily, bucketTokens, bucketCerts, bucketRevoked, bucketFaces} {
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

func txKey(terminal, txID string) []byte { return []byte(terminal + "|" + txID) }

// Apply implements Store.
func (s *Bolt) Apply(ctx context.Context, r *txreport.Report, env []byte, cert, instance string, now time.Time) (dup bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTx)
		key := txKey(r.Terminal, r.TxID)
		if old := b.Get(key); old != nil {
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
			return b.Put(key, v)
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
		if err := b.Put(key, v); err != nil {
			return err
		}
		switch {
		case r.Decision == txreport.Approved && r.Auth.Mode == txreport.AuthOffline:
			return putDaily(tx, r.Terminal, now, r.TxID, r.Amount)
		case r.Decision == txreport.Declined:
			old := tx.Bucket(bucketAuth).Get(txKey(r.Terminal, r.TxID))
			var rec authRecord
			if old != nil && json.Unmarshal(old, &rec) == nil && rec.DailyKey != "" {
				return tx.Bucket(bucketDaily).Delete([]byte(rec.DailyKey))
			}
		}
		return nil
	})
	return dup, err
}

func dailyPrefix(terminal string, day time.Time) []byte {
	return []byte(terminal + "|" + day.UTC().Format(time.DateOnly) + "|")
}

func putDaily(tx *bolt.Tx, terminal string, now time.Time, txID string, amount int64) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, uint64(amount))
	return tx.Bucket(bucketDaily).Put(append(dailyPrefix(terminal, now), txID...), v)
}

// authRecord is a stored authorization answer: the request it decided
// and, for an approval, the key of its share of the daily limit.
type authRecord struct {
	Resp     hub.AuthResponse `json:"resp"`
	Merchant string           `json:"merchant"`
	DailyKey string           `json:"daily_key,omitempty"`
	Decided  time.Time        `json:"decided,omitzero"`
}

// Authorize implements Store.
func (s *Bolt) Authorize(ctx context.Context, req hub.AuthRequest, terminal string, l Limits, now time.Time) (hub.AuthResponse, error) {
	resp := hub.AuthResponse{ID: req.ID, TxID: req.TxID, Terminal: terminal, Amount: req.Amount, Currency: req.Currency}
	if req.TxID == "" || req.Amount <= 0 || len(req.Currency) != 3 {
		resp.Reason = ReasonInvalid
		return resp, nil
	}
	if err := ctx.Err(); err != nil {
		return resp, err
	}
	err := s.update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(bucketAuth)
		if old := ab.Get(txKey(terminal, req.TxID)); old != nil {
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
		rec := authRecord{Merchant: req.Merchant, Decided: now.UTC()}
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
		return ab.Put(txKey(terminal, req.TxID), v)
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

// List implements Store. A bbolt file holds one machine's demo volume, so
// it reads every record and pages in memory.
func (s *Bolt) List(ctx context.Context, q ListQuery) (Page, error) {
	var after *cursor
	if q.After != "" {
		c, err := parseCursor(q.After)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.open(true)
	if err != nil {
		return Page{}, err
	}
	defer db.Close()
	var all []Transaction
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
			if (q.Terminal == "" || t.Terminal == q.Terminal) && (after == nil || after.precedes(t)) {
				all = append(all, t)
			}
			return nil
		})
	})
	if err != nil {
		return Page{}, fmt.Errorf("hub store %s: %w", s.path, err)
	}
	slices.SortFunc(all, Less)
	p := Page{Items: all}
	if n := q.PageSize(); len(all) > n {
		p.Items = all[:n]
		p.Next = Cursor(all[n-1])
	}
	if p.Items == nil {
		p.Items = []Transaction{}
	}
	return p, nil
}

// Prune implements Store.
func (s *Bolt) Prune(ctx context.Context, before time.Time) (Pruned, error) {
	var n Pruned
	if err := ctx.Err(); err != nil {
		return n, err
	}
	day := before.UTC().Format(time.DateOnly)
	err := s.update(func(tx *bolt.Tx) error {
		var drop [][]byte
		err := tx.Bucket(bucketTx).ForEach(func(k, v []byte) error {
			var t Transaction
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			if t.Received.Before(before) {
				drop = append(drop, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := tx.Bucket(bucketTx).Delete(k); err != nil {
				return err
			}
		}
		n.Transactions = int64(len(drop))
		drop = drop[:0]
		err = tx.Bucket(bucketAuth).ForEach(func(k, v []byte) error {
			var rec authRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			if rec.Decided.Before(before) {
				drop = append(drop, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := tx.Bucket(bucketAuth).Delete(k); err != nil {
				return err
			}
		}
		n.Authorizations = int64(len(drop))
		drop = drop[:0]
		err = tx.Bucket(bucketDaily).ForEach(func(k, _ []byte) error {
			// terminal|YYYY-MM-DD|tx id: the day is the second field.
			parts := bytes.SplitN(k, []byte("|"), 3)
			if len(parts) == 3 && string(parts[1]) < day {
				drop = append(drop, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := tx.Bucket(bucketDaily).Delete(k); err != nil {
				return err
			}
		}
		n.DailyEntries = int64(len(drop))
		return nil
	})
	return n, err
}

// File lists an existing store file read-only, never creating or
// modifying it (kioskctl hub tx list, tests reading a kiosk's demo hub).
type File struct{ Path string }

// List is Bolt.List on the file.
func (f *File) List(ctx context.Context, q ListQuery) (Page, error) {
	return (&Bolt{path: f.Path}).List(ctx, q)
}
