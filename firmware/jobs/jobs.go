// Package jobs runs fleet jobs on the kiosk: it receives jobs sealed by the
// hub's operations key (firmware/jobwire), refuses what is forged, expired,
// replayed or meant for another kiosk, waits until no session runs, executes
// the kind's handler and reports every step as a status sealed by the device
// key (docs/mqtt.md, "Jobs"). It replaces the unsigned commands of earlier
// versions: nothing an operator asks for runs without the hub's signature.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txreport"
)

// Link is the part of the hub client the runner uses.
type Link interface {
	Route(subtopic string, buffer int) <-chan hub.Message
	Publish(ctx context.Context, subtopic string, qos byte, retained bool, payload []byte) error
	DeviceID() string
	Status() hub.Status
	Changed() <-chan struct{}
}

// linkWait is how long a status waits for the link to come up: a persistent
// session delivers queued jobs right after CONNACK, before the client
// counts as connected.
const linkWait = 15 * time.Second

// Outcome is what a handler returns on success.
type Outcome struct {
	// Result is encoded as the status's JSON result (bounded by
	// jobwire.MaxDoc); nil for none.
	Result any
	// After runs once the terminal status is recorded and published (a
	// reboot must not cut off its own report); not for a Pending job.
	After func()
	// Pending leaves the job in progress: its outcome comes later through
	// Complete, possibly from the next process (a firmware update reports
	// after the reboot; that process calls Continue first).
	Pending bool
}

// progressKey carries a running job's progress reporter in its handler's
// context.
type progressKey struct{}

// Progress sends an in_progress status with result (JSON, bounded by
// jobwire.MaxDoc) for the job whose handler got ctx; outside a handler it
// does nothing. Each has a higher sequence number than the one before,
// also across restarts (it is recorded), so the hub keeps the latest.
func Progress(ctx context.Context, result any) {
	if f, ok := ctx.Value(progressKey{}).(func(any)); ok {
		f(result)
	}
}

// Handler executes one kind. An error fails the job, except a *Rejection,
// which rejects it (a bad document: nothing was changed).
type Handler func(ctx context.Context, j jobwire.Job) (Outcome, error)

// Rejection is a handler's refusal to act, with a jobwire.Reason* code.
type Rejection struct {
	Reason string
	Detail string
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Detail }

