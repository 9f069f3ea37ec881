// Package pgstore is the production hubstore.Store on PostgreSQL (15, as
// Debian 12 ships it), shared by every hub instance. The schema is
// migrated on Open (tern, under an advisory lock, so instances starting
// together migrate once). Correctness under concurrency comes from
// primary keys (INSERT … ON CONFLICT for reports) and a per-terminal
// advisory transaction lock around each authorization decision.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable is tern's record of applied migrations.
const versionTable = "schema_version"

// Store is a hubstore.Store on a PostgreSQL connection pool.
type Store struct {
	pool *pgxpool.Pool
}

var _ hubstore.Store = (*Store)(nil)

// Options tune the pool; zero values take pgx's defaults.
type Options struct {
	MaxConns int32
}

// Open connects (dsn: a postgres:// URL or key=value string), migrates the
// schema to the newest version and returns the store.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dsn: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrateSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// SchemaVersion is the newest migration this build knows.
func SchemaVersion() int {
	ents, _ := fs.Glob(migrations, "migrations/*.sql")
	return len(ents)
}

func migrateSchema(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: connect: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return fmt.Errorf("pgstore: migrator: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("pgstore: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	return nil
}

// Version is the schema version the database is at.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&v)
	return v, err
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks the database answers (health).
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// PostgreSQL keeps microseconds; stored times are cut to them so a page
// cursor made from a stored row finds that row again.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// inTx runs f in a transaction and commits it.
func (s *Store) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	return nil
}

// Apply implements hubstore.Store.
func (s *Store) Apply(ctx context.Context, r *txreport.Report, env []byte, cert, instance string, now time.Time) (dup bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var inserted bool
		// xmax is 0 on a row this statement inserted, the locker's id on
		// one it updated: a concurrent copy waits for the first and then
		// counts as a duplicate.
		err := tx.QueryRow(ctx, `
			INSERT INTO transactions (terminal, tx_id, amount, currency, decision, auth_mode, received, applied_by, report, envelope, cert)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (terminal, tx_id) DO UPDATE SET duplicates = transactions.duplicates + 1
			RETURNING xmax = 0`,
			r.Terminal, r.TxID, r.Amount, r.Currency, r.Decision, r.Auth.Mode, micro(now), instance, r, env, cert).Scan(&inserted)
		if err != nil {
			return fmt.Errorf("pgstore: apply %s: %w", r.TxID, err)
		}
		dup = !inserted
		if dup {
			return nil
		}
		switch {
		case r.Decision == txreport.Approved && r.Auth.Mode == txreport.AuthOffline:
			_, err = tx.Exec(ctx, `INSERT INTO daily_usage (terminal, day, tx_id, amount) VALUES ($1, $2, $3, $4)
				ON CONFLICT DO NOTHING`, r.Terminal, day(now), r.TxID, r.Amount)
		case r.Decision == txreport.Declined:
			// An online approval the payment did not use gives its share back.
			_, err = tx.Exec(ctx, `DELETE FROM daily_usage u USING authorizations a
				WHERE a.terminal = $1 AND a.tx_id = $2 AND a.approved
				AND u.terminal = a.terminal AND u.day = a.day AND u.tx_id = a.tx_id`, r.Terminal, r.TxID)
		}
		if err != nil {
			return fmt.Errorf("pgstore: daily limit %s: %w", r.TxID, err)
		}
		return nil
	})
	return dup, err
}

