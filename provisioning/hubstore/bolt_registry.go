package hubstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PutToken implements Registry.
func (s *Bolt) PutToken(ctx context.Context, t Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get([]byte(t.Hash)) != nil {
			return ErrExists
		}
		return putJSON(b, t.Hash, t)
	})
}

// UseToken implements Registry.
func (s *Bolt) UseToken(ctx context.Context, hash, device string, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		v := b.Get([]byte(hash))
		if v == nil {
			return ErrTokenUnknown
		}
		var t Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if err := TokenUsable(t, device, now); err != nil {
			return err
		}
		u := now.UTC()
		t.Used = &u
		return putJSON(b, hash, t)
	})
}

// TokenUsable is the one rule both stores apply, in this order: a token
// presented for another device tells nothing about its state.
func TokenUsable(t Token, device string, now time.Time) error {
	switch {
	case t.Device != device:
		return ErrTokenDevice
	case t.Used != nil:
		return ErrTokenUsed
	case !now.Before(t.Expires):
		return ErrTokenExpired
	}
	return nil
}

// PutCert implements Registry.
func (s *Bolt) PutCert(ctx context.Context, c DeviceCert) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCerts)
		if b.Get([]byte(c.Fingerprint)) != nil {
			return ErrExists
		}
		return putJSON(b, c.Fingerprint, c)
	})
}

// CertByFingerprint implements Registry.
func (s *Bolt) CertByFingerprint(ctx context.Context, fp string) (DeviceCert, error) {
	var c DeviceCert
	if err := ctx.Err(); err != nil {
		return c, err
	}
	err := s.update(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCerts).Get([]byte(fp))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &c)
	})
	return c, err
}

// CertBySerial implements Registry (a scan: the bolt store serves one
// hub instance with a small fleet).
func (s *Bolt) CertBySerial(ctx context.Context, serial string) (DeviceCert, error) {
	var c DeviceCert
	if err := ctx.Err(); err != nil {
		return c, err
	}
	found := false
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			var x DeviceCert
			if err := json.Unmarshal(v, &x); err != nil {
				return err
			}
			if x.Serial == serial {
				c, found = x, true
			}
			return nil
		})
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	return c, err
}

// DeviceCerts implements Registry.
func (s *Bolt) DeviceCerts(ctx context.Context, device string) ([]DeviceCert, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []DeviceCert
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			var c DeviceCert
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			if c.Device == device {
				out = append(out, c)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b DeviceCert) int { return a.Issued.Compare(b.Issued) })
	return out, err
}

// Revoke implements Registry.
func (s *Bolt) Revoke(ctx context.Context, r Revocation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevoked)
		if b.Get([]byte(r.Serial)) != nil {
			return nil
		}
		return putJSON(b, r.Serial, r)
	})
}

// Revocations implements Registry.
func (s *Bolt) Revocations(ctx context.Context) ([]Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Revocation
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRevoked).ForEach(func(_, v []byte) error {
			var r Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put([]byte(key), j)
}
