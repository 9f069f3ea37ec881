// Package session is the one state machine that owns a kiosk transaction:
// idle → request → insert card → CAN/PIN → read and verify the chip → face
// match → smile to confirm → authorize → result → remove card → idle.
//
// It talks to the chip, the face pipeline and the hub only through small
// interfaces, so the same machine runs against the real stack and against
// fakes in tests. Every transition is published (the screen, the lights and
// the hub follow the same stream). Only one session runs at a time.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
)

// State is a step of the session. Its value is the event kind suffix
// ("session.insert_card") and the screen's name for the step.
type State string

// States, in order.
const (
	Idle          State = "idle"
	AwaitCard     State = "insert_card"
	AwaitPassword State = "enter_password"
	ReadingChip   State = "reading_chip"
	FaceMatch     State = "face_match"
	Smile         State = "smile"
	Authorizing   State = "authorizing"
	Result        State = "result"
	RemoveCard    State = "remove_card"
)

// Request is what the till (or a branch service) asks for.
type Request struct {
	ID          string    `json:"id"`   // assigned by the kiosk
	Kind        string    `json:"kind"` // "payment" or "service"
	AmountMinor int64     `json:"amount_minor,omitempty"`
	Currency    string    `json:"currency,omitempty"`
	MerchantRef string    `json:"merchant_ref,omitempty"`
	Service     string    `json:"service,omitempty"`
	Created     time.Time `json:"created"`
}

// Chip reads and verifies the inserted identity document with the
// holder's password (CAN, PIN or MRZ for an eMRTD, the PIN for a bank
// eID): the driver is the card's (package document).
type Chip interface {
	Read(ctx context.Context, pw emrtd.Password) (document.Document, error)
}

// FaceReferences supplies the enrolled face reference of a document that
// carries none (a bank eID): the bank holds it. The answer is in memory
// only; the session wipes it after the match. ErrNoFaceReference (wrapped)
// means the bank has none for this holder.
type FaceReferences interface {
	FaceReference(ctx context.Context, holder document.Holder) ([]byte, error)
}

// ErrNoFaceReference: the bank holds no face reference for the holder.
var ErrNoFaceReference = errors.New("session: no enrolled face reference")

// FaceProgress is guidance while the face step runs.
type FaceProgress struct {
	Stage    string `json:"stage"`              // "match" or "smile"
	Guidance string `json:"guidance,omitempty"` // e.g. "come_closer", "hold_still"
	// Until is when the step ends unless the shopper takes more time:
	// the verifier reports its phase's end (the camera's clock, which is
	// the wall clock on a live camera); the session publishes the earlier
	// of that and policy.face_timeout's end.
	Until time.Time `json:"until,omitzero"`
}

// FaceResult is the outcome of the face step: match, liveness, consent.
type FaceResult struct {
	Matched           bool              `json:"matched"`
	Similarity        float64           `json:"similarity"`
	MatchThreshold    float64           `json:"match_threshold"`
	Live              bool              `json:"live"`
	Liveness          float64           `json:"liveness"`
	LivenessThreshold float64           `json:"liveness_threshold"`
	Consent           bool              `json:"consent"`
	ConsentAt         time.Time         `json:"consent_at,omitzero"`
	Reason            string            `json:"reason,omitempty"` // why not matched/live/consented
	Models            map[string]string `json:"models,omitempty"` // file → sha256
	Quality           *FaceQuality      `json:"quality,omitempty"`
}

// FaceQuality summarises the camera frames of a face step: counts only,
// nothing of the face itself.
type FaceQuality struct {
	Frames   int            `json:"frames"`             // frames examined
	Good     int            `json:"good"`               // frames that passed every quality gate
	NoFace   int            `json:"no_face"`            // frames without the tracked face
	Rejected map[string]int `json:"rejected,omitempty"` // failed gate (guidance code) → frames
}

// Face runs the face step against the chip photo (reference is wiped by
// the caller after the step).
type Face interface {
	Verify(ctx context.Context, reference []byte, progress func(FaceProgress)) (FaceResult, error)
}

// Authorization is the hub's (or the offline rules') answer.
type Authorization struct {
	Approved bool   `json:"approved"`
	Online   bool   `json:"online"`
	Reason   string `json:"reason,omitempty"`
	Ref      string `json:"ref,omitempty"` // the hub's authorization reference (online)
}

// Authorizer authorizes a verified request and commits the outcome durably.
type Authorizer interface {
	Authorize(ctx context.Context, req Request) (Authorization, error)
	// Commit stores the record durably (fsync) before the result is shown.
	Commit(ctx context.Context, rec Record) error
}

