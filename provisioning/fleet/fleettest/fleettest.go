// Package fleettest is the conformance suite of fleet.Store: every store
// (memory, PostgreSQL) must pass it.
package fleettest

import (
	"context"
	"errors"
	"testing"
	"time"

	"kiosk/firmware/jobwire"
	"kiosk/provisioning/fleet"
)

// Run runs the suite; open returns an empty store.
func Run(t *testing.T, open func(t *testing.T) fleet.Store) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	job := fleet.Job{ID: "j1", Kind: jobwire.KindPing, Devices: []string{"k1", "k2", "k3"}, Created: now, Expires: now.Add(time.Hour),
		InFlight: 1, AbortPercent: 50, MinFinished: 1, State: fleet.JobRunning}
	st := func(dev, status string, seq int) jobwire.Status {
		return jobwire.Status{V: jobwire.Version, JobID: "j1", Device: dev, Status: status, Seq: seq, Time: now}
	}

	t.Run("lifecycle", func(t *testing.T) {
		s := open(t)
		if err := s.CreateJob(ctx, job); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateJob(ctx, job); err == nil {
			t.Fatal("a job id was stored twice")
		}
		got, err := s.Job(ctx, "j1")
		if err != nil || got.InFlight != 1 || len(got.Devices) != 3 || !got.Expires.Equal(job.Expires) {
			t.Fatalf("job %+v %v", got, err)
		}
		if _, err := s.Job(ctx, "nope"); !errors.Is(err, fleet.ErrNotFound) {
			t.Fatalf("unknown job: %v", err)
		}
		if err := s.Offer(ctx, "j1", "k1", now); err != nil {
			t.Fatal(err)
		}
		if err := s.Offer(ctx, "j1", "k9", now); !errors.Is(err, fleet.ErrNotFound) {
			t.Fatalf("offer to a device outside the job: %v", err)
		}
		// Only offered, unfinished executions of live jobs are offered again.
		u, err := s.Unfinished(ctx, "k1", now)
		if err != nil || len(u) != 1 || u[0].Status != fleet.ExecOffered || u[0].Offers != 1 {
			t.Fatalf("unfinished %+v %v", u, err)
		}
		if u, _ := s.Unfinished(ctx, "k2", now); len(u) != 0 {
			t.Fatalf("k2 not offered yet, but unfinished: %+v", u)
		}
		if u, _ := s.Unfinished(ctx, "k1", now.Add(2*time.Hour)); len(u) != 0 {
			t.Fatalf("expired job offered again: %+v", u)
		}
		// Sequence: in_progress (2) then a late queued (1) changes nothing;
		// a terminal status is final.
		for _, c := range []struct {
			st      jobwire.Status
			want    string
			applied bool
		}{
			{st("k1", jobwire.StatusInProgress, 2), jobwire.StatusInProgress, true},
			{st("k1", jobwire.StatusQueued, 1), jobwire.StatusInProgress, false},
			{st("k1", jobwire.StatusInProgress, 2), jobwire.StatusInProgress, false},
			{st("k1", jobwire.StatusSucceeded, 3), jobwire.StatusSucceeded, true},
			{st("k1", jobwire.StatusSucceeded, 3), jobwire.StatusSucceeded, false},
			{st("k1", jobwire.StatusFailed, 3), jobwire.StatusSucceeded, false},
		} {
			e, applied, err := s.Report(ctx, c.st, now)
			if err != nil || e.Status != c.want || applied != c.applied {
				t.Fatalf("after %s (seq %d): %+v applied %v, want %s applied %v (%v)", c.st.Status, c.st.Seq, e, applied, c.want, c.applied, err)
			}
		}
		if u, _ := s.Unfinished(ctx, "k1", now); len(u) != 0 {
			t.Fatalf("finished execution offered again: %+v", u)
		}
		if err := s.Warn(ctx, "j1", "k2", "bad_signature: forged"); err != nil {
			t.Fatal(err)
		}
		n, err := s.CancelCreated(ctx, "j1", now)
		if err != nil || n != 2 {
			t.Fatalf("cancelled %d, %v", n, err)
		}
		if err := s.SetJobState(ctx, "j1", fleet.JobCancelled); err != nil {
			t.Fatal(err)
		}
		es, err := s.Executions(ctx, "j1")
		if err != nil || len(es) != 3 {
			t.Fatalf("%+v %v", es, err)
		}
		if es[0].Device != "k1" || es[0].Status != jobwire.StatusSucceeded || es[1].Status != jobwire.StatusCanceled ||
			len(es[1].Warnings) != 1 || es[2].Status != jobwire.StatusCanceled {
			t.Fatalf("executions %+v", es)
		}
		if _, applied, err := s.Report(ctx, st("k2", jobwire.StatusSucceeded, 3), now); err != nil || applied {
			t.Fatalf("a status for a cancelled execution: applied %v, %v", applied, err)
		}
		if es, _ := s.Executions(ctx, "j1"); es[1].Status != jobwire.StatusCanceled {
			t.Fatalf("a cancelled execution changed: %+v", es[1])
		}
		js, err := s.Jobs(ctx)
		if err != nil || len(js) != 1 || js[0].State != fleet.JobCancelled {
			t.Fatalf("jobs %+v %v", js, err)
		}
	})

	t.Run("retention", func(t *testing.T) {
		s := open(t)
		old := job
		old.ID, old.Expires = "old", now.Add(-time.Hour)
		old.Created = old.Expires.Add(-time.Hour)
		if err := s.CreateJob(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateJob(ctx, job); err != nil {
			t.Fatal(err)
		}
		n, err := s.PruneJobs(ctx, now)
		if err != nil || n != 1 {
			t.Fatalf("pruned %d, %v", n, err)
		}
		if _, err := s.Job(ctx, "old"); !errors.Is(err, fleet.ErrNotFound) {
			t.Fatalf("a pruned job is still there: %v", err)
		}
		if es, err := s.Executions(ctx, "old"); !errors.Is(err, fleet.ErrNotFound) {
			t.Fatalf("a pruned job's executions: %+v %v", es, err)
		}
		if _, err := s.Job(ctx, "j1"); err != nil {
			t.Fatalf("an unexpired job was pruned: %v", err)
		}
	})

	t.Run("groups", func(t *testing.T) {
		s := open(t)
		if err := s.SetGroup(ctx, "branch-1", []string{"k1", "k2"}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroup(ctx, "branch-2", []string{"k3"}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroup(ctx, "branch-1", []string{"k1", "k4"}); err != nil {
			t.Fatal(err)
		}
		g, err := s.Groups(ctx)
		if err != nil || len(g) != 2 || len(g["branch-1"]) != 2 || g["branch-1"][1] != "k4" || g["branch-2"][0] != "k3" {
			t.Fatalf("groups %v %v", g, err)
		}
		if err := s.SetGroup(ctx, "branch-2", nil); err != nil {
			t.Fatal(err)
		}
		if g, err := s.Groups(ctx); err != nil || len(g) != 1 {
			t.Fatalf("after removal: %v %v", g, err)
		}
	})
}