// Reject returns a *Rejection.
func Reject(reason, format string, args ...any) error {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Options configure a Runner.
type Options struct {
	Link Link
	// Operations verifies jobs: the hub's operations certificates
	// (hub.operations_cert). Required.
	Operations *txreport.Keyring
	// Signer seals statuses with the device key. Required.
	Signer *txreport.Signer
	// StateDir holds jobs.db, the record of executed job ids.
	StateDir   string
	MaxRecords int // default DefaultMaxRecords
	// Handlers by kind; a kind without one is rejected as unsupported
	// (Unsupported gives the reason of a known kind not offered yet).
	Handlers    map[string]Handler
	Unsupported map[string]string
	// Rerun names kinds whose handlers resume safely: an accepted job of
	// such a kind that a restart interrupted runs again when the hub
	// offers it again, instead of failing as interrupted (a download
	// resumes where it stopped).
	Rerun map[string]bool
	// Idle reports that no session runs; jobs wait for it. Nil: always.
	Idle func() bool
	// IdlePoll is how often a waiting job checks Idle (default 200 ms).
	IdlePoll time.Duration
	// OnStatus is told every status sent (health counters, events). It
	// must not block.
	OnStatus func(jobwire.Status)
	Logger   *slog.Logger
	Now      func() time.Time
}

// Stats count jobs by outcome.
type Stats struct {
	Received  uint64 `json:"received"`
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Rejected  uint64 `json:"rejected"`
	// Resent: terminal statuses sent again for a job the hub offered
	// again (it had missed the first).
	Resent uint64 `json:"resent"`
}

// Runner receives and executes jobs. Create with New before the hub client
// runs (it routes the job topic), then Run.
type Runner struct {
	o     Options
	log   *slog.Logger
	in    <-chan hub.Message
	rec   *record
	queue chan accepted
	stats struct{ received, succeeded, failed, rejected, resent atomic.Uint64 }
	// active holds the ids accepted by this process and not finished: a
	// redelivery of one is ignored (its statuses will follow); an id in
	// the record but not active was interrupted by a restart.
	mu     sync.Mutex
	active map[string]bool
	// seqs holds the last sequence number sent for jobs that report
	// progress (also recorded, so it grows across restarts).
	seqs map[string]int
}

type accepted struct {
	job  jobwire.Job
	hash string
}

// queueDepth bounds accepted jobs waiting for the session to end.
const queueDepth = 32

// New opens the record and routes the job topic.
func New(o Options) (*Runner, error) {
	if o.Link == nil || o.Operations == nil || o.Signer == nil || o.StateDir == "" {
		return nil, errors.New("jobs: link, operations keyring, signer and state dir are required")
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.IdlePoll <= 0 {
		o.IdlePoll = 200 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rec, err := openRecord(filepath.Join(o.StateDir, "jobs.db"), o.MaxRecords)
	if err != nil {
		return nil, err
	}
	return &Runner{o: o, log: log, rec: rec, in: o.Link.Route(jobwire.TopicJob, 64), queue: make(chan accepted, queueDepth), active: map[string]bool{}, seqs: map[string]int{}}, nil
}

// Stats returns the counters.
func (r *Runner) Stats() Stats {
	return Stats{Received: r.stats.received.Load(), Succeeded: r.stats.succeeded.Load(), Failed: r.stats.failed.Load(),
		Rejected: r.stats.rejected.Load(), Resent: r.stats.resent.Load()}
}

// Run receives and executes jobs until ctx ends, then closes the record.
func (r *Runner) Run(ctx context.Context) error {
	defer r.rec.Close()
	var wg sync.WaitGroup
	wg.Go(func() { r.execute(ctx) })
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-r.in:
			r.receive(ctx, m.Payload)
		}
	}
}

// receive verifies one sealed job and queues it, or rejects it.
func (r *Runner) receive(ctx context.Context, payload []byte) {
	r.stats.received.Add(1)
	me := r.o.Link.DeviceID()
	j, err := jobwire.Open(r.o.Operations, payload)
	if err != nil {
		// Name the job it claims to be, so the operator sees the refusal;
		// nothing else of it is used.
		p, _ := jobwire.Peek(payload)
		reason := jobwire.ReasonMalformed
		if errors.Is(err, txreport.ErrUnknownDevice) || errors.Is(err, txreport.ErrBadSignature) {
			reason = jobwire.ReasonBadSignature
		}
		r.reject(ctx, p.ID, reason, err.Error())
		return
	}
	if j.Device != me {
		r.reject(ctx, j.ID, jobwire.ReasonWrongTarget, fmt.Sprintf("job for %q, this kiosk is %q", j.Device, me))
		return
	}
	hash := j.Hash()
	e, seen, err := r.rec.Lookup(j.ID)
	if err != nil {
		r.reject(ctx, j.ID, jobwire.ReasonStateUnusable, err.Error())
		return
	}
	if seen {
		r.mu.Lock()
		active := r.active[j.ID]
		r.mu.Unlock()
		switch {
		case e.Hash != hash:
			r.reject(ctx, j.ID, jobwire.ReasonReplayed, "this job id was executed already with another content")
		case e.Final != nil:
			// The hub offers it again: it missed the outcome.
			r.stats.resent.Add(1)
			r.publish(ctx, jobwire.Status{JobID: j.ID, Status: "recorded"}, e.Final)
		case active: // queued or running here: its statuses will follow
		case r.o.Rerun[j.Kind] && r.o.Now().Before(j.Expires):
			r.mu.Lock()
			r.active[j.ID] = true
			r.seqs[j.ID] = max(r.seqs[j.ID], e.Seq)
			r.mu.Unlock()
			r.log.Info("job resumed after a restart", "job", j.ID, "kind", j.Kind)
			select {
			case r.queue <- accepted{job: j, hash: hash}:
			default:
				r.finish(ctx, j, 3, jobwire.StatusFailed, jobwire.ReasonBusy+": too many jobs waiting", "")
			}
		default:
			// Accepted before a restart that interrupted it: never run an
			// action twice (a reboot would loop).
			r.finish(ctx, j, 3, jobwire.StatusFailed, jobwire.ReasonInterrupted+": kioskd restarted before the job finished", "")
		}
		return
	}
	now := r.o.Now()
	switch {
	case !now.Before(j.Expires):
		r.reject(ctx, j.ID, jobwire.ReasonExpired, "expired at "+j.Expires.UTC().Format(time.RFC3339))
		return
	case j.Created.After(now.Add(jobwire.ClockSkew)):
		r.reject(ctx, j.ID, jobwire.ReasonNotYetValid, "created at "+j.Created.UTC().Format(time.RFC3339)+", in the future")
		return
	}
	if _, ok := r.o.Handlers[j.Kind]; !ok {
		why, known := r.o.Unsupported[j.Kind]
		if !known {
			why = fmt.Sprintf("kind %q is not supported by this kiosk", j.Kind)
		}
		r.reject(ctx, j.ID, jobwire.ReasonUnsupported, why)
		return
	}
	if err := r.rec.Begin(j.ID, entry{Hash: hash, Expires: j.Expires}, now); err != nil {
		reason := jobwire.ReasonStateUnusable
		if errors.Is(err, ErrRecordFull) {
			reason = jobwire.ReasonRecordFull
		}
		r.reject(ctx, j.ID, reason, err.Error())
		return
	}
	r.mu.Lock()
	r.active[j.ID] = true
	r.mu.Unlock()
	select {
	case r.queue <- accepted{job: j, hash: hash}:
	default:
		r.finish(ctx, j, 1, jobwire.StatusRejected, jobwire.ReasonBusy+": too many jobs waiting", "")
		return
	}
	r.send(ctx, jobwire.Status{JobID: j.ID, Status: jobwire.StatusQueued, Seq: 1})
}

// execute runs queued jobs one at a time, each after the session ends.
func (r *Runner) execute(ctx context.Context) {
	for {
		var a accepted
		select {
		case <-ctx.Done():
			return
		case a = <-r.queue:
		}
		if !r.waitIdle(ctx) {
			return
		}
		j := a.job
		if !r.o.Now().Before(j.Expires) {
			r.finish(ctx, j, 2, jobwire.StatusRejected, jobwire.ReasonExpired+": expired while waiting for the session to end", "")
			continue
		}
		r.send(ctx, jobwire.Status{JobID: j.ID, Status: jobwire.StatusInProgress, Seq: 2})
		id := j.ID
		hctx := context.WithValue(ctx, progressKey{}, func(res any) { r.progress(ctx, id, res) })
		out, err := r.o.Handlers[j.Kind](hctx, j)
		var result string
		if err == nil && out.Result != nil {
			b, merr := json.Marshal(out.Result)
			switch {
			case merr != nil:
				err = fmt.Errorf("encode result: %w", merr)
			case len(b) > jobwire.MaxDoc:
				err = fmt.Errorf("result of %d bytes exceeds %d", len(b), jobwire.MaxDoc)
			default:
				result = string(b)
			}
		}
		var rej *Rejection
		switch {
		case err == nil && out.Pending:
			// Stays active: Complete reports the outcome.
			r.log.Info("job in progress beyond its handler", "job", j.ID, "kind", j.Kind)
			continue
		case err != nil && ctx.Err() != nil && r.o.Rerun[j.Kind]:
			// Stopped, not failed: the next process runs it again.
			r.log.Info("job interrupted by the stop; it resumes after the restart", "job", j.ID, "kind", j.Kind)
			continue
		case errors.As(err, &rej):
			r.finish(ctx, j, 3, jobwire.StatusRejected, rej.Error(), "")
		case err != nil:
			r.finish(ctx, j, 3, jobwire.StatusFailed, err.Error(), "")
		default:
			r.finish(ctx, j, 3, jobwire.StatusSucceeded, "", result)
		}
		r.log.Info("job done", "job", j.ID, "kind", j.Kind, "err", err)
		if err == nil && out.After != nil {
			out.After()
		}
	}
}

func (r *Runner) waitLink(ctx context.Context) {
	t := time.NewTimer(linkWait)
	defer t.Stop()
	for {
		ch := r.o.Link.Changed()
		if r.o.Link.Status().Connected {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (r *Runner) waitIdle(ctx context.Context) bool {
	if r.o.Idle == nil || r.o.Idle() {
		return true
	}
	t := time.NewTicker(r.o.IdlePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if r.o.Idle() {
				return true
			}
		}
	}
}

// reject reports a job refused before it was accepted; it is not
// recorded (the record holds accepted ids only, so a forged job cannot
// fill it or block the genuine job of the same id).
func (r *Runner) reject(ctx context.Context, id, reason, detail string) {
	r.log.Warn("job rejected", "job", id, "reason", reason, "detail", detail)
	if id == "" {
		r.stats.rejected.Add(1)
		return // nothing to name: the hub has no such job
	}
	r.send(ctx, jobwire.Status{JobID: id, Status: jobwire.StatusRejected, Reason: reason + ": " + detail, Seq: 1})
}

// maxProgressSeq leaves room for the terminal status under jobwire's
// bound of 1000.
const maxProgressSeq = 990

// progress sends one in_progress status with a result, with the job's next
// sequence number (recorded first).
func (r *Runner) progress(ctx context.Context, id string, res any) {
	b, err := json.Marshal(res)
	if err != nil || len(b) > jobwire.MaxDoc {
		r.log.Warn("job progress not sent", "job", id, "err", err, "bytes", len(b))
		return
	}
	r.mu.Lock()
	seq := max(r.seqs[id], 2) + 1
	if seq > maxProgressSeq {
		r.mu.Unlock()
		return
	}
	r.seqs[id] = seq
	r.mu.Unlock()
	if err := r.rec.SetSeq(id, seq); err != nil {
		r.log.Warn("job progress not recorded", "job", id, "err", err)
	}
	r.send(ctx, jobwire.Status{JobID: id, Status: jobwire.StatusInProgress, Result: string(b), Seq: seq})
}

// Continue takes over, in this process, an accepted job whose handler
// returned Pending in an earlier one: offers of it are ignored from now on
// and Complete reports its outcome. Call it before Run.
func (r *Runner) Continue(id string) error {
	e, seen, err := r.rec.Lookup(id)
	switch {
	case err != nil:
		return err
	case !seen:
		return fmt.Errorf("jobs: job %q is not in the record", id)
	case e.Final != nil:
		return fmt.Errorf("jobs: job %q has finished already", id)
	}
	r.mu.Lock()
	r.active[id] = true
	r.seqs[id] = max(r.seqs[id], e.Seq, 2)
	r.mu.Unlock()
	return nil
}

// Complete reports the outcome of a Pending job (status succeeded or
// failed; reason a jobwire.Reason* code, ": " and a detail).
func (r *Runner) Complete(ctx context.Context, id, status, reason string, result any) error {
	r.mu.Lock()
	active := r.active[id]
	r.mu.Unlock()
	if !active {
		return fmt.Errorf("jobs: job %q is not in progress here", id)
	}
	if status != jobwire.StatusSucceeded && status != jobwire.StatusFailed {
		return fmt.Errorf("jobs: %q is not an outcome", status)
	}
	var res string
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil || len(b) > jobwire.MaxDoc {
			return fmt.Errorf("jobs: result of job %q: %v (%d bytes)", id, err, len(b))
		}
		res = string(b)
	}
	r.finish(ctx, jobwire.Job{ID: id}, 3, status, reason, res)
	r.log.Info("job done", "job", id, "status", status, "reason", reason)
	return nil
}

// finish records and sends a terminal status of an accepted job.
func (r *Runner) finish(ctx context.Context, j jobwire.Job, seq int, status, reason, result string) {
	r.mu.Lock()
	seq = max(seq, r.seqs[j.ID]+1)
	delete(r.seqs, j.ID)
	r.mu.Unlock()
	st := jobwire.Status{JobID: j.ID, Status: status, Reason: reason, Result: result, Seq: seq}
	b := r.seal(st)
	if b != nil {
		// Recorded before it is sent: a redelivery after a restart gets
		// this status again instead of running the job twice.
		if err := r.rec.Finish(j.ID, b); err != nil {
			r.log.Error("job outcome not recorded", "job", j.ID, "err", err)
		}
		r.publish(ctx, st, b)
	}
	r.mu.Lock()
	delete(r.active, j.ID)
	r.mu.Unlock()
}

// send seals and publishes a status.
func (r *Runner) send(ctx context.Context, st jobwire.Status) {
	if b := r.seal(st); b != nil {
		r.publish(ctx, st, b)
	}
}

// seal fills and seals a status, counting it; nil when sealing failed
// (the device key was withdrawn: a tampered kiosk reports nothing).
func (r *Runner) seal(st jobwire.Status) []byte {
	st.V, st.Device, st.Time = jobwire.Version, r.o.Link.DeviceID(), r.o.Now()
	if len(st.Reason) > 1024 {
		st.Reason = strings.ToValidUTF8(st.Reason[:1024], "")
	}
	switch st.Status {
	case jobwire.StatusSucceeded:
		r.stats.succeeded.Add(1)
	case jobwire.StatusFailed:
		r.stats.failed.Add(1)
	case jobwire.StatusRejected:
		r.stats.rejected.Add(1)
	}
	if r.o.OnStatus != nil {
		r.o.OnStatus(st)
	}
	b, err := jobwire.SealStatus(r.o.Signer, st)
	if err != nil {
		r.log.Error("job status not sealed", "job", st.JobID, "status", st.Status, "err", err)
		return nil
	}
	return b
}

func (r *Runner) publish(ctx context.Context, st jobwire.Status, b []byte) {
	r.waitLink(ctx)
	if err := r.o.Link.Publish(ctx, jobwire.TopicStatus, 1, false, b); err != nil {
		// The hub offers unfinished jobs again when the kiosk reconnects;
		// the recorded terminal status is resent then.
		r.log.Warn("job status not sent", "job", st.JobID, "status", st.Status, "err", err)
	}
}
