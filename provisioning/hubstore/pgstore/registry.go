package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kiosk/provisioning/hubstore"
)

var _ hubstore.Registry = (*Store)(nil)

// uniqueViolation is SQLSTATE 23505.
const uniqueViolation = "23505"

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == uniqueViolation
}

// PutToken implements hubstore.Registry.
func (s *Store) PutToken(ctx context.Context, t hubstore.Token) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO enrollment_tokens (hash, device, created, expires) VALUES ($1, $2, $3, $4)`,
		t.Hash, t.Device, t.Created.UTC(), t.Expires.UTC())
	if isUnique(err) {
		return hubstore.ErrExists
	}
	if err != nil {
		return fmt.Errorf("pgstore: put token: %w", err)
	}
	return nil
}

// UseToken implements hubstore.Registry: the row is locked while it is
// checked and marked, so of two instances presented the same token at
// once exactly one succeeds.
func (s *Store) UseToken(ctx context.Context, hash, device string, now time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var t hubstore.Token
		err := tx.QueryRow(ctx, `SELECT device, expires, used FROM enrollment_tokens WHERE hash = $1 FOR UPDATE`, hash).
			Scan(&t.Device, &t.Expires, &t.Used)
		if errors.Is(err, pgx.ErrNoRows) {
			return hubstore.ErrTokenUnknown
		}
		if err != nil {
			return fmt.Errorf("pgstore: use token: %w", err)
		}
		if err := hubstore.TokenUsable(t, device, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE enrollment_tokens SET used = $2 WHERE hash = $1`, hash, now.UTC()); err != nil {
			return fmt.Errorf("pgstore: use token: %w", err)
		}
		return nil
	})
}

// PutCert implements hubstore.Registry.
func (s *Store) PutCert(ctx context.Context, c hubstore.DeviceCert) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO device_certs (fingerprint, serial, device, not_after, issued, der) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.Fingerprint, c.Serial, c.Device, c.NotAfter.UTC(), c.Issued.UTC(), c.DER)
	if isUnique(err) {
		return hubstore.ErrExists
	}
	if err != nil {
		return fmt.Errorf("pgstore: put cert: %w", err)
	}
	return nil
}

const certCols = `fingerprint, serial, device, not_after, issued, der`

func scanCert(r pgx.Row) (hubstore.DeviceCert, error) {
	var c hubstore.DeviceCert
	err := r.Scan(&c.Fingerprint, &c.Serial, &c.Device, &c.NotAfter, &c.Issued, &c.DER)
	c.NotAfter, c.Issued = c.NotAfter.UTC(), c.Issued.UTC()
	return c, err
}

// CertByFingerprint implements hubstore.Registry.
func (s *Store) CertByFingerprint(ctx context.Context, fp string) (hubstore.DeviceCert, error) {
	c, err := scanCert(s.pool.QueryRow(ctx, `SELECT `+certCols+` FROM device_certs WHERE fingerprint = $1`, fp))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, hubstore.ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("pgstore: cert: %w", err)
	}
	return c, nil
}

// CertBySerial implements hubstore.Registry.
func (s *Store) CertBySerial(ctx context.Context, serial string) (hubstore.DeviceCert, error) {
	c, err := scanCert(s.pool.QueryRow(ctx, `SELECT `+certCols+` FROM device_certs WHERE serial = $1`, serial))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, hubstore.ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("pgstore: cert by serial: %w", err)
	}
	return c, nil
}

// DeviceCerts implements hubstore.Registry.
func (s *Store) DeviceCerts(ctx context.Context, device string) ([]hubstore.DeviceCert, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+certCols+` FROM device_certs WHERE device = $1 ORDER BY issued`, device)
	if err != nil {
		return nil, fmt.Errorf("pgstore: device certs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hubstore.DeviceCert, error) { return scanCert(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: device certs: %w", err)
	}
	return out, nil
}

// Revoke implements hubstore.Registry.
func (s *Store) Revoke(ctx context.Context, r hubstore.Revocation) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO revocations (serial, device, reason, revoked) VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO NOTHING`,
		r.Serial, r.Device, r.Reason, r.Revoked.UTC())
	if err != nil {
		return fmt.Errorf("pgstore: revoke: %w", err)
	}
	return nil
}

// Revocations implements hubstore.Registry.
func (s *Store) Revocations(ctx context.Context) ([]hubstore.Revocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT serial, device, reason, revoked FROM revocations ORDER BY revoked, serial`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: revocations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hubstore.Revocation, error) {
		var v hubstore.Revocation
		err := r.Scan(&v.Serial, &v.Device, &v.Reason, &v.Revoked)
		v.Revoked = v.Revoked.UTC()
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: revocations: %w", err)
	}
	return out, nil
}
