package main

import (
	"context"
	"time"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// applied tells the orchestrator that the hub stored a new report; the
// hub goes on to seal and publish its ack only once release is closed.
type applied struct {
	tx      string
	release chan struct{}
}

// slowAcks is the hub's store as a slow hub would use it: a new report is
// stored and announced, and the hub acknowledges it when the orchestrator
// releases it. Held while kioskd is killed and comes back, the ack cannot
// reach the kiosk before the restarted kioskd sends the report again
// from its outbox: the redelivery the hub must deduplicate.
type slowAcks struct {
	hubstore.Store
	applied chan applied
	maxHold time.Duration
}

func (s *slowAcks) Apply(ctx context.Context, r *txreport.Report, env []byte, cert, instance string, now time.Time) (bool, error) {
	dup, err := s.Store.Apply(ctx, r, env, cert, instance, now)
	if err != nil || dup {
		return dup, err
	}
	ev := applied{tx: r.TxID, release: make(chan struct{})}
	select {
	case s.applied <- ev:
	default: // nobody listening: acknowledged at once
		return false, nil
	}
	t := time.NewTimer(s.maxHold)
	defer t.Stop()
	select {
	case <-ev.release:
	case <-t.C:
	case <-ctx.Done():
	}
	return false, nil
}
