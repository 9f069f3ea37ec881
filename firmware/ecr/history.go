package ecr

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"kiosk/firmware/session"
)

// History keeps what the till was told about finished payments on disk
// (bbolt, fsynced), by transaction id and merchant reference, so a retry
// after a kioskd restart gets the same answer instead of a second
// payment. Entries older than the retention go at Open and every
// pruneEvery Puts.
type History struct {
	db        *bolt.DB
	retention time.Duration
	puts      atomic.Uint64
}

// pruneEvery is how many Puts pass between prunes while kioskd runs.
const pruneEvery = 256

var (
	histByID  = []byte("by_id")
	histByRef = []byte("by_ref")
)

// DefaultRetention is how long finished payments are kept for retries
// and status queries.
const DefaultRetention = 7 * 24 * time.Hour

// OpenHistory opens (creating) the history file and drops entries older
// than retention (≤ 0 means DefaultRetention).
func OpenHistory(path string, retention time.Duration) (*History, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("payment history: %w", err)
	}
	h := &History{db: db, retention: retention}
	if err := h.prune(time.Now()); err != nil {
		db.Close()
		return nil, err
	}
	return h, nil
}

// Close closes the file.
func (h *History) Close() error { return h.db.Close() }

// Put records a finished payment before its result is shown.
func (h *History) Put(st session.Status) error {
	if st.Request == nil || st.Outcome == nil {
		return fmt.Errorf("payment history: only finished payments are kept")
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("payment history: %w", err)
	}
	if h.puts.Add(1)%pruneEvery == 0 {
		if err := h.prune(time.Now()); err != nil {
			return err
		}
	}
	return h.db.Update(func(tx *bolt.Tx) error {
		ids, err := tx.CreateBucketIfNotExists(histByID)
		if err != nil {
			return err
		}
		refs, err := tx.CreateBucketIfNotExists(histByRef)
		if err != nil {
			return err
		}
		if err := ids.Put([]byte(st.Request.ID), b); err != nil {
			return err
		}
		if st.Request.MerchantRef != "" {
			return refs.Put([]byte(st.Request.MerchantRef), []byte(st.Request.ID))
		}
		return nil
	})
}

// Lookup finds a finished payment by transaction id or merchant
// reference.
func (h *History) Lookup(idOrRef string) (session.Status, bool) {
	var st session.Status
	var found bool
	_ = h.db.View(func(tx *bolt.Tx) error {
		ids, refs := tx.Bucket(histByID), tx.Bucket(histByRef)
		if ids == nil || refs == nil {
			return nil
		}
		b := ids.Get([]byte(idOrRef))
		if b == nil {
			if id := refs.Get([]byte(idOrRef)); id != nil {
				b = ids.Get(id)
			}
		}
		found = b != nil && json.Unmarshal(b, &st) == nil && st.Request != nil
		return nil
	})
	return st, found
}

func (h *History) prune(now time.Time) error {
	return h.db.Update(func(tx *bolt.Tx) error {
		ids, refs := tx.Bucket(histByID), tx.Bucket(histByRef)
		if ids == nil || refs == nil {
			return nil
		}
		var old [][2][]byte
		err := ids.ForEach(func(k, v []byte) error {
			var st session.Status
			if json.Unmarshal(v, &st) != nil || st.Outcome == nil || now.Sub(st.Outcome.Finished) > h.retention {
				ref := ""
				if st.Request != nil {
					ref = st.Request.MerchantRef
				}
				old = append(old, [2][]byte{append([]byte(nil), k...), []byte(ref)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := ids.Delete(o[0]); err != nil {
				return err
			}
			if len(o[1]) > 0 {
				if id := refs.Get(o[1]); id != nil && string(id) == string(o[0]) {
					if err := refs.Delete(o[1]); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}
