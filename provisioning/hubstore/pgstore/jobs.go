package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kiosk/firmware/jobwire"
	"kiosk/provisioning/fleet"
)

var _ fleet.Store = (*Store)(nil)

// CreateJob implements fleet.Store: the job and its executions in one
// transaction.
func (s *Store) CreateJob(ctx context.Context, j fleet.Job) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO jobs (id, kind, doc, grp, devices, created, expires, per_minute, in_flight, abort_percent, min_finished, state)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			j.ID, j.Kind, j.Doc, j.Group, j.Devices, j.Created.UTC(), j.Expires.UTC(), j.PerMinute, j.InFlight, j.AbortPercent, j.MinFinished, j.State)
		if isUnique(err) {
			return fmt.Errorf("fleet: job %q exists", j.ID)
		}
		if err != nil {
			return fmt.Errorf("pgstore: create job: %w", err)
		}
		rows := make([][]any, 0, len(j.Devices))
		for _, d := range j.Devices {
			rows = append(rows, []any{j.ID, d, fleet.ExecCreated, j.Created.UTC()})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"job_executions"}, []string{"job_id", "device", "status", "updated"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("pgstore: create executions: %w", err)
		}
		return nil
	})
}

const jobColumns = `id, kind, doc, grp, devices, created, expires, per_minute, in_flight, abort_percent, min_finished, state`

func scanJob(row pgx.Row) (fleet.Job, error) {
	var j fleet.Job
	err := row.Scan(&j.ID, &j.Kind, &j.Doc, &j.Group, &j.Devices, &j.Created, &j.Expires, &j.PerMinute, &j.InFlight, &j.AbortPercent, &j.MinFinished, &j.State)
	j.Created, j.Expires = j.Created.UTC(), j.Expires.UTC()
	return j, err
}

// Job implements fleet.Store.
func (s *Store) Job(ctx context.Context, id string) (fleet.Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return fleet.Job{}, fmt.Errorf("%w: job %q", fleet.ErrNotFound, id)
	}
	if err != nil {
		return fleet.Job{}, fmt.Errorf("pgstore: job: %w", err)
	}
	return j, nil
}