// Reason is one machine-readable decline reason with its shopper message key.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Record is the evidence of one finished session. It carries no images,
// templates, PINs or CANs.
type Record struct {
	Request  Request      `json:"request"`
	Approved bool         `json:"approved"`
	Reasons  []Reason     `json:"reasons,omitempty"`
	Chip     *ChipSummary `json:"chip,omitempty"`
	Face     *FaceResult  `json:"face,omitempty"`
	// HolderSignature is the holder's own signature over the transaction
	// challenge (bank eID), beside the device's signature on the report.
	HolderSignature *bankeid.Evidence  `json:"holder_signature,omitempty"`
	Auth            *Authorization     `json:"authorization,omitempty"`
	Started         time.Time          `json:"started"`
	Finished        time.Time          `json:"finished"`
	PhasesMS        map[string]float64 `json:"ms"`
	DocNumber       string             `json:"-"` // for the salted hash only; never serialised
}

// ChipSummary is the part of the eID report that goes into the record.
type ChipSummary struct {
	// Document is the driver: "emrtd" or "bankeid".
	Document string           `json:"document,omitempty"`
	Passed   bool             `json:"passed"`
	DocType  string           `json:"doc_type"`
	Issuer   string           `json:"issuer"`
	Expiry   string           `json:"expiry"`
	Protocol string           `json:"protocol"`
	Checks   []emrtd.Check    `json:"checks"`
	Access   emrtd.AccessInfo `json:"access"`
}

// Errors returned to the callers of Start, Cancel, EnterPassword.
var (
	ErrBusy       = errors.New("session: another transaction is in progress")
	ErrNoSession  = errors.New("session: no transaction in progress")
	ErrWrongState = errors.New("session: not expected in this step")
	ErrInvalid    = errors.New("session: invalid request")
	ErrNotRunning = errors.New("session: machine not running")
)

// Options configure a Machine.
type Options struct {
	Chip Chip
	Face Face
	// FaceReferences, when set, gives the face reference of documents
	// that carry none; nil: such documents are declined
	// (no_face_reference).
	FaceReferences FaceReferences
	// Probe, when set, tells the kind of the card just inserted (before
	// the password step), for the pad; nil: the pad does not know.
	Probe      func(ctx context.Context) (document.Kind, error)
	Authorizer Authorizer
	Policy     Policy
	// Publish receives every transition and progress update (must not block).
	Publish func(kind string, data any)
	Logger  *slog.Logger
	Now     func() time.Time
	// NewID makes transaction ids; nil uses a random 128-bit hex id.
	NewID func() string
	// Ready, when set, is asked before a session starts: a non-empty
	// answer (a reason code such as "camera_down") refuses the session
	// with ErrOutOfService, so the till hears at once what the screen
	// shows rather than a shopper finding out at the camera.
	Ready func() string
}

// Status is what the screen and the ECR API see.
type Status struct {
	State    State         `json:"state"`
	Request  *Request      `json:"request,omitempty"`
	Progress *FaceProgress `json:"progress,omitempty"`
	// Attempts left for the password, when the chip reported a counter.
	PINRetriesLeft *int `json:"pin_retries_left,omitempty"`
	// NeedsMRZ: the chip offers BAC only, so the pad asks for the MRZ.
	NeedsMRZ bool `json:"needs_mrz,omitempty"`
	// Document is the kind of the card in the reader once probed
	// ("emrtd", "bankeid"): the pad asks a bank eID's holder for its PIN.
	Document string `json:"document,omitempty"`
	// MoreTime is the standing offer of more time in this step, if any.
	MoreTime *TimeOffer `json:"more_time,omitempty"`
	Outcome  *Outcome   `json:"outcome,omitempty"`
	Since    time.Time  `json:"since"`
}

// Outcome is the end of a session as the screen and the till see it.
type Outcome struct {
	Approved bool     `json:"approved"`
	Reasons  []Reason `json:"reasons,omitempty"`
	// Final is false while the card is still in the reader.
	Finished time.Time `json:"finished"`
}

// Machine is the session state machine. Create with New, run with Run.
type Machine struct {
	opts Options
	log  *slog.Logger
	// policy is the current policy (Options.Policy until SetPolicy).
	policy atomic.Pointer[Policy]

	start    chan Request
	cancel   chan string
	extend   chan struct{} // the shopper took the offer of more time
	password chan emrtd.Password
	card     chan bool // true inserted, false removed

	mu      sync.Mutex
	running bool
	status  Status
	present bool
	history *history
	// faceEnd is when policy.face_timeout ends the running face step
	// (zero outside it): the screen's countdown is the earlier of it and
	// the verifier's end (facetime.go).
	faceEnd time.Time
	// outOfService is why the kiosk refuses new sessions ("" = in service);
	// see service.go.
	outOfService string
}

// New returns a machine; call Run to start it.
func New(opts Options) *Machine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = randomID
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Policy = opts.Policy.withDefaults()
	m := &Machine{
		opts: opts, log: log,
		start:    make(chan Request),
		cancel:   make(chan string, 1),
		extend:   make(chan struct{}, 1),
		password: make(chan emrtd.Password, 1),
		card:     make(chan bool, 8),
		status:   Status{State: Idle, Since: opts.Now()},
		history:  newHistory(256),
	}
	p := opts.Policy
	m.policy.Store(&p)
	return m
}

