package enrollwire

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"time"
)

// jobRe is a fleet job id (firmware/jobwire's rule).
var jobRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// Renewal of an enrolled kiosk's certificate, over its own mutual-TLS
// link: per-device topics below <prefix>/<device>/, the request sealed
// (txreport.Sealed) by the current device key, the answer sealed by the
// hub's authorization key, which the kiosk has trusted since enrollment.
// The CSR goes through the same checks and the same issuing path as at
// enrollment.
const (
	TopicRenew   = "cert/renew"   // kiosk → hub: RenewRequest, sealed by the device key
	TopicRenewed = "cert/renewed" // hub → kiosk: RenewAnswer, sealed by the hub
)

// RenewRequest asks for a certificate for a new key.
type RenewRequest struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Device string `json:"device"`
	CSR    []byte `json:"csr"`
	// Expires bounds a replay: the hub refuses the request after it (and
	// one that claims more than MaxRenewRequestLife). ID is the nonce the
	// answer echoes.
	Expires time.Time `json:"expires"`
	// Job names the operator's rotate_certificate job (docs/mqtt.md,
	// "Jobs") that asks for this renewal before it is due: the hub
	// renews early only for a running job of that kind offered to this
	// device. Empty for the kiosk's own renewal in the window.
	Job string `json:"job,omitempty"`
}

// MaxRenewRequestLife is the longest a renewal request may claim to
// stay valid (its Expires from the hub's clock).
const MaxRenewRequestLife = 30 * time.Minute

// Check validates a decoded request: version, id, device, and the CSR
// (signature, P-256, CN = device).
func (r *RenewRequest) Check() (*x509.CertificateRequest, error) {
	if r.V != Version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, r.V)
	}
	if !idRe.MatchString(r.ID) {
		return nil, fmt.Errorf("%w: request id", ErrMalformed)
	}
	if !ValidDevice(r.Device) {
		return nil, fmt.Errorf("%w: device id %q", ErrMalformed, r.Device)
	}
	if r.Expires.IsZero() {
		return nil, fmt.Errorf("%w: no expiry", ErrMalformed)
	}
	if r.Job != "" && !jobRe.MatchString(r.Job) {
		return nil, fmt.Errorf("%w: job id", ErrMalformed)
	}
	return ParseCSR(r.CSR, r.Device)
}

// RenewAnswer is the hub's answer: Status "accepted" with Chain, or
// "rejected" with Code (CodeBadCSR, CodeWrongDevice, CodeNotDue,
// CodeInternal) and Message.
type RenewAnswer struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Device string `json:"device"`
	Status string `json:"status"`
	// Chain is the new certificate then the issuing CA, DER (base64 in
	// JSON: the sealed body is canonical JSON, which has no newlines).
	Chain    [][]byte  `json:"chain,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	Code     string    `json:"code,omitempty"`
	Message  string    `json:"message,omitempty"`
}

// CodeNotDue: the presenting certificate has more than the renewal
// window left; a key cannot mint itself certificates at will.
const CodeNotDue = "not_due"

// CodeSuperseded: the request was sealed by a certificate that is not the
// device's newest; only the newest renews (an old key cannot mint fresh
// certificates).
const CodeSuperseded = "superseded"

// CodeRequestExpired: the request's Expires passed (a replay, or a kiosk
// clock far behind the hub's), or lies too far ahead.
const CodeRequestExpired = "request_expired"

// RenewWindow is when a certificate may be renewed: less than this left.
const RenewWindow = 30 * 24 * time.Hour
