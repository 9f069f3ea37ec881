// Package jobwire is the wire format of fleet jobs, shared by the kiosk
// (firmware/jobs) and the hub (provisioning/fleet): what a job says, how it
// is sealed and opened, and the statuses a kiosk reports (docs/mqtt.md,
// "Jobs"). The conventions follow AWS IoT Jobs: one execution per device,
// statuses queued → in_progress → succeeded | failed | rejected.
//
// A job travels sealed (txreport.Sealed: canonical JSON body, ES256
// signature, certificate fingerprint) by the hub's operations key, which is
// distinct from the authorization key that seals payment answers: a leaked
// operations key cannot approve payments and the other way round. Every job
// is sealed for exactly one device, so a sealed job cannot be replayed at
// another kiosk of the same group. Statuses travel sealed by the device key.
package jobwire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"kiosk/firmware/txreport"
)

// Topics below <prefix>/<device>/.
const (
	TopicJob    = "jobs/notify" // hub → kiosk: Job sealed by the operations key, QoS 1
	TopicStatus = "jobs/status" // kiosk → hub: Status sealed by the device key, QoS 1
)

// Version is the wire version of Job and Status.
const Version = 1

// Job kinds.
const (
	KindPing           = "ping"
	KindHealth         = "health"
	KindReboot         = "reboot"
	KindServiceOn      = "service_on"
	KindServiceOff     = "service_off"
	KindMaintenanceOn  = "maintenance_on"
	KindMaintenanceOff = "maintenance_off"
	KindCollectLogs    = "collect_logs"
	KindRotateCert     = "rotate_certificate"
	KindTrustBundle    = "update_trust_bundle"
	KindReloadTrust    = "reload_trust"
	KindSetConfig      = "set_configuration"
	KindUpdateFirmware = "update_firmware"
)

// Kinds lists every kind a hub may create.
var Kinds = []string{KindPing, KindHealth, KindReboot, KindServiceOn, KindServiceOff, KindMaintenanceOn,
	KindMaintenanceOff, KindCollectLogs, KindRotateCert, KindTrustBundle, KindReloadTrust, KindSetConfig, KindUpdateFirmware}

// Execution statuses (AWS IoT Jobs names, lower case).
const (
	StatusQueued     = "queued"
	StatusInProgress = "in_progress"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
	StatusRejected   = "rejected"
	// StatusCanceled is set by the hub only (an operator cancelled a job
	// the kiosk had not started); kiosks never report it.
	StatusCanceled = "canceled"
)

// Terminal reports whether s ends an execution.
func Terminal(s string) bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusRejected || s == StatusCanceled
}

// Rejection reasons: machine codes in Status.Reason (the detail follows
// after ": ").
const (
	ReasonMalformed     = "malformed"
	ReasonBadSignature  = "bad_signature"
	ReasonWrongTarget   = "wrong_target"
	ReasonExpired       = "expired"
	ReasonNotYetValid   = "not_yet_valid"
	ReasonReplayed      = "replayed"
	ReasonUnsupported   = "unsupported"
	ReasonBadDocument   = "bad_document"
	ReasonRecordFull    = "record_full"
	ReasonStateUnusable = "state_unusable"
	ReasonBusy          = "busy"
	ReasonInterrupted   = "interrupted"
	// Firmware updates (docs/mqtt.md, "Firmware update").
	ReasonDowngrade    = "downgrade"    // bundle not newer than the running firmware
	ReasonIncompatible = "incompatible" // bundle for another system
	ReasonRolledBack   = "rolled_back"  // the new slot failed; the old one runs again
	// ReasonBundleSignature: the firmware bundle's signature was refused
	// (not bad_signature, which the hub reads as a forged job).
	ReasonBundleSignature = "bundle_signature"
)

// Limits.
const (
	// MaxSealed bounds a sealed job or status read from the network.
	MaxSealed = 64 << 10
	// MaxDoc bounds a job's document.
	MaxDoc = 48 << 10
	// MaxLifetime is the longest a job may stay valid (Expires − Created).
	// It bounds the kiosk's record of executed ids: an id whose job has
	// expired can be forgotten, since its job is refused as expired anyway.
	MaxLifetime = 7 * 24 * time.Hour
	// ClockSkew is how far in the future Created may lie.
	ClockSkew = 5 * time.Minute
)

