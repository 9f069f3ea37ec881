// Package backoff is the retry timing shared by the drivers and the hub
// link: capped exponential delays with "equal jitter", so a fleet of
// kiosks does not retry in lock-step, and a context-aware sleep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter returns a delay in [d/2, d]: half fixed, half random, so retries
// spread out but never collapse to zero.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Exp is the jittered delay before retry number attempt (1 = first):
// lo doubled per attempt, capped at hi.
func Exp(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	return Jitter(min(d, hi))
}

// Sleep waits d or until ctx ends; it reports whether the full delay passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
