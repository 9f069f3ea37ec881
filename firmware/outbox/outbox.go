// Package outbox is kioskd's durable queue of signed transaction reports
// waiting for the bank hub's acknowledgement. It is a bbolt file: a Put
// returns only after the record is committed and fsynced, so a result
// shown to the shopper survives kill -9 and power loss. Records leave
// only when the hub acknowledges their transaction id (Ack).
package outbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketRecords = []byte("records") // seq (8 bytes big endian) → record JSON
	bucketIndex   = []byte("index")   // tx id → seq
)

// ErrFull is returned by Put when the outbox holds MaxRecords records or
// MaxBytes bytes. Nothing is written.
var ErrFull = errors.New("outbox: full")

// Level is the fill alarm level.
type Level int

// Levels: Normal below High; High at or above HighWater (80 %); Full at
// the bound, when Put refuses.
const (
	Normal Level = iota
	High
	Full
)

func (l Level) String() string {
	switch l {
	case High:
		return "high"
	case Full:
		return "full"
	}
	return "normal"
}

// MarshalText makes Level readable in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Options bound the outbox.
type Options struct {
	MaxRecords int     // default 10000
	MaxBytes   int64   // payload bytes; default 64 MiB
	HighWater  float64 // fraction for the High alarm; default 0.8
	// OnAlarm is called (outside any lock, must not block) whenever the
	// level changes, including back to Normal.
	OnAlarm func(Level, Stats)
	Logger  *slog.Logger
	Now     func() time.Time
	// NoSync disables fsync. Only for benchmarks that measure the rest.
	NoSync bool
}

// Record is one queued report.
type Record struct {
	Seq     uint64    `json:"seq"`
	TxID    string    `json:"tx_id"`
	Created time.Time `json:"created"`
	Payload []byte    `json:"payload"`
}

// Stats describe the backlog.
type Stats struct {
	Depth  int       `json:"depth"`
	Bytes  int64     `json:"bytes"`
	Oldest time.Time `json:"oldest,omitzero"`
	Level  Level     `json:"level"`
	Max    int       `json:"max_records"`
}

// Outbox is safe for concurrent use.
type Outbox struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	mu    sync.Mutex // guards the counters below and serialises alarms
	depth int
	bytes int64
	level Level
}

// Open opens (creating) the outbox file. Another process holding it
// makes Open fail after one second rather than hang.
func Open(path string, opts Options) (*Outbox, error) {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 10000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.HighWater <= 0 || opts.HighWater > 1 {
		opts.HighWater = 0.8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", path, err)
	}
	o := &Outbox{db: db, opts: opts, log: log}
	err = db.Update(func(tx *bolt.Tx) error {
		rb, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketIndex); err != nil {
			return err
		}
		return rb.ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("corrupt record: %w", err)
			}
			o.depth++
			o.bytes += int64(len(r.Payload))
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox %s: %w", path, err)
	}
	o.level = o.levelLocked()
	return o, nil
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

func (o *Outbox) levelLocked() Level {
	switch {
	case o.depth >= o.opts.MaxRecords || o.bytes >= o.opts.MaxBytes:
		return Full
	case float64(o.depth) >= o.opts.HighWater*float64(o.opts.MaxRecords) ||
		float64(o.bytes) >= o.opts.HighWater*float64(o.opts.MaxBytes):
		return High
	}
	return Normal
}

// Level is the current fill level.
func (o *Outbox) Level() Level {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.level
}

// relevel recomputes the level after a counter change. Called with o.mu
// held; it returns the alarm to fire after unlocking.
func (o *Outbox) relevel() func() {
	l := o.levelLocked()
	if l == o.level {
		return func() {}
	}
	o.level = l
	o.log.Warn("outbox level changed", "level", l.String(), "depth", o.depth, "bytes", o.bytes)
	if o.opts.OnAlarm == nil {
		return func() {}
	}
	return func() { o.opts.OnAlarm(l, o.Stats()) }
}