var (
	idRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	deviceRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
)

// ValidDevice reports whether s is a device (or group) name jobs accept.
func ValidDevice(s string) bool { return deviceRe.MatchString(s) }

// ErrMalformed is returned for a job or status that does not parse or
// breaks a rule of this package.
var ErrMalformed = errors.New("jobwire: malformed")

// Job is one execution of an operator action on one device.
type Job struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Device string `json:"device"`          // the one kiosk this sealed job is for
	Group  string `json:"group,omitempty"` // the rollout's group, informational
	Kind   string `json:"kind"`
	// Doc is the kind's document as JSON text (a string, so the sealed
	// body stays in the canonical integer-only subset whatever the
	// document holds): e.g. {"lines":200} for collect_logs.
	Doc     string    `json:"doc,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// Check validates a decoded job's fields (not its timing against a clock).
func (j *Job) Check() error {
	switch {
	case j.V != Version:
		return fmt.Errorf("%w: version %d", ErrMalformed, j.V)
	case !idRe.MatchString(j.ID):
		return fmt.Errorf("%w: job id %q", ErrMalformed, j.ID)
	case !deviceRe.MatchString(j.Device):
		return fmt.Errorf("%w: device %q", ErrMalformed, j.Device)
	case j.Group != "" && !deviceRe.MatchString(j.Group):
		return fmt.Errorf("%w: group %q", ErrMalformed, j.Group)
	case !kindRe.MatchString(j.Kind):
		return fmt.Errorf("%w: kind %q", ErrMalformed, j.Kind)
	case len(j.Doc) > MaxDoc:
		return fmt.Errorf("%w: document of %d bytes (max %d)", ErrMalformed, len(j.Doc), MaxDoc)
	case j.Created.IsZero() || j.Expires.IsZero():
		return fmt.Errorf("%w: created and expires are required", ErrMalformed)
	case !j.Expires.After(j.Created):
		return fmt.Errorf("%w: expires before created", ErrMalformed)
	case j.Expires.Sub(j.Created) > MaxLifetime:
		return fmt.Errorf("%w: lifetime %s longer than %s", ErrMalformed, j.Expires.Sub(j.Created), MaxLifetime)
	}
	return nil
}

var kindRe = regexp.MustCompile(`^[a-z][a-z_]{0,31}$`)

// Hash identifies a job's content (SHA-256 of its JSON encoding, hex).
// Signatures are randomised, so two sealings of one job differ in bytes
// but not in Hash: a kiosk tells a job offered again from a replayed id by
// it.
func (j *Job) Hash() string {
	c := *j
	c.Created, c.Expires = c.Created.UTC(), c.Expires.UTC()
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Seal signs a job with the operations key.
func Seal(s *txreport.Signer, j Job) ([]byte, error) {
	if err := j.Check(); err != nil {
		return nil, err
	}
	j.Created, j.Expires = j.Created.UTC(), j.Expires.UTC()
	return s.Seal(j)
}

// Peek reads a sealed job's id, device and kind without verifying it, so
// a kiosk can name the job it rejects. Nothing in it may be trusted.
func Peek(b []byte) (Job, error) {
	var j Job
	if len(b) > MaxSealed {
		return j, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	var env txreport.Sealed
	if err := json.Unmarshal(b, &env); err != nil {
		return Job{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := json.Unmarshal(env.Body, &j); err != nil {
		return Job{}, fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	return j, nil
}

// Open verifies a sealed job against the operations keyring and checks
// its fields. Errors wrap ErrMalformed or txreport's ErrUnknownDevice /
// ErrBadSignature.
func Open(ops *txreport.Keyring, b []byte) (Job, error) {
	var j Job
	if len(b) > MaxSealed {
		return j, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if _, err := ops.Open(b, &j); err != nil {
		return Job{}, err
	}
	if err := j.Check(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// LogsResult is a collect_logs job's result: the kiosk's last log lines,
// redacted (firmware/logtail), and its diagnostics archive bounded to
// what fits in a status (the full archive comes from the staff screen).
type LogsResult struct {
	Device string `json:"device"`
	// Since is when the kioskd process started: the lines are this
	// process's (kept in memory; earlier runs are in the kiosk's journal).
	Since time.Time `json:"since"`
	Lines []string  `json:"lines"`
	// Omitted counts older lines not sent (dropped from the kiosk's
	// ring, over the result's bound, or more than were asked for).
	Omitted int `json:"omitted"`
	// Diagnostics is the diagnostics zip (base64): counters and health,
	// and the heap and goroutine profiles when they fit (its README.txt
	// names what was left out). Empty when not asked for or not fitting;
	// DiagnosticsNote says which.
	Diagnostics     string `json:"diagnostics,omitempty"`
	DiagnosticsNote string `json:"diagnostics_note,omitempty"`
}

// CertResult is a rotate_certificate job's result: the new device
// certificate and the one it replaced (serials in hex).
type CertResult struct {
	Serial           string    `json:"serial"`
	NotAfter         time.Time `json:"not_after"`
	PreviousSerial   string    `json:"previous_serial"`
	PreviousNotAfter time.Time `json:"previous_not_after"`
}

// Status is a kiosk's report on one job execution.
type Status struct {
	V      int    `json:"v"`
	JobID  string `json:"job_id"`
	Device string `json:"device"`
	Status string `json:"status"`
	// Reason: for rejected and failed, a machine code (Reason*) then
	// ": " and a human detail.
	Reason string `json:"reason,omitempty"`
	// Result is the kind's result as JSON text (health: the health
	// document; collect_logs: the lines), bounded by MaxDoc.
	Result string    `json:"result,omitempty"`
	Time   time.Time `json:"time"`
	// Seq orders the statuses of one execution (MQTT orders per topic
	// only within one session); 1 for queued.
	Seq int `json:"seq"`
}

// Check validates a decoded status.
func (s *Status) Check() error {
	switch {
	case s.V != Version:
		return fmt.Errorf("%w: version %d", ErrMalformed, s.V)
	case !idRe.MatchString(s.JobID):
		return fmt.Errorf("%w: job id %q", ErrMalformed, s.JobID)
	case !deviceRe.MatchString(s.Device):
		return fmt.Errorf("%w: device %q", ErrMalformed, s.Device)
	case s.Status != StatusQueued && s.Status != StatusInProgress && s.Status != StatusSucceeded &&
		s.Status != StatusFailed && s.Status != StatusRejected:
		return fmt.Errorf("%w: status %q", ErrMalformed, s.Status)
	case len(s.Reason) > 1024:
		return fmt.Errorf("%w: reason of %d bytes", ErrMalformed, len(s.Reason))
	case len(s.Result) > MaxDoc:
		return fmt.Errorf("%w: result of %d bytes", ErrMalformed, len(s.Result))
	case s.Seq < 1 || s.Seq > 1000:
		return fmt.Errorf("%w: seq %d", ErrMalformed, s.Seq)
	}
	return nil
}

// SealStatus signs a status with the device key.
func SealStatus(s *txreport.Signer, st Status) ([]byte, error) {
	if err := st.Check(); err != nil {
		return nil, err
	}
	st.Time = st.Time.UTC()
	return s.Seal(st)
}

// OpenStatus verifies a sealed status from the network with the hub's
// device keyring and checks that the certificate's device is the one the
// status names (and the topic's, passed as device).
func OpenStatus(devices *txreport.Keyring, device string, b []byte) (Status, error) {
	var st Status
	if len(b) > MaxSealed {
		return st, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	dev, err := devices.Open(b, &st)
	if err != nil {
		return Status{}, err
	}
	if err := st.Check(); err != nil {
		return Status{}, err
	}
	if st.Device != dev.ID || st.Device != device {
		return Status{}, fmt.Errorf("%w: status of %q signed by %q on the topic of %q", ErrMalformed, st.Device, dev.ID, device)
	}
	return st, nil
}