// SetJobState implements fleet.Store.
func (s *Store) SetJobState(ctx context.Context, id, state string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE jobs SET state = $2 WHERE id = $1`, id, state)
	if err != nil {
		return fmt.Errorf("pgstore: job state: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: job %q", fleet.ErrNotFound, id)
	}
	return nil
}

// Jobs implements fleet.Store (oldest first).
func (s *Store) Jobs(ctx context.Context) ([]fleet.Job, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+jobColumns+` FROM jobs ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: jobs: %w", err)
	}
	defer rows.Close()
	var out []fleet.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("pgstore: jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

const execColumns = `job_id, device, status, reason, result, seq, offers, updated, warnings`

func scanExec(row pgx.Row) (fleet.Execution, error) {
	var e fleet.Execution
	err := row.Scan(&e.JobID, &e.Device, &e.Status, &e.Reason, &e.Result, &e.Seq, &e.Offers, &e.Updated, &e.Warnings)
	e.Updated = e.Updated.UTC()
	if len(e.Warnings) == 0 {
		e.Warnings = nil
	}
	return e, err
}

// Executions implements fleet.Store (by device).
func (s *Store) Executions(ctx context.Context, jobID string) ([]fleet.Execution, error) {
	if _, err := s.Job(ctx, jobID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+execColumns+` FROM job_executions WHERE job_id = $1 ORDER BY device`, jobID)
	if err != nil {
		return nil, fmt.Errorf("pgstore: executions: %w", err)
	}
	defer rows.Close()
	var out []fleet.Execution
	for rows.Next() {
		e, err := scanExec(rows)
		if err != nil {
			return nil, fmt.Errorf("pgstore: executions: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Offer implements fleet.Store.
func (s *Store) Offer(ctx context.Context, jobID, device string, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE job_executions
		SET status = CASE WHEN status = $3 THEN $4 ELSE status END, offers = offers + 1, updated = $5
		WHERE job_id = $1 AND device = $2 AND status <> ALL($6)`,
		jobID, device, fleet.ExecCreated, fleet.ExecOffered, now.UTC(), terminal)
	if err != nil {
		return fmt.Errorf("pgstore: offer: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := s.execution(ctx, s.pool, jobID, device, false); err != nil {
			return err
		}
	}
	return nil
}

var terminal = []string{jobwire.StatusSucceeded, jobwire.StatusFailed, jobwire.StatusRejected, jobwire.StatusCanceled}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) execution(ctx context.Context, q querier, jobID, device string, lock bool) (fleet.Execution, error) {
	sql := `SELECT ` + execColumns + ` FROM job_executions WHERE job_id = $1 AND device = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	e, err := scanExec(q.QueryRow(ctx, sql, jobID, device))
	if errors.Is(err, pgx.ErrNoRows) {
		return fleet.Execution{}, fmt.Errorf("%w: execution of job %q on %q", fleet.ErrNotFound, jobID, device)
	}
	if err != nil {
		return fleet.Execution{}, fmt.Errorf("pgstore: execution: %w", err)
	}
	return e, nil
}

// Report implements fleet.Store: the row is locked while fleet.Apply
// decides.
func (s *Store) Report(ctx context.Context, st jobwire.Status, now time.Time) (fleet.Execution, bool, error) {
	var out fleet.Execution
	applied := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		e, err := s.execution(ctx, tx, st.JobID, st.Device, true)
		if err != nil {
			return err
		}
		if applied = fleet.Apply(&e, st); applied {
			e.Updated = now.UTC()
			if _, err := tx.Exec(ctx, `UPDATE job_executions SET status = $3, reason = $4, result = $5, seq = $6, updated = $7
				WHERE job_id = $1 AND device = $2`, e.JobID, e.Device, e.Status, e.Reason, e.Result, e.Seq, e.Updated); err != nil {
				return fmt.Errorf("pgstore: report: %w", err)
			}
		}
		out = e
		return nil
	})
	return out, applied && err == nil, err
}

// Warn implements fleet.Store (at most 16 warnings are kept).
func (s *Store) Warn(ctx context.Context, jobID, device, warning string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE job_executions SET warnings = array_append(warnings, $3)
		WHERE job_id = $1 AND device = $2 AND cardinality(warnings) < 16`, jobID, device, warning)
	if err != nil {
		return fmt.Errorf("pgstore: warn: %w", err)
	}
	if tag.RowsAffected() == 0 {
		_, err := s.execution(ctx, s.pool, jobID, device, false)
		return err
	}
	return nil
}

// Unfinished implements fleet.Store.
func (s *Store) Unfinished(ctx context.Context, device string, now time.Time) ([]fleet.Execution, error) {
	rows, err := s.pool.Query(ctx, `SELECT e.job_id, e.device, e.status, e.reason, e.result, e.seq, e.offers, e.updated, e.warnings
		FROM job_executions e JOIN jobs j ON j.id = e.job_id
		WHERE e.device = $1 AND e.status <> $2 AND e.status <> ALL($3) AND j.state IN ($4, $5) AND j.expires > $6
		ORDER BY j.created`, device, fleet.ExecCreated, terminal, fleet.JobRunning, fleet.JobAborted, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("pgstore: unfinished: %w", err)
	}
	defer rows.Close()
	var out []fleet.Execution
	for rows.Next() {
		e, err := scanExec(rows)
		if err != nil {
			return nil, fmt.Errorf("pgstore: unfinished: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// CancelCreated implements fleet.Store.
func (s *Store) CancelCreated(ctx context.Context, jobID string, now time.Time) (int, error) {
	if _, err := s.Job(ctx, jobID); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE job_executions SET status = $2, reason = 'cancelled before it was offered', updated = $3
		WHERE job_id = $1 AND status = $4`, jobID, jobwire.StatusCanceled, now.UTC(), fleet.ExecCreated)
	if err != nil {
		return 0, fmt.Errorf("pgstore: cancel: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PruneJobs implements fleet.Store (executions go with their job).
func (s *Store) PruneJobs(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM jobs WHERE expires < $1`, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("pgstore: prune jobs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// SetGroup implements fleet.Store.
func (s *Store) SetGroup(ctx context.Context, name string, devices []string) error {
	var err error
	if len(devices) == 0 {
		_, err = s.pool.Exec(ctx, `DELETE FROM fleet_groups WHERE name = $1`, name)
	} else {
		_, err = s.pool.Exec(ctx, `INSERT INTO fleet_groups (name, devices) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET devices = EXCLUDED.devices`, name, devices)
	}
	if err != nil {
		return fmt.Errorf("pgstore: set group: %w", err)
	}
	return nil
}

// Groups implements fleet.Store.
func (s *Store) Groups(ctx context.Context) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, devices FROM fleet_groups`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: groups: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var name string
		var devs []string
		if err := rows.Scan(&name, &devs); err != nil {
			return nil, fmt.Errorf("pgstore: groups: %w", err)
		}
		out[name] = devs
	}
	return out, rows.Err()
}