// Put stores payload under txID, committed and fsynced when it returns.
// A txID already queued is left as it is (idempotent). ErrFull when the
// bound is reached.
func (o *Outbox) Put(txID string, payload []byte) error {
	if txID == "" {
		return errors.New("outbox: empty tx id")
	}
	// The lock makes the bound check and the write one step; bbolt
	// serialises writers anyway.
	o.mu.Lock()
	if o.depth+1 > o.opts.MaxRecords || o.bytes+int64(len(payload)) > o.opts.MaxBytes {
		o.mu.Unlock()
		return fmt.Errorf("%w (%d records, %d bytes)", ErrFull, o.depth, o.bytes)
	}
	added := false
	err := o.db.Update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketIndex)
		if idx.Get([]byte(txID)) != nil {
			return nil
		}
		rb := tx.Bucket(bucketRecords)
		seq, err := rb.NextSequence()
		if err != nil {
			return err
		}
		v, err := json.Marshal(Record{Seq: seq, TxID: txID, Created: o.opts.Now().UTC(), Payload: payload})
		if err != nil {
			return err
		}
		k := seqKey(seq)
		if err := rb.Put(k, v); err != nil {
			return err
		}
		added = true
		return idx.Put([]byte(txID), k)
	})
	if err != nil {
		o.mu.Unlock()
		return fmt.Errorf("outbox put %s: %w", txID, err)
	}
	if added {
		o.depth++
		o.bytes += int64(len(payload))
	}
	fire := o.relevel()
	o.mu.Unlock()
	fire()
	return nil
}

// Ack removes the record of txID; it reports whether one was queued.
func (o *Outbox) Ack(txID string) (bool, error) { return o.AckIf(txID, nil) }

// AckIf removes the record of txID if check (when not nil) accepts it,
// reading and deleting in one transaction; it reports whether one was
// queued. A check's error is returned as it is, and the record stays.
func (o *Outbox) AckIf(txID string, check func(Record) error) (bool, error) {
	o.mu.Lock()
	var size int
	found := false
	var refused error
	err := o.db.Update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketIndex)
		k := idx.Get([]byte(txID))
		if k == nil {
			return nil
		}
		k = append([]byte(nil), k...)
		found = true
		rb := tx.Bucket(bucketRecords)
		if v := rb.Get(k); v != nil {
			var r Record
			if err := json.Unmarshal(v, &r); err == nil {
				size = len(r.Payload)
			}
			if check != nil {
				if refused = check(r); refused != nil {
					return nil // nothing written: bbolt commits an empty transaction
				}
			}
			if err := rb.Delete(k); err != nil {
				return err
			}
		}
		return idx.Delete([]byte(txID))
	})
	if err != nil {
		o.mu.Unlock()
		return false, fmt.Errorf("outbox ack %s: %w", txID, err)
	}
	if refused != nil {
		o.mu.Unlock()
		return true, refused
	}
	if found {
		o.depth--
		o.bytes -= int64(size)
	}
	fire := o.relevel()
	o.mu.Unlock()
	fire()
	return found, nil
}

// Pending returns up to n records with Seq > after, oldest first.
func (o *Outbox) Pending(after uint64, n int) ([]Record, error) {
	var out []Record
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < n; k, v = c.Next() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox pending: %w", err)
	}
	return out, nil
}

// Get returns the record queued for txID; ok is false when there is none.
func (o *Outbox) Get(txID string) (r Record, ok bool, err error) {
	err = o.db.View(func(tx *bolt.Tx) error {
		k := tx.Bucket(bucketIndex).Get([]byte(txID))
		if k == nil {
			return nil
		}
		v := tx.Bucket(bucketRecords).Get(k)
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("record %x: %w", k, err)
		}
		ok = true
		return nil
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("outbox get %s: %w", txID, err)
	}
	return r, ok, nil
}

// Has reports whether txID is queued.
func (o *Outbox) Has(txID string) (bool, error) {
	var ok bool
	err := o.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketIndex).Get([]byte(txID)) != nil
		return nil
	})
	return ok, err
}

// Stats returns depth, size, the oldest record's time and the level.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	s := Stats{Depth: o.depth, Bytes: o.bytes, Level: o.level, Max: o.opts.MaxRecords}
	o.mu.Unlock()
	_ = o.db.View(func(tx *bolt.Tx) error {
		if _, v := tx.Bucket(bucketRecords).Cursor().First(); v != nil {
			var r Record
			if json.Unmarshal(v, &r) == nil {
				s.Oldest = r.Created
			}
		}
		return nil
	})
	return s
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
