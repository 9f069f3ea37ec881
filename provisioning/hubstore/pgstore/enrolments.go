package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kiosk/provisioning/hubstore"
)

var _ hubstore.EnrolmentStore = (*Store)(nil)

// EnrolFace implements hubstore.EnrolmentStore: a second enrolment of an
// identity replaces the first.
func (s *Store) EnrolFace(ctx context.Context, identity string, face []byte, now time.Time) error {
	if err := hubstore.CheckEnrolment(identity, face); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO face_enrolments (identity, face, enrolled) VALUES ($1, $2, $3)
		ON CONFLICT (identity) DO UPDATE SET face = EXCLUDED.face, enrolled = EXCLUDED.enrolled`,
		identity, face, micro(now))
	if err != nil {
		return fmt.Errorf("pgstore: enrol face: %w", err)
	}
	return nil
}

// RemoveFace implements hubstore.EnrolmentStore.
func (s *Store) RemoveFace(ctx context.Context, identity string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM face_enrolments WHERE identity = $1`, identity)
	if err != nil {
		return fmt.Errorf("pgstore: remove face: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return hubstore.ErrNotFound
	}
	return nil
}

// FaceReference implements hubstore.Enrolments.
func (s *Store) FaceReference(ctx context.Context, identity string) ([]byte, error) {
	var face []byte
	err := s.pool.QueryRow(ctx, `SELECT face FROM face_enrolments WHERE identity = $1`, identity).Scan(&face)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: face reference: %w", err)
	}
	return face, nil
}
