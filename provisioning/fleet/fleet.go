// Package fleet is the hub's side of fleet jobs (docs/mqtt.md, "Jobs"): it
// stores jobs and their per-device executions, seals each device's job
// with the hub's operations key, rolls a job out over a group at a rate
// with an abort threshold, takes the kiosks' sealed statuses, and offers
// unfinished jobs again when a kiosk comes back online.
package fleet

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/hub"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txreport"
)

// Options configure a Service.
type Options struct {
	Brokers  []string
	ClientID string // default "fleet-" + random
	Prefix   string // default "kiosk/v1"
	// Group is the shared subscription group of statuses (instances
	// share them); presence is seen by every instance.
	Group    string
	Username string
	Password string
	TLS      *tls.Config
	// Operations seals jobs: the hub's operations key, never the
	// authorization key (kiosks name its certificate in
	// hub.operations_cert).
	Operations *txreport.Signer
	// Devices verifies the kiosks' statuses (the hub's device keyring).
	Devices *txreport.Keyring
	Store   Store
	// Groups resolves a group name to its devices.
	Groups func(ctx context.Context, group string) ([]string, error)
	// OnEvent is told of status changes (metrics, kioskctl fleet watch).
	// It must not block.
	OnEvent func(Event)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Event is one change seen by the service.
type Event struct {
	Kind      string    `json:"kind"` // presence, status, warning, job
	JobID     string    `json:"job_id"`
	Device    string    `json:"device,omitempty"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Time      time.Time `json:"time"`
	Execution Execution `json:"-"`
}

// Service is the hub's job service. Create with New, then Run.
type Service struct {
	o    Options
	log  *slog.Logger
	work chan mqtt.Message

	mu        sync.Mutex
	presence  map[string]hub.Presence // device → last presence seen
	reported  map[string]HealthReport // device → last health telemetry
	conn      mqtt.Client
	rollouts  chan string
	changed   map[string]chan struct{} // job → closed on its next status
	connected chan struct{}
	once      sync.Once
}

// New checks options.
func New(o Options) (*Service, error) {
	if len(o.Brokers) == 0 || o.Operations == nil || o.Devices == nil || o.Store == nil {
		return nil, errors.New("fleet: brokers, operations signer, device keyring and store are required")
	}
	if o.ClientID == "" {
		o.ClientID = "fleet-" + hub.NewID()[:8]
	}
	if o.Prefix == "" {
		o.Prefix = "kiosk/v1"
	}
	if o.Group == "" {
		o.Group = "fleet"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o, log: log, work: make(chan mqtt.Message, 4096), rollouts: make(chan string, 64),
		changed: map[string]chan struct{}{}, connected: make(chan struct{}), presence: map[string]hub.Presence{},
		reported: map[string]HealthReport{}}, nil
}

// Connected is closed once the service has subscribed.
func (s *Service) Connected() <-chan struct{} { return s.connected }

// Spec is what an operator asks for.
type Spec struct {
	ID           string // default: random
	Kind         string
	Doc          string
	Group        string   // or Devices
	Devices      []string // explicit targets
	TTL          time.Duration
	PerMinute    int
	InFlight     int
	AbortPercent int
	MinFinished  int
}

// MaxTargets bounds one job's devices.
const MaxTargets = 100000

// Create stores a job and starts its rollout.
func (s *Service) Create(ctx context.Context, sp Spec) (Job, error) {
	if sp.ID == "" {
		sp.ID = "job-" + hub.NewID()[:16]
	}
	if !slices.Contains(jobwire.Kinds, sp.Kind) {
		return Job{}, fmt.Errorf("fleet: unknown kind %q (one of %s)", sp.Kind, strings.Join(jobwire.Kinds, ", "))
	}
	if sp.Doc != "" && !json.Valid([]byte(sp.Doc)) {
		return Job{}, errors.New("fleet: the document is not JSON")
	}
	if sp.TTL <= 0 {
		sp.TTL = time.Hour
	}
	devices := slices.Clone(sp.Devices)
	if sp.Group != "" {
		if s.o.Groups == nil {
			return Job{}, errors.New("fleet: no groups known to this hub")
		}
		g, err := s.o.Groups(ctx, sp.Group)
		if err != nil {
			return Job{}, fmt.Errorf("fleet: group %q: %w", sp.Group, err)
		}
		devices = append(devices, g...)
	}
	slices.Sort(devices)
	devices = slices.Compact(devices)
	if len(devices) == 0 || len(devices) > MaxTargets {
		return Job{}, fmt.Errorf("fleet: %d target devices (1..%d)", len(devices), MaxTargets)
	}
	now := s.o.Now().UTC()
	j := Job{ID: sp.ID, Kind: sp.Kind, Doc: sp.Doc, Group: sp.Group, Devices: devices, Created: now, Expires: now.Add(sp.TTL),
		PerMinute: sp.PerMinute, InFlight: sp.InFlight, AbortPercent: sp.AbortPercent, MinFinished: max(sp.MinFinished, 1), State: JobRunning}
	// Check the wire form once before storing: a job no kiosk could open
	// must not sit in the store.
	probe := jobwire.Job{V: jobwire.Version, ID: j.ID, Device: devices[0], Group: j.Group, Kind: j.Kind, Doc: j.Doc, Created: j.Created, Expires: j.Expires}
	if err := probe.Check(); err != nil {
		return Job{}, err
	}
	if err := s.o.Store.CreateJob(ctx, j); err != nil {
		return Job{}, err
	}
	s.event(Event{Kind: "job", JobID: j.ID, Status: "created", Reason: fmt.Sprintf("%s for %d device(s)", j.Kind, len(j.Devices)), Time: now})
	select {
	case s.rollouts <- j.ID:
	case <-ctx.Done():
		return j, ctx.Err()
	}
	return j, nil
}

// Cancel stops a job: devices not offered yet are cancelled; executions
// under way finish (a kiosk cannot be told to stop mid-action).
func (s *Service) Cancel(ctx context.Context, id string) (int, error) {
	if err := s.o.Store.SetJobState(ctx, id, JobCancelled); err != nil {
		return 0, err
	}
	n, err := s.o.Store.CancelCreated(ctx, id, s.o.Now())
	s.notify(id)
	return n, err
}

// Device is a kiosk as the service sees it.
type Device struct {
	ID      string    `json:"id"`
	Online  bool      `json:"online"`
	Session uint64    `json:"session"`
	Since   time.Time `json:"since,omitzero"`
	// Reported is the kiosk's last health telemetry; nil before the
	// first.
	Reported *HealthReport `json:"reported,omitempty"`
}

// HealthReport is what a kiosk's health telemetry (<p>/<d>/telemetry/health,
// docs/mqtt.md "Health object") says about it. Telemetry is not sealed:
// this is for operators' overview, never for a decision.
type HealthReport struct {
	Time          time.Time `json:"time"` // when the hub received it
	Status        string    `json:"status"`
	Firmware      string    `json:"firmware"`
	TrustBundle   int       `json:"trust_bundle"`
	ConfigVersion int       `json:"config_version"`
	ConfigHash    string    `json:"config_hash,omitempty"`
	OutboxDepth   int       `json:"outbox_depth"`
	CertNotAfter  time.Time `json:"cert_not_after,omitzero"`
	// Service is the session component's detail ("out of service: …").
	Service string `json:"service,omitempty"`
}

// healthDoc is the part of the kiosk's health object the hub reads.
type healthDoc struct {
	Status     string `json:"status"`
	Version    string `json:"version"`
	Components struct {
		EID struct {
			Info struct {
				Bundle int `json:"bundle"`
			} `json:"info"`
		} `json:"eid"`
		Config struct {
			Info struct {
				Version int    `json:"version"`
				Hash    string `json:"hash"`
			} `json:"info"`
		} `json:"config"`
		Transactions struct {
			Info struct {
				Outbox struct {
					Depth int `json:"depth"`
				} `json:"outbox"`
			} `json:"info"`
		} `json:"transactions"`
		Certificate struct {
			Info struct {
				NotAfter time.Time `json:"not_after"`
			} `json:"info"`
		} `json:"certificate"`
		Session struct {
			Detail string `json:"detail"`
		} `json:"session"`
	} `json:"components"`
}

// maxHealth bounds a telemetry message read.
const maxHealth = 64 << 10

func parseHealth(b []byte, now time.Time) (HealthReport, bool) {
	var h healthDoc
	if len(b) > maxHealth || json.Unmarshal(b, &h) != nil || h.Status == "" {
		return HealthReport{}, false
	}
	c := h.Components
	r := HealthReport{Time: now.UTC(), Status: h.Status, Firmware: h.Version, TrustBundle: c.EID.Info.Bundle,
		ConfigVersion: c.Config.Info.Version, ConfigHash: c.Config.Info.Hash, OutboxDepth: c.Transactions.Info.Outbox.Depth,
		CertNotAfter: c.Certificate.Info.NotAfter}
	if d, ok := strings.CutPrefix(c.Session.Detail, "out of service: "); ok {
		r.Service = d
	}
	return r, true
}

// Devices lists the kiosks whose presence or telemetry the service has
// seen.
func (s *Service) Devices() []Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Device, 0, len(s.presence))
	for id, p := range s.presence {
		d := Device{ID: id, Online: p.State == "online", Session: p.Session, Since: p.Time}
		if r, ok := s.reported[id]; ok {
			d.Reported = &r
		}
		out = append(out, d)
	}
	for id, r := range s.reported {
		if _, ok := s.presence[id]; !ok {
			out = append(out, Device{ID: id, Reported: &r})
		}
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Jobs lists every job, oldest first.
func (s *Service) Jobs(ctx context.Context) ([]Job, error) { return s.o.Store.Jobs(ctx) }

// Summary counts a job's executions by status.
type Summary struct {
	Job    Job            `json:"job"`
	Counts map[string]int `json:"counts"`
	Done   bool           `json:"done"` // every execution finished
}

// Status summarises a job.
func (s *Service) Status(ctx context.Context, id string) (Summary, []Execution, error) {
	j, err := s.o.Store.Job(ctx, id)
	if err != nil {
		return Summary{}, nil, err
	}
	es, err := s.o.Store.Executions(ctx, id)
	if err != nil {
		return Summary{}, nil, err
	}
	sum := Summary{Job: j, Counts: map[string]int{}, Done: true}
	for _, e := range es {
		sum.Counts[e.Status]++
		sum.Done = sum.Done && jobwire.Terminal(e.Status)
	}
	return sum, es, nil
}

// PruneJobs removes jobs that expired before before (retention).
func (s *Service) PruneJobs(ctx context.Context, before time.Time) (int64, error) {
	return s.o.Store.PruneJobs(ctx, before)
}

// MaxGroup bounds a stored group's devices.
const MaxGroup = 10000

// SetGroup stores a group at the hub (shared by the instances): its
// devices replace the group's; none removes it. A stored group wins over
// a static one of the same name.
func (s *Service) SetGroup(ctx context.Context, name string, devices []string) error {
	if !jobwire.ValidDevice(name) {
		return fmt.Errorf("fleet: group name %q", name)
	}
	devices = slices.Clone(devices)
	slices.Sort(devices)
	devices = slices.Compact(devices)
	if len(devices) > MaxGroup {
		return fmt.Errorf("fleet: %d devices in a group (max %d)", len(devices), MaxGroup)
	}
	for _, d := range devices {
		if !jobwire.ValidDevice(d) {
			return fmt.Errorf("fleet: device %q", d)
		}
	}
	return s.o.Store.SetGroup(ctx, name, devices)
}

// StoredGroups returns the groups stored at the hub.
func (s *Service) StoredGroups(ctx context.Context) (map[string][]string, error) {
	return s.o.Store.Groups(ctx)
}

// RotationAllowed is nil when jobID is a running, unexpired
// rotate_certificate job whose execution on device is offered and not
// finished: the operator's signed request that lets the registrar renew
// that kiosk's certificate before its renewal window.
func (s *Service) RotationAllowed(ctx context.Context, device, jobID string) error {
	j, err := s.o.Store.Job(ctx, jobID)
	switch {
	case err != nil:
		return fmt.Errorf("job %q: %w", jobID, err)
	case j.Kind != jobwire.KindRotateCert:
		return fmt.Errorf("job %q is a %s job", jobID, j.Kind)
	case j.State != JobRunning || !s.o.Now().Before(j.Expires):
		return fmt.Errorf("job %q is %s (expires %s)", jobID, j.State, j.Expires.Format(time.RFC3339))
	}
	es, err := s.o.Store.Executions(ctx, jobID)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Device == device {
			if e.Status == ExecCreated || jobwire.Terminal(e.Status) {
				return fmt.Errorf("job %q is %s on %s", jobID, e.Status, device)
			}
			return nil
		}
	}
	return fmt.Errorf("job %q is not for %s", jobID, device)
}

// Changed returns a channel closed at the job's next status change.
func (s *Service) Changed(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.changed[id]
	if !ok {
		ch = make(chan struct{})
		s.changed[id] = ch
	}
	return ch
}

func (s *Service) notify(id string) {
	s.mu.Lock()
	if ch, ok := s.changed[id]; ok {
		close(ch)
		delete(s.changed, id)
	}
	s.mu.Unlock()
}

// Wait blocks until the job's executions have all finished or ctx ends.
func (s *Service) Wait(ctx context.Context, id string) (Summary, error) {
	for {
		ch := s.Changed(id)
		sum, _, err := s.Status(ctx, id)
		if err != nil || sum.Done {
			return sum, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return sum, ctx.Err()
		}
	}
}

func (s *Service) statusFilter() string {
	return "$share/" + s.o.Group + "/" + s.o.Prefix + "/+/" + jobwire.TopicStatus
}

func (s *Service) presenceFilter() string { return s.o.Prefix + "/+/presence" }

// topicHealth is the kiosks' health telemetry below <p>/<d>/.
const topicHealth = "telemetry/health"

func (s *Service) healthFilter() string { return s.o.Prefix + "/+/" + topicHealth }

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	o := mqtt.NewClientOptions()
	for _, b := range s.o.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(s.o.ClientID)
	o.SetUsername(s.o.Username)
	o.SetPassword(s.o.Password)
	if s.o.TLS != nil {
		o.SetTLSConfig(s.o.TLS)
	}
	o.SetProtocolVersion(4)
	o.SetCleanSession(true) // kiosks resend statuses of jobs offered again
	o.SetAutoReconnect(true)
	o.SetConnectRetry(true)
	o.SetConnectRetryInterval(500 * time.Millisecond)
	o.SetMaxReconnectInterval(5 * time.Second)
	o.SetConnectTimeout(5 * time.Second)
	o.SetWriteTimeout(5 * time.Second)
	o.SetKeepAlive(10 * time.Second)
	o.SetOrderMatters(false)
	o.SetDefaultPublishHandler(s.enqueue)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		for _, f := range []string{s.statusFilter(), s.presenceFilter(), s.healthFilter()} {
			tok := c.Subscribe(f, 1, s.enqueue)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				s.log.Error("fleet: subscribe failed", "filter", f, "err", tok.Error())
				return
			}
		}
		s.once.Do(func() { close(s.connected) })
	})
	conn := mqtt.NewClient(o)
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	conn.Connect()
	defer conn.Disconnect(250)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-s.work:
				s.handle(ctx, m.Topic(), m.Payload())
			}
		}
	})
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-s.rollouts:
			wg.Go(func() { s.rollout(ctx, id) })
		}
	}
}

// enqueue runs on paho's router: never block there. Health telemetry is
// taken at once (a parse and a map write), so a fleet's telemetry never
// crowds job statuses out of the work queue.
func (s *Service) enqueue(_ mqtt.Client, m mqtt.Message) {
	if device, ok := s.healthDevice(m.Topic()); ok {
		s.onHealth(device, m.Payload())
		return
	}
	select {
	case s.work <- m:
	default:
		s.log.Warn("fleet: work queue full, message dropped", "topic", m.Topic())
	}
}

func (s *Service) healthDevice(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, s.o.Prefix+"/")
	if !ok {
		return "", false
	}
	device, sub, ok := strings.Cut(rest, "/")
	return device, ok && sub == topicHealth && device != ""
}

func (s *Service) onHealth(device string, payload []byte) {
	r, ok := parseHealth(payload, s.o.Now())
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Bounded like a job's targets: a flood of made-up device ids cannot
	// grow the map without end.
	if _, known := s.reported[device]; known || len(s.reported) < MaxTargets {
		s.reported[device] = r
	}
}

func (s *Service) handle(ctx context.Context, topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, s.o.Prefix+"/")
	if !ok {
		return
	}
	device, sub, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	switch sub {
	case "presence":
		var p hub.Presence
		if json.Unmarshal(payload, &p) != nil || (p.State != "online" && p.State != "offline") {
			return
		}
		s.mu.Lock()
		old, seen := s.presence[device]
		// A will of an older session arriving after a newer "online" is
		// stale (the session counter, cf. Sparkplug bdSeq).
		stale := seen && p.Session < old.Session
		if !stale {
			s.presence[device] = p
		}
		s.mu.Unlock()
		if stale {
			return
		}
		s.event(Event{Kind: "presence", Device: device, Status: p.State, Time: s.o.Now()})
		if p.State == "online" {
			s.reoffer(ctx, device)
		}
	case jobwire.TopicStatus:
		s.onStatus(ctx, device, payload)
	}
}

// forgedReasons are rejections that say the kiosk received something the
// hub did not send correctly sealed for it: they leave the hub's genuine
// execution as it is (recorded as warnings), or anyone able to publish on
// a kiosk's job topic could cancel the operator's jobs.
var forgedReasons = []string{jobwire.ReasonBadSignature, jobwire.ReasonMalformed, jobwire.ReasonWrongTarget, jobwire.ReasonReplayed}

func (s *Service) onStatus(ctx context.Context, device string, payload []byte) {
	st, err := jobwire.OpenStatus(s.o.Devices, device, payload)
	if err != nil {
		s.log.Warn("fleet: job status refused", "device", device, "err", err)
		return
	}
	code, _, _ := strings.Cut(st.Reason, ":")
	if st.Status == jobwire.StatusRejected && slices.Contains(forgedReasons, code) {
		if err := s.o.Store.Warn(ctx, st.JobID, device, st.Reason); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("fleet: warning not stored", "err", err)
		}
		s.event(Event{Kind: "warning", JobID: st.JobID, Device: device, Status: st.Status, Reason: st.Reason, Time: s.o.Now()})
		return
	}
	e, applied, err := s.o.Store.Report(ctx, st, s.o.Now())
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.Warn("fleet: status not stored", "device", device, "job", st.JobID, "err", err)
		}
		return
	}
	if !applied {
		// A late or repeated status (redelivered, or taken by two
		// instances) changed nothing: no event, so watchers and the job
		// outcome metrics see each change once.
		return
	}
	s.event(Event{Kind: "status", JobID: st.JobID, Device: device, Status: e.Status, Reason: e.Reason, Time: s.o.Now(), Execution: e})
	if sum, _, err := s.Status(ctx, st.JobID); err == nil && sum.Done && sum.Job.State == JobRunning {
		if s.o.Store.SetJobState(ctx, st.JobID, JobDone) == nil {
			s.event(Event{Kind: "job", JobID: st.JobID, Status: JobDone, Time: s.o.Now()})
		}
	}
	s.notify(st.JobID)
}

func (s *Service) event(e Event) {
	if s.o.OnEvent != nil {
		s.o.OnEvent(e)
	}
}

// offer seals the job for one device and publishes it (QoS 1; the
// kiosk's persistent session keeps it while the kiosk is away).
func (s *Service) offer(ctx context.Context, j Job, device string) error {
	b, err := jobwire.Seal(s.o.Operations, jobwire.Job{V: jobwire.Version, ID: j.ID, Device: device, Group: j.Group,
		Kind: j.Kind, Doc: j.Doc, Created: j.Created, Expires: j.Expires})
	if err != nil {
		return err
	}
	if err := s.o.Store.Offer(ctx, j.ID, device, s.o.Now()); err != nil {
		return err
	}
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	tok := conn.Publish(s.o.Prefix+"/"+device+"/"+jobwire.TopicJob, 1, false, b)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return errors.New("fleet: broker did not take the job within 10 s")
	}
}

// reoffer publishes again the device's unfinished jobs (it came online).
func (s *Service) reoffer(ctx context.Context, device string) {
	es, err := s.o.Store.Unfinished(ctx, device, s.o.Now())
	if err != nil {
		s.log.Warn("fleet: unfinished jobs not read", "device", device, "err", err)
		return
	}
	for _, e := range es {
		j, err := s.o.Store.Job(ctx, e.JobID)
		if err != nil {
			continue
		}
		if err := s.offer(ctx, j, device); err != nil {
			s.log.Warn("fleet: job not offered again", "device", device, "job", j.ID, "err", err)
		}
	}
}

// rollout offers a job to its devices at the job's pace and stops at the
// abort threshold or on cancellation.
func (s *Service) rollout(ctx context.Context, id string) {
	j, err := s.o.Store.Job(ctx, id)
	if err != nil {
		s.log.Error("fleet: rollout", "job", id, "err", err)
		return
	}
	var gap time.Duration
	if j.PerMinute > 0 {
		gap = time.Minute / time.Duration(j.PerMinute)
	}
	for i, device := range j.Devices {
		for {
			ch := s.Changed(id)
			cur, es, err := s.Status(ctx, id)
			if err != nil {
				s.log.Error("fleet: rollout", "job", id, "err", err)
				return
			}
			if cur.Job.State != JobRunning {
				return
			}
			if s.crossed(cur.Job, es) {
				n, _ := s.o.Store.CancelCreated(ctx, id, s.o.Now())
				_ = s.o.Store.SetJobState(ctx, id, JobAborted)
				s.log.Warn("fleet: rollout aborted at the failure threshold", "job", id, "abort_percent", j.AbortPercent, "not_offered", n)
				s.event(Event{Kind: "job", JobID: id, Status: JobAborted, Time: s.o.Now()})
				s.notify(id)
				return
			}
			if j.InFlight <= 0 || inFlight(es) < j.InFlight {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			case <-time.After(time.Until(j.Expires)):
				return
			}
		}
		if err := s.offer(ctx, j, device); err != nil {
			s.log.Warn("fleet: job not offered", "job", id, "device", device, "err", err)
		}
		if gap > 0 && i < len(j.Devices)-1 {
			select {
			case <-time.After(gap):
			case <-ctx.Done():
				return
			}
		}
	}
}

func inFlight(es []Execution) int {
	n := 0
	for _, e := range es {
		if e.Status != ExecCreated && !jobwire.Terminal(e.Status) {
			n++
		}
	}
	return n
}

// crossed: more than AbortPercent of the finished executions failed or
// were rejected, with at least MinFinished finished.
func (s *Service) crossed(j Job, es []Execution) bool {
	if j.AbortPercent <= 0 {
		return false
	}
	finished, bad := 0, 0
	for _, e := range es {
		switch e.Status {
		case jobwire.StatusSucceeded:
			finished++
		case jobwire.StatusFailed, jobwire.StatusRejected:
			finished++
			bad++
		}
	}
	return finished >= j.MinFinished && bad*100 > j.AbortPercent*finished
}
