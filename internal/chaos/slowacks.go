package main

import (
	"context"
	"time"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// slowAcks is the hub's store as a slow hub would use it: a new report is
// stored, announced on applied, and only after delay does the hub go on
// to seal and publish its ack. That widens the window in which kioskd has
// published a report but not yet removed it from its outbox.
type slowAcks struct {
	hubstore.Store
	delay   time.Duration
	applied chan string
}

func (s *slowAcks) Apply(ctx context.Context, r *txreport.Report, env []byte, cert, instance string, now time.Time) (bool, error) {
	dup, err := s.Store.Apply(ctx, r, env, cert, instance, now)
	if err != nil || dup {
		return dup, err
	}
	select {
	case s.applied <- r.TxID:
	default: // nobody listening: no strike this time
	}
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return false, nil
}