// Authorize implements hubstore.Store.
func (s *Store) Authorize(ctx context.Context, req hub.AuthRequest, terminal string, l hubstore.Limits, now time.Time) (hub.AuthResponse, error) {
	resp := hub.AuthResponse{ID: req.ID, TxID: req.TxID, Terminal: terminal, Amount: req.Amount, Currency: req.Currency}
	if req.TxID == "" || req.Amount <= 0 || len(req.Currency) != 3 {
		resp.Reason = hubstore.ReasonInvalid
		return resp, nil
	}
	decided := resp
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		decided = resp
		// One decision at a time per terminal: the daily sum read below
		// stays true until this transaction commits.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, terminal); err != nil {
			return fmt.Errorf("pgstore: lock terminal: %w", err)
		}
		var prev struct {
			merchant, currency, reason, ref string
			amount                          int64
			approved                        bool
		}
		err := tx.QueryRow(ctx, `SELECT merchant, amount, currency, approved, reason, ref FROM authorizations
			WHERE terminal = $1 AND tx_id = $2`, terminal, req.TxID).
			Scan(&prev.merchant, &prev.amount, &prev.currency, &prev.approved, &prev.reason, &prev.ref)
		switch {
		case err == nil:
			if prev.amount != req.Amount || prev.currency != req.Currency || prev.merchant != req.Merchant {
				decided.Reason = hubstore.ReasonInvalid // the same transaction, other terms
				return nil
			}
			decided.Approved, decided.Reason, decided.Ref = prev.approved, prev.reason, prev.ref
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("pgstore: authorization %s: %w", req.TxID, err)
		}
		switch {
		case l.MaxTx > 0 && req.Amount > l.MaxTx:
			decided.Reason = hubstore.ReasonOverTxLimit
		case l.MaxDaily > 0:
			var used int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM daily_usage WHERE terminal = $1 AND day = $2`,
				terminal, day(now)).Scan(&used); err != nil {
				return fmt.Errorf("pgstore: daily sum: %w", err)
			}
			if used+req.Amount > l.MaxDaily {
				decided.Reason = hubstore.ReasonOverDailyLimit
			}
		}
		var share *time.Time
		if decided.Reason == "" {
			d := day(now)
			decided.Approved, decided.Ref, share = true, "A-"+hub.NewID()[:12], &d
			if _, err := tx.Exec(ctx, `INSERT INTO daily_usage (terminal, day, tx_id, amount) VALUES ($1, $2, $3, $4)`,
				terminal, d, req.TxID, req.Amount); err != nil {
				return fmt.Errorf("pgstore: daily share %s: %w", req.TxID, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO authorizations (terminal, tx_id, merchant, amount, currency, approved, reason, ref, decided, day)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			terminal, req.TxID, req.Merchant, req.Amount, req.Currency, decided.Approved, decided.Reason, decided.Ref, micro(now), share); err != nil {
			return fmt.Errorf("pgstore: record authorization %s: %w", req.TxID, err)
		}
		return nil
	})
	if err != nil {
		return resp, err
	}
	return decided, nil
}

// List implements hubstore.Store: keyset pagination on the received index.
func (s *Store) List(ctx context.Context, q hubstore.ListQuery) (hubstore.Page, error) {
	limit := q.PageSize()
	var (
		after      time.Time
		aTerm, aTx string
		err        error
		page       = hubstore.Page{Items: []hubstore.Transaction{}}
	)
	if q.After != "" {
		if after, aTerm, aTx, err = hubstore.ParseCursor(q.After); err != nil {
			return page, err
		}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT terminal, tx_id, amount, currency, decision, auth_mode, received, applied_by, duplicates, report, envelope, cert
		FROM transactions
		WHERE ($1 = '' OR terminal = $1) AND (received, terminal, tx_id) > ($2, $3, $4)
		ORDER BY received, terminal, tx_id
		LIMIT $5`, q.Terminal, after, aTerm, aTx, limit+1)
	if err != nil {
		return page, fmt.Errorf("pgstore: list: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t hubstore.Transaction
		var env []byte
		if err := rows.Scan(&t.Terminal, &t.TxID, &t.Amount, &t.Currency, &t.Decision, &t.AuthMode, &t.Received,
			&t.AppliedBy, &t.Duplicates, &t.Report, &env, &t.Cert); err != nil {
			return page, fmt.Errorf("pgstore: list: %w", err)
		}
		t.Received = t.Received.UTC()
		t.Envelope = env
		page.Items = append(page.Items, t)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("pgstore: list: %w", err)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.Next = hubstore.Cursor(page.Items[limit-1])
	}
	return page, nil
}

// Prune implements hubstore.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (hubstore.Pruned, error) {
	var n hubstore.Pruned
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, st := range []struct {
			q   string
			arg any
			n   *int64
		}{
			{`DELETE FROM transactions WHERE received < $1`, micro(before), &n.Transactions},
			{`DELETE FROM authorizations WHERE decided < $1`, micro(before), &n.Authorizations},
			{`DELETE FROM daily_usage WHERE day < $1`, day(before), &n.DailyEntries},
		} {
			tag, err := tx.Exec(ctx, st.q, st.arg)
			if err != nil {
				return fmt.Errorf("pgstore: prune: %w", err)
			}
			*st.n = tag.RowsAffected()
		}
		return nil
	})
	return n, err
}
