package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kiosk/internal/backoff"
	"kiosk/provisioning/hubstore"
)

var _ hubstore.Notifier = (*Store)(nil)

// Listening's timing: reconnection back-off, and how long a quiet
// listening connection waits before it checks that the server still
// answers (a connection cut without a reset would otherwise wait
// forever).
const (
	listenRetryMin    = 250 * time.Millisecond
	listenRetryMax    = 15 * time.Second
	listenQuiet       = 30 * time.Second
	listenPingTimeout = 5 * time.Second
)

// Notify implements hubstore.Notifier with pg_notify, outside any
// transaction, so the notification leaves at once. NOTIFY reaches only
// the listeners of the same database: the instances share one.
func (s *Store) Notify(ctx context.Context, channel string, payload []byte) error {
	if err := hubstore.CheckChannel(channel); err != nil {
		return err
	}
	if len(payload) > hubstore.MaxNotifyPayload {
		return fmt.Errorf("pgstore: notify %s: %d bytes: %w", channel, len(payload), hubstore.ErrPayloadTooLarge)
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, string(payload)); err != nil {
		return fmt.Errorf("pgstore: notify %s: %w", channel, err)
	}
	return nil
}

// Listen implements hubstore.Notifier: LISTEN on a connection of its own,
// taken from the pool and never given back (another user would inherit
// the LISTEN and its queued notifications), then WaitForNotification
// until ctx ends or the connection fails; then again after a back-off.
func (s *Store) Listen(ctx context.Context, channel string, l hubstore.Listener) error {
	if err := hubstore.CheckChannel(channel); err != nil {
		return err
	}
	attempt := 0
	for {
		up, err := s.listenOnce(ctx, channel, l)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if up {
			attempt = 0
		}
		attempt++
		d := backoff.Exp(listenRetryMin, listenRetryMax, attempt)
		if l.Down != nil {
			l.Down(err, d)
		}
		if !backoff.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// listenOnce listens on one connection until it fails (up: it listened).
func (s *Store) listenOnce(ctx context.Context, channel string, l hubstore.Listener) (up bool, err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("pgstore: listen %s: connect: %w", channel, err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("pgstore: listen %s: %w", channel, err)
	}
	if l.Up != nil {
		l.Up()
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, listenQuiet)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case err == nil:
			if n != nil && n.Channel == channel && l.Notification != nil {
				l.Notification([]byte(n.Payload))
			}
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			// Quiet for a while: a timed-out read leaves the connection
			// usable, so ask the server whether it is still there.
			pctx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return true, fmt.Errorf("pgstore: listen %s: the server does not answer: %w", channel, err)
			}
		default:
			return true, fmt.Errorf("pgstore: listen %s: %w", channel, err)
		}
	}
}
