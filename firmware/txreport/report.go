// Package txreport is the transaction report kioskd sends to the bank hub:
// what was decided and on which evidence, without personal data beyond a
// salted hash of the document number, signed by the device key (ECDSA
// P-256 over the canonical JSON encoding, see Canonical and docs/mqtt.md).
package txreport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Version is the report schema version ("v").
const Version = 1

// Decisions.
const (
	Approved = "approved"
	Declined = "declined"
)

// Authorization modes.
const (
	AuthOnline  = "online"  // the hub authorized the payment
	AuthOffline = "offline" // approved under the offline floor limit
	AuthNone    = "none"    // no authorization (declined before, or identity only)
)

// Report is one decided transaction. Field order does not matter: the
// signature covers the canonical encoding (sorted keys).
type Report struct {
	V           int    `json:"v"`
	TxID        string `json:"tx_id"`
	Terminal    string `json:"terminal_id"`
	Merchant    string `json:"merchant"`
	MerchantRef string `json:"merchant_ref,omitempty"`
	Kind        string `json:"kind"` // payment, identity or event
	// Service names the branch service an identity check was for; for an
	// event, the event (EventTamperAlarm ...).
	Service  string `json:"service,omitempty"`
	Amount   int64  `json:"amount"` // minor units of Currency (ISO 4217)
	Currency string `json:"currency"`
	Started  string `json:"started"` // RFC 3339 UTC, millisecond precision
	Decided  string `json:"decided"`
	// DocHash is DocumentHash(salt, issuing state, number): it lets the
	// bank link transactions of one document without learning its number.
	DocHash  string   `json:"doc_hash,omitempty"`
	Checks   []Check  `json:"checks"`
	Scores   []Score  `json:"scores"`
	Models   []Model  `json:"models"`
	Decision string   `json:"decision"` // approved or declined
	Reasons  []string `json:"reasons"`  // machine codes; empty when approved
	Auth     Auth     `json:"auth"`
	// Face summarises the face step when it ran: frame counts and when
	// the holder consented; nothing biometric.
	Face *FaceSummary `json:"face,omitempty"`
	// Audit is a staff action (event "staff_audit"): one entry of the
	// kiosk's hash-chained audit log (package audit).
	Audit *AuditEntry `json:"audit,omitempty"`
	// HolderSignature is the holder's own act: a bank eID card's
	// signature over this transaction's challenge (package bankeid), which
	// the hub verifies against the eID authority.
	HolderSignature *HolderSignature `json:"holder_signature,omitempty"`
}

// HolderSignature is a document's signature over the transaction
// challenge with the certificate that verifies it (bytes as base64).
type HolderSignature struct {
	Profile     string `json:"profile"`
	Algorithm   string `json:"algorithm"`
	Challenge   []byte `json:"challenge"`
	Signature   []byte `json:"signature"`
	Certificate []byte `json:"certificate"`
}

// AuditEntry is one entry of a kiosk's staff audit log.
type AuditEntry struct {
	Seq    uint64 `json:"seq"`
	Time   string `json:"time"`  // RFC 3339 UTC, milliseconds
	Staff  string `json:"staff"` // account name
	Action string `json:"action"`
	Detail string `json:"detail,omitempty"`
	Prev   string `json:"prev"` // hex SHA-256 of the previous entry's canonical JSON
}

// FaceSummary is the quality and consent record of the face step.
type FaceSummary struct {
	Frames   int64            `json:"frames"`             // camera frames examined
	Good     int64            `json:"good_frames"`        // frames that passed every quality gate
	NoFace   int64            `json:"no_face_frames"`     // frames without the tracked face
	Rejected map[string]int64 `json:"rejected,omitempty"` // failed gate (guidance code) → frames
	// ConsentAt is when the smile consent was recognised (RFC 3339 UTC,
	// milliseconds), empty without consent.
	ConsentAt string `json:"consent_at,omitempty"`
}

// Check is one verification step (eID report checks, face checks).
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Code string `json:"code,omitempty"`
}

// Score is a measured value against its threshold, in units of 1e-4 so
// the canonical form has integers only (0.7342 → 7342).
type Score struct {
	Name        string `json:"name"` // match, liveness, consent
	ValueE4     int64  `json:"value_e4"`
	ThresholdE4 int64  `json:"threshold_e4"`
	OK          bool   `json:"ok"`
}

// NewScore converts float scores (ok = value ≥ threshold).
func NewScore(name string, value, threshold float64) Score {
	return Score{Name: name, ValueE4: e4(value), ThresholdE4: e4(threshold), OK: value >= threshold}
}

func e4(f float64) int64 {
	if math.IsNaN(f) {
		return 0
	}
	return int64(math.Round(math.Max(-1e9, math.Min(1e9, f)) * 1e4))
}

// Model identifies a model file by its SHA-256.
type Model struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// Auth says how the payment was authorized.
type Auth struct {
	Mode string `json:"mode"`          // online, offline, none
	Ref  string `json:"ref,omitempty"` // the hub's authorization reference (online)
}

// Timestamp formats t the way reports carry times.
func Timestamp(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}

// DocumentHash is hex(HMAC-SHA256(salt, issuingState + "|" + number)),
// the number without filler '<'. The salt is per deployment (the bank's
// secret), so the hash is useless outside it.
func DocumentHash(salt []byte, issuingState, number string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(strings.ToUpper(issuingState) + "|" + strings.TrimRight(strings.ToUpper(number), "<")))
	return hex.EncodeToString(m.Sum(nil))
}