// Policy returns the policy the next session will use.
func (m *Machine) Policy() Policy { return *m.policy.Load() }

// SetPolicy replaces the policy from the next session on (an operator's
// configuration change); a session under way keeps the one it began with.
// Unset durations take their defaults.
func (m *Machine) SetPolicy(p Policy) {
	p = p.withDefaults()
	m.policy.Store(&p)
}

// Status returns the current step.
func (m *Machine) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Lookup returns a recent session by transaction id or merchant reference.
func (m *Machine) Lookup(id string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status.Request != nil && (m.status.Request.ID == id || m.status.Request.MerchantRef == id) {
		return m.status, true
	}
	return m.history.get(id)
}

// Start begins a transaction. A request whose merchant reference matches
// the running or a recent session returns that session (idempotency);
// anything else while a session runs is ErrBusy.
func (m *Machine) Start(ctx context.Context, req Request) (Request, error) {
	if err := validate(req); err != nil {
		return Request{}, err
	}
	m.mu.Lock()
	if req.MerchantRef != "" {
		if cur := m.status.Request; cur != nil && cur.MerchantRef == req.MerchantRef {
			r := *cur
			m.mu.Unlock()
			return r, nil
		}
		if st, ok := m.history.get(req.MerchantRef); ok {
			m.mu.Unlock()
			return *st.Request, nil
		}
	}
	running := m.running
	busy := m.status.State != Idle
	oos := m.outOfService
	m.mu.Unlock()
	if !running {
		return Request{}, ErrNotRunning
	}
	if oos != "" {
		return Request{}, fmt.Errorf("%w (%s)", ErrOutOfService, oos)
	}
	if busy {
		return Request{}, ErrBusy
	}
	if m.opts.Ready != nil {
		if why := m.opts.Ready(); why != "" {
			return Request{}, fmt.Errorf("%w (%s)", ErrOutOfService, why)
		}
	}
	req.ID = m.opts.NewID()
	req.Created = m.opts.Now()
	select {
	case m.start <- req:
		return req, nil
	case <-ctx.Done():
		return Request{}, ctx.Err()
	case <-time.After(2 * time.Second):
		return Request{}, ErrBusy
	}
}

func validate(req Request) error {
	switch req.Kind {
	case "payment":
		if req.AmountMinor <= 0 || req.AmountMinor > 1e12 {
			return fmt.Errorf("%w: amount must be positive minor units", ErrInvalid)
		}
		if len(req.Currency) != 3 {
			return fmt.Errorf("%w: currency must be an ISO 4217 code", ErrInvalid)
		}
	case "service":
		if req.Service == "" {
			return fmt.Errorf("%w: service name required", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: kind must be payment or service", ErrInvalid)
	}
	if len(req.MerchantRef) > 64 {
		return fmt.Errorf("%w: merchant reference longer than 64", ErrInvalid)
	}
	return nil
}

// Cancel aborts the running session (from the till or the screen). id may
// be the transaction id, the merchant reference or "" for whatever runs.
func (m *Machine) Cancel(id, reason string) error {
	m.mu.Lock()
	cur := m.status.Request
	st := m.status.State
	m.mu.Unlock()
	if cur == nil || st == Idle || st == Result || st == RemoveCard {
		return ErrNoSession
	}
	if id != "" && id != cur.ID && id != cur.MerchantRef {
		return ErrNoSession
	}
	select {
	case m.cancel <- reason:
	default: // a cancel is already pending
	}
	return nil
}

// EnterPassword hands the CAN or PIN typed on the screen to the session;
// the digits go only to the card.
func (m *Machine) EnterPassword(pw emrtd.Password) error {
	if m.Status().State != AwaitPassword {
		return ErrWrongState
	}
	select {
	case m.password <- pw:
		return nil
	default:
		return ErrWrongState
	}
}

// CardPresent feeds card insert/remove events from the reader driver.
func (m *Machine) CardPresent(present bool) {
	m.mu.Lock()
	m.present = present
	m.mu.Unlock()
	select {
	case m.card <- present:
	default:
		// The machine re-reads m.present, so a dropped event loses nothing.
	}
}

func (m *Machine) cardIn() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.present
}

func (m *Machine) set(s State, f func(*Status)) {
	m.mu.Lock()
	m.status.State = s
	m.status.Since = m.opts.Now()
	m.status.Progress = nil
	if f != nil {
		f(&m.status)
	}
	st := m.status
	m.mu.Unlock()
	m.log.Info("session", "state", string(s), "tx", txID(st.Request))
	m.publish("session."+string(s), st)
}

func (m *Machine) publish(kind string, data any) {
	if m.opts.Publish != nil {
		m.opts.Publish(kind, data)
	}
}

func txID(r *Request) string {
	if r == nil {
		return ""
	}
	return r.ID
}
