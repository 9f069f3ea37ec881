package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketExecuted = []byte("executed")

// DefaultMaxRecords bounds the record of executed job ids.
const DefaultMaxRecords = 4096

// ErrRecordFull is returned by Begin when the record holds MaxRecords ids
// whose jobs have not expired: forgetting one would let its job run twice,
// so new jobs are refused instead until old ones expire.
var ErrRecordFull = errors.New("jobs: record of executed jobs is full")

// entry is what the record keeps per job id. Hash tells a redelivery of
// the same sealed job (answered with the stored status) from a replayed id
// carrying another job (rejected). Final is the sealed terminal status,
// resent when the hub offers the job again because it missed it.
type entry struct {
	Hash    string    `json:"hash"`
	Expires time.Time `json:"expires"`
	Final   []byte    `json:"final,omitempty"`
	// Seq is the last progress status's sequence number (0: none).
	Seq int `json:"seq,omitempty"`
}

// record is the persistent, bounded set of job ids this kiosk accepted, in
// a bbolt file under the state directory (fsynced: a power cut right after
// a reboot job must not make it run again). Ids are forgotten once their
// job has expired, since an expired job is refused anyway.
type record struct {
	db  *bolt.DB
	max int
}

func openRecord(path string, max int) (*record, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("jobs record %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketExecuted)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("jobs record %s: %w", path, err)
	}
	return &record{db: db, max: max}, nil
}

func (r *record) Close() error { return r.db.Close() }

// Lookup returns the entry of id, if any.
func (r *record) Lookup(id string) (entry, bool, error) {
	var e entry
	var ok bool
	err := r.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketExecuted).Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &e)
	})
	if err != nil {
		return entry{}, false, fmt.Errorf("jobs record: %w", err)
	}
	return e, ok, nil
}

// Begin records id as accepted, after dropping ids whose jobs expired
// before now. It fails with ErrRecordFull at the bound.
func (r *record) Begin(id string, e entry, now time.Time) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExecuted)
		var stale [][]byte
		n := 0
		if err := b.ForEach(func(k, v []byte) error {
			var old entry
			if err := json.Unmarshal(v, &old); err != nil || old.Expires.Before(now) {
				stale = append(stale, append([]byte(nil), k...))
				return nil
			}
			n++
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if n >= r.max {
			return fmt.Errorf("%w (%d ids of unexpired jobs)", ErrRecordFull, n)
		}
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
}

// Finish stores the sealed terminal status of id.
func (r *record) Finish(id string, final []byte) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExecuted)
		var e entry
		if v := b.Get([]byte(id)); v != nil {
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
		}
		e.Final = final
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
}

// SetSeq records the last sequence number sent for id.
func (r *record) SetSeq(id string, seq int) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExecuted)
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("jobs record: no job %q", id)
		}
		var e entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		e.Seq = seq
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
}
