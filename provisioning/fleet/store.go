package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"kiosk/firmware/jobwire"
)

// Hub-side execution states besides jobwire's: created (the rollout has
// not reached the device yet) and offered (sealed and published, no
// status yet).
const (
	ExecCreated = "created"
	ExecOffered = "offered"
)

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done"
	JobAborted   = "aborted"   // the failure threshold was crossed
	JobCancelled = "cancelled" // an operator cancelled it
)

// Job is an operator's job at the hub: one kind for a set of devices.
type Job struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Doc     string    `json:"doc,omitempty"`
	Group   string    `json:"group,omitempty"`
	Devices []string  `json:"devices"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Rollout: at most PerMinute offers a minute (0: no limit) and at
	// most InFlight devices offered but not finished at once (0: no
	// limit). AbortPercent > 0 stops the rollout once more than that
	// share of the finished executions failed or were rejected (after at
	// least MinFinished).
	PerMinute    int    `json:"per_minute,omitempty"`
	InFlight     int    `json:"in_flight,omitempty"`
	AbortPercent int    `json:"abort_percent,omitempty"`
	MinFinished  int    `json:"min_finished,omitempty"`
	State        string `json:"state"`
}

// Execution is one device's run of a job.
type Execution struct {
	JobID   string    `json:"job_id"`
	Device  string    `json:"device"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason,omitempty"`
	Result  string    `json:"result,omitempty"`
	Seq     int       `json:"seq"`
	Offers  int       `json:"offers"`
	Updated time.Time `json:"updated"`
	// Warnings are statuses that do not change the execution: the kiosk
	// refused a job it could not verify (someone else published on its
	// job topic), which says nothing about the hub's genuine job.
	Warnings []string `json:"warnings,omitempty"`
}

// ErrNotFound is returned for an unknown job or execution.
var ErrNotFound = errors.New("fleet: not found")

// Store holds jobs and their executions, shared by every hub instance.
type Store interface {
	CreateJob(ctx context.Context, j Job) error
	Job(ctx context.Context, id string) (Job, error)
	SetJobState(ctx context.Context, id, state string) error
	Jobs(ctx context.Context) ([]Job, error)
	Executions(ctx context.Context, jobID string) ([]Execution, error)
	// Offer marks an execution offered once more (from created, or a
	// re-offer of one not finished).
	Offer(ctx context.Context, jobID, device string, now time.Time) error
	// Report applies a verified status: a higher Seq wins, a terminal
	// status is final. It returns the execution after it, and whether the
	// status changed it (a late or repeated one, which another hub
	// instance may already have applied, does not).
	Report(ctx context.Context, st jobwire.Status, now time.Time) (Execution, bool, error)
	// Warn records a status that does not change the execution.
	Warn(ctx context.Context, jobID, device, warning string) error
	// Unfinished lists the device's executions already offered and not
	// finished, of running jobs that have not expired.
	Unfinished(ctx context.Context, device string, now time.Time) ([]Execution, error)
	// CancelCreated cancels the executions not offered yet.
	CancelCreated(ctx context.Context, jobID string, now time.Time) (int, error)
	// PruneJobs removes the jobs (and their executions) that expired
	// before before: retention. A job past its expiry can change no more.
	PruneJobs(ctx context.Context, before time.Time) (int64, error)
	// SetGroup stores a group's devices (replacing them); none removes
	// the group.
	SetGroup(ctx context.Context, name string, devices []string) error
	// Groups returns the stored groups.
	Groups(ctx context.Context) (map[string][]string, error)
}

// MemStore is a Store in memory: one hub instance, tests and demos.
type MemStore struct {
	mu     sync.Mutex
	jobs   map[string]*Job
	exec   map[string]map[string]*Execution // job → device
	groups map[string][]string
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{jobs: map[string]*Job{}, exec: map[string]map[string]*Execution{}, groups: map[string][]string{}}
}

var _ Store = (*MemStore)(nil)

func (m *MemStore) CreateJob(_ context.Context, j Job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[j.ID]; ok {
		return fmt.Errorf("fleet: job %q exists", j.ID)
	}
	j.Devices = slices.Clone(j.Devices)
	m.jobs[j.ID] = &j
	m.exec[j.ID] = map[string]*Execution{}
	for _, d := range j.Devices {
		m.exec[j.ID][d] = &Execution{JobID: j.ID, Device: d, Status: ExecCreated, Updated: j.Created}
	}
	return nil
}