// Events a kiosk reports through the outbox like a transaction (signed,
// stored until the hub acknowledges it): Kind "event", Service the event,
// no amount, no decision.
const (
	KindEvent        = "event"
	EventTamperAlarm = "tamper_alarm" // the enclosure was opened: keys and salt wiped
	EventTamperReset = "tamper_reset" // staff returned the re-enrolled kiosk to service
	// EventDecommission: the kiosk leaves service for good; the hub
	// revokes its certificates before it acknowledges.
	EventDecommission = "decommission"
	// EventStaffAudit carries one audit log entry (Report.Audit).
	EventStaffAudit = "staff_audit"
)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("txreport: invalid report")

var (
	idRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	terminalRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
	hexRe      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	codeRe     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
)

// Validate checks what the hub relies on. Strings must also be in the
// canonical subset (no control characters).
func (r *Report) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(f, a...)) }
	if r.V != Version {
		return bad("version %d, want %d", r.V, Version)
	}
	if !idRe.MatchString(r.TxID) {
		return bad("tx_id %q", r.TxID)
	}
	if !terminalRe.MatchString(r.Terminal) {
		return bad("terminal_id %q", r.Terminal)
	}
	if r.Kind == KindEvent {
		for _, ts := range []string{r.Started, r.Decided} {
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				return bad("time %q", ts)
			}
		}
		if !codeRe.MatchString(r.Service) || r.Amount != 0 || r.Currency != "" || r.Decision != "" || len(r.Reasons) != 0 ||
			r.Auth.Mode != AuthNone || r.DocHash != "" || r.Face != nil || r.HolderSignature != nil {
			return bad("event %q: an event names itself in service and carries no amount, decision or document", r.Service)
		}
		if a := r.Audit; (a != nil) != (r.Service == EventStaffAudit) {
			return bad("event %q: audit entry only and always with %s", r.Service, EventStaffAudit)
		} else if a != nil && (a.Seq == 0 || !codeRe.MatchString(a.Action) || !hexRe.MatchString(a.Prev) || len(a.Staff) > 64 || len(a.Detail) > 256) {
			return bad("audit entry %d", a.Seq)
		}
		return nil
	}
	if r.Kind != "payment" && r.Kind != "identity" {
		return bad("kind %q", r.Kind)
	}
	if r.Audit != nil {
		return bad("an audit entry in a %s report", r.Kind)
	}
	if h := r.HolderSignature; h != nil && (!nameRe.MatchString(h.Profile) || !nameRe.MatchString(h.Algorithm) ||
		len(h.Challenge) == 0 || len(h.Challenge) > 512 || len(h.Signature) == 0 || len(h.Signature) > 160 ||
		len(h.Certificate) == 0 || len(h.Certificate) > 4096) {
		return bad("holder_signature: profile or algorithm not a name, or a part empty or too long")
	}
	if r.Amount < 0 || r.Amount > maxSafeInt {
		return bad("amount %d", r.Amount)
	}
	if r.Kind == "payment" && !currencyRe.MatchString(r.Currency) {
		return bad("currency %q is not an ISO 4217 code", r.Currency)
	}
	for _, ts := range []string{r.Started, r.Decided} {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			return bad("time %q", ts)
		}
	}
	if r.DocHash != "" && !hexRe.MatchString(r.DocHash) {
		return bad("doc_hash is not 64 lowercase hex digits")
	}
	if r.Decision != Approved && r.Decision != Declined {
		return bad("decision %q", r.Decision)
	}
	if r.Decision == Approved && len(r.Reasons) != 0 {
		return bad("approved with reasons %v", r.Reasons)
	}
	if r.Decision == Declined && len(r.Reasons) == 0 {
		return bad("declined without a reason")
	}
	switch r.Auth.Mode {
	case AuthOnline, AuthOffline, AuthNone:
	default:
		return bad("auth.mode %q", r.Auth.Mode)
	}
	for _, m := range r.Models {
		if !hexRe.MatchString(m.SHA256) {
			return bad("model %q sha256", m.Name)
		}
	}
	if f := r.Face; f != nil {
		if f.Frames < 0 || f.Good < 0 || f.NoFace < 0 || f.Good+f.NoFace > f.Frames || f.Frames > maxSafeInt {
			return bad("face frame counts %d/%d/%d", f.Frames, f.Good, f.NoFace)
		}
		for code, n := range f.Rejected {
			if !codeRe.MatchString(code) || n < 0 || n > f.Frames {
				return bad("face rejected %q: %d", code, n)
			}
		}
		if f.ConsentAt != "" {
			if _, err := time.Parse(time.RFC3339Nano, f.ConsentAt); err != nil {
				return bad("face consent_at %q", f.ConsentAt)
			}
		}
	}
	return nil
}

// Encode validates r and returns its canonical encoding.
func (r *Report) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	// Nil slices would be null; the schema has arrays.
	c := *r
	if c.Reasons == nil {
		c.Reasons = []string{}
	}
	if c.Checks == nil {
		c.Checks = []Check{}
	}
	if c.Scores == nil {
		c.Scores = []Score{}
	}
	if c.Models == nil {
		c.Models = []Model{}
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("txreport: encode: %w", err)
	}
	return Canonical(b)
}
