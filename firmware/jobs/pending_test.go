package jobs_test

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
)

// link is a jobs.Link without a broker: jobs are pushed into in, statuses
// collected from Publish.
type link struct {
	in  chan hub.Message
	mu  sync.Mutex
	out []jobwire.Status
	ch  chan struct{}
}

func newLink() *link { return &link{in: make(chan hub.Message, 8), ch: make(chan struct{})} }

func (l *link) Route(string, int) <-chan hub.Message { return l.in }
func (l *link) DeviceID() string                     { return "kiosk-01" }
func (l *link) Status() hub.Status                   { return hub.Status{State: "ok", Connected: true} }
func (l *link) Changed() <-chan struct{}             { return l.ch }
func (l *link) Publish(_ context.Context, _ string, _ byte, _ bool, b []byte) error {
	var env struct {
		Body json.RawMessage `json:"body"`
	}
	var st jobwire.Status
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	if err := json.Unmarshal(env.Body, &st); err != nil {
		return err
	}
	l.mu.Lock()
	l.out = append(l.out, st)
	l.mu.Unlock()
	return nil
}

// wait returns the statuses once n have been published.
func (l *link) wait(t *testing.T, n int) []jobwire.Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		out := append([]jobwire.Status(nil), l.out...)
		l.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d statuses, want %d: %+v", len(out), n, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func signer(t *testing.T, cn string) *txreport.Signer {
	k, c, err := devkey.Generate(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := txreport.NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts a runner (a kioskd process) on dir until the returned stop.
func run(t *testing.T, dir string, ops *txreport.Signer, l *link, h jobs.Handler, before func(*jobs.Runner)) (*jobs.Runner, func()) {
	ring := txreport.NewKeyring()
	if err := ring.Add(ops.Certificate()); err != nil {
		t.Fatal(err)
	}
	r, err := jobs.New(jobs.Options{Link: l, Operations: ring, Signer: signer(t, "kiosk-01"), StateDir: dir,
		Handlers: map[string]jobs.Handler{jobwire.KindUpdateFirmware: h}, Rerun: map[string]bool{jobwire.KindUpdateFirmware: true}})
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	return r, func() { cancel(); <-done }
}

func offer(t *testing.T, l *link, ops *txreport.Signer, j jobwire.Job) {
	b, err := jobwire.Seal(ops, j)
	if err != nil {
		t.Fatal(err)
	}
	l.in <- hub.Message{Payload: b}
}

// TestPendingJobOutlivesItsProcess: a handler that reports progress and
// leaves its job pending (a firmware update before its reboot); the next
// process continues it, ignores the hub's offers, and completes it with a
// sequence number above every earlier status.
func TestPendingJobOutlivesItsProcess(t *testing.T) {
	dir, ops := t.TempDir(), signer(t, "hub-operations")
	now := time.Now().UTC()
	job := jobwire.Job{V: jobwire.Version, ID: "fw-1", Device: "kiosk-01", Kind: jobwire.KindUpdateFirmware, Doc: "{}", Created: now, Expires: now.Add(time.Hour)}
	l := newLink()
	_, stop := run(t, dir, ops, l, func(ctx context.Context, _ jobwire.Job) (jobs.Outcome, error) {
		jobs.Progress(ctx, map[string]int{"percent": 50})
		jobs.Progress(ctx, map[string]int{"percent": 100})
		return jobs.Outcome{Pending: true}, nil
	}, nil)
	offer(t, l, ops, job)
	got := l.wait(t, 4)
	stop()
	// queued and in_progress may cross (the runner sends queued after
	// handing the job over); the hub orders by seq.
	sort.SliceStable(got, func(i, j int) bool { return got[i].Seq < got[j].Seq })
	for i, want := range []struct {
		status string
		seq    int
	}{{jobwire.StatusQueued, 1}, {jobwire.StatusInProgress, 2}, {jobwire.StatusInProgress, 3}, {jobwire.StatusInProgress, 4}} {
		if got[i].Status != want.status || got[i].Seq != want.seq {
			t.Fatalf("status %d: %+v, want %s seq %d", i, got[i], want.status, want.seq)
		}
	}
	if got[3].Result != `{"percent":100}` {
		t.Errorf("progress result %q", got[3].Result)
	}

	// The next process: continues, ignores the offer, completes.
	l2 := newLink()
	ran := false
	r2, stop2 := run(t, dir, ops, l2, func(context.Context, jobwire.Job) (jobs.Outcome, error) {
		ran = true
		return jobs.Outcome{}, nil
	}, func(r *jobs.Runner) {
		if err := r.Continue("fw-1"); err != nil {
			t.Fatal(err)
		}
	})
	defer stop2()
	offer(t, l2, ops, job)
	time.Sleep(200 * time.Millisecond)
	if err := r2.Complete(context.Background(), "fw-1", jobwire.StatusSucceeded, "", map[string]string{"version": "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	got = l2.wait(t, 1)
	if ran || len(got) != 1 || got[0].Status != jobwire.StatusSucceeded || got[0].Seq != 5 || got[0].Result != `{"version":"2.0.0"}` {
		t.Fatalf("after the restart: ran %v, statuses %+v", ran, got)
	}
	// Offered again: the recorded outcome is resent, nothing runs.
	offer(t, l2, ops, job)
	got = l2.wait(t, 2)
	if ran || got[1].Status != jobwire.StatusSucceeded {
		t.Fatalf("offered after completion: %+v", got)
	}
	if err := r2.Complete(context.Background(), "fw-1", jobwire.StatusFailed, "x: y", nil); err == nil {
		t.Error("completed twice")
	}
}

// TestRerunAfterRestart: a kind marked Rerun that a restart interrupted
// runs again when offered (a download resumes), instead of failing.
func TestRerunAfterRestart(t *testing.T) {
	dir, ops := t.TempDir(), signer(t, "hub-operations")
	now := time.Now().UTC()
	job := jobwire.Job{V: jobwire.Version, ID: "fw-2", Device: "kiosk-01", Kind: jobwire.KindUpdateFirmware, Doc: "{}", Created: now, Expires: now.Add(time.Hour)}
	l := newLink()
	started := make(chan struct{})
	_, stop := run(t, dir, ops, l, func(ctx context.Context, _ jobwire.Job) (jobs.Outcome, error) {
		jobs.Progress(ctx, map[string]int{"percent": 30})
		close(started)
		<-ctx.Done() // killed mid-download
		return jobs.Outcome{}, ctx.Err()
	}, nil)
	offer(t, l, ops, job)
	<-started
	l.wait(t, 3)
	stop()
	l2 := newLink()
	runs := 0
	_, stop2 := run(t, dir, ops, l2, func(ctx context.Context, _ jobwire.Job) (jobs.Outcome, error) {
		runs++
		jobs.Progress(ctx, map[string]int{"percent": 100})
		return jobs.Outcome{Result: "done"}, nil
	}, nil)
	defer stop2()
	offer(t, l2, ops, job)
	got := l2.wait(t, 3)
	last := got[len(got)-1]
	if runs != 1 || last.Status != jobwire.StatusSucceeded || last.Seq <= 3 {
		t.Fatalf("rerun: runs %d, statuses %+v", runs, got)
	}
	if got[len(got)-2].Seq != 4 || got[len(got)-2].Status != jobwire.StatusInProgress {
		t.Errorf("progress after the restart must continue above seq 3: %+v", got)
	}
}