func (m *MemStore) Job(_ context.Context, id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	return *j, nil
}

func (m *MemStore) SetJobState(_ context.Context, id, state string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	j.State = state
	return nil
}

func (m *MemStore) Jobs(context.Context) ([]Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Job
	for _, j := range m.jobs {
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b Job) int { return a.Created.Compare(b.Created) })
	return out, nil
}

func (m *MemStore) Executions(_ context.Context, jobID string) ([]Execution, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	es, ok := m.exec[jobID]
	if !ok {
		return nil, fmt.Errorf("%w: job %q", ErrNotFound, jobID)
	}
	var out []Execution
	for _, e := range es {
		c := *e
		c.Warnings = slices.Clone(e.Warnings)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Execution) int { return compareStrings(a.Device, b.Device) })
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *MemStore) get(jobID, device string) (*Execution, error) {
	e := m.exec[jobID][device]
	if e == nil {
		return nil, fmt.Errorf("%w: execution of job %q on %q", ErrNotFound, jobID, device)
	}
	return e, nil
}

func (m *MemStore) Offer(_ context.Context, jobID, device string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.get(jobID, device)
	if err != nil {
		return err
	}
	if jobwire.Terminal(e.Status) {
		return nil
	}
	if e.Status == ExecCreated {
		e.Status = ExecOffered
	}
	e.Offers++
	e.Updated = now
	return nil
}

func (m *MemStore) Report(_ context.Context, st jobwire.Status, now time.Time) (Execution, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.get(st.JobID, st.Device)
	if err != nil {
		return Execution{}, false, err
	}
	applied := Apply(e, st)
	if applied {
		e.Updated = now
	}
	return *e, applied, nil
}

// Apply is the one rule of status updates (shared by every store): a
// finished execution stays finished; otherwise a status with a higher
// sequence number, or a terminal one, replaces the current one.
func Apply(e *Execution, st jobwire.Status) bool {
	if jobwire.Terminal(e.Status) {
		return false
	}
	if st.Seq <= e.Seq && !jobwire.Terminal(st.Status) {
		return false
	}
	e.Status, e.Reason, e.Result, e.Seq = st.Status, st.Reason, st.Result, st.Seq
	return true
}

func (m *MemStore) Warn(_ context.Context, jobID, device, warning string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.get(jobID, device)
	if err != nil {
		return err
	}
	if len(e.Warnings) < 16 {
		e.Warnings = append(e.Warnings, warning)
	}
	return nil
}

func (m *MemStore) Unfinished(_ context.Context, device string, now time.Time) ([]Execution, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Execution
	for id, j := range m.jobs {
		if j.State != JobRunning && j.State != JobAborted || !now.Before(j.Expires) {
			continue
		}
		if e := m.exec[id][device]; e != nil && e.Status != ExecCreated && !jobwire.Terminal(e.Status) {
			out = append(out, *e)
		}
	}
	return out, nil
}

func (m *MemStore) CancelCreated(_ context.Context, jobID string, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	es, ok := m.exec[jobID]
	if !ok {
		return 0, fmt.Errorf("%w: job %q", ErrNotFound, jobID)
	}
	n := 0
	for _, e := range es {
		if e.Status == ExecCreated {
			e.Status, e.Reason, e.Updated = jobwire.StatusCanceled, "cancelled before it was offered", now
			n++
		}
	}
	return n, nil
}

func (m *MemStore) PruneJobs(_ context.Context, before time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, j := range m.jobs {
		if j.Expires.Before(before) {
			delete(m.jobs, id)
			delete(m.exec, id)
			n++
		}
	}
	return n, nil
}

func (m *MemStore) SetGroup(_ context.Context, name string, devices []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(devices) == 0 {
		delete(m.groups, name)
		return nil
	}
	m.groups[name] = slices.Clone(devices)
	return nil
}

func (m *MemStore) Groups(context.Context) (map[string][]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]string, len(m.groups))
	for k, v := range m.groups {
		out[k] = slices.Clone(v)
	}
	return out, nil
}
