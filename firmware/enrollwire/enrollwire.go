// Package enrollwire is the wire format of enrollment by claim, the one
// package the kiosk and the hub share for it (docs/enrollment.md). The
// flow follows AWS IoT fleet provisioning by claim: the kiosk generates
// its key, subscribes to <prefix>/provision/<device>/csr/accepted and
// …/rejected, then publishes a Request (its CSR and a one-time token)
// on <prefix>/provision/<device>/csr; the hub answers on one of the two.
//
// Answers are sealed with an HMAC keyed from the token (RFC 2104), so a
// kiosk accepts only an answer from someone who knew its token: the hub,
// which received it over TLS on a topic only the hub may read.
package enrollwire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Version is the only protocol version.
const Version = 1

// Size bounds: a request is a P-256 CSR and a token; an answer carries a
// few certificates and a trust bundle.
const (
	MaxRequest  = 16 << 10
	MaxResponse = 256 << 10
)

// ProvisionLevel is the topic level below the prefix that holds the
// provisioning topics; no device may take it as its id.
const ProvisionLevel = "provision"

var (
	deviceRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	idRe     = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)
)

// Errors callers branch on.
var (
	ErrMalformed = errors.New("enrollwire: malformed message")
	ErrBadMAC    = errors.New("enrollwire: answer not sealed with this token")
	ErrBadToken  = errors.New("enrollwire: not an enrollment token")
	// ErrWrongDevice: the token, the topic or the CSR name another device.
	ErrWrongDevice = errors.New("enrollwire: request names another device")
)

// ValidDevice reports whether id can name a device (and its topics).
func ValidDevice(id string) bool { return deviceRe.MatchString(id) && id != ProvisionLevel }

// RequestTopic is where a kiosk publishes its Request.
func RequestTopic(prefix, device string) string {
	return prefix + "/" + ProvisionLevel + "/" + device + "/csr"
}

// AcceptedTopic and RejectedTopic carry the hub's sealed answer.
func AcceptedTopic(prefix, device string) string { return RequestTopic(prefix, device) + "/accepted" }

// RejectedTopic: see AcceptedTopic.
func RejectedTopic(prefix, device string) string { return RequestTopic(prefix, device) + "/rejected" }

// DeviceOfRequestTopic returns the device of a request topic, or an error
// for any other topic.
func DeviceOfRequestTopic(prefix, topic string) (string, error) {
	rest, ok := strings.CutPrefix(topic, prefix+"/"+ProvisionLevel+"/")
	if !ok {
		return "", fmt.Errorf("%w: topic %q is not under %s/%s/", ErrMalformed, topic, prefix, ProvisionLevel)
	}
	dev, tail, ok := strings.Cut(rest, "/")
	if !ok || tail != "csr" || !ValidDevice(dev) {
		return "", fmt.Errorf("%w: topic %q is not %s", ErrMalformed, topic, RequestTopic(prefix, "<device>"))
	}
	return dev, nil
}

// Token is a one-time enrollment claim: "kt1.<device>.<secret>", the
// secret 32 random bytes in unpadded base64url. The device id is in the
// clear so the kiosk knows which id it is enrolling as; the hub checks it
// against the id the token was minted for.
type Token string

const tokenPrefix = "kt1."

// NewToken mints a token for device.
func NewToken(device string) (Token, error) {
	if !ValidDevice(device) {
		return "", fmt.Errorf("device id %q: 1-64 letters, digits, '-' or '_' (not %q)", device, ProvisionLevel)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return Token(tokenPrefix + device + "." + base64.RawURLEncoding.EncodeToString(b)), nil
}

// ParseToken checks a token's form and returns its device id.
func ParseToken(s string) (Token, string, error) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: no %q prefix", ErrBadToken, tokenPrefix)
	}
	dev, secret, ok := strings.Cut(rest, ".")
	if !ok || !ValidDevice(dev) {
		return "", "", fmt.Errorf("%w: device part", ErrBadToken)
	}
	if b, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(b) != 32 {
		return "", "", fmt.Errorf("%w: secret part", ErrBadToken)
	}
	return Token(s), dev, nil
}

// Hash is what the hub stores instead of the token: lowercase hex
// SHA-256 of the token.
func (t Token) Hash() string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

// macKey is HMAC(token, label): not derivable from the stored Hash, so
// the store alone cannot seal answers.
func (t Token) macKey() []byte {
	m := hmac.New(sha256.New, []byte(t))
	m.Write([]byte("kiosk enrollment answer v1"))
	return m.Sum(nil)
}

// Request is what the kiosk publishes on RequestTopic.
type Request struct {
	V      int    `json:"v"`
	ID     string `json:"id"` // random, repeated in the answer
	Device string `json:"device"`
	Token  Token  `json:"token"`
	CSR    []byte `json:"csr"` // PKCS #10 (RFC 2986) DER; base64 in JSON
}

// ParseRequest decodes network input and checks it: the CSR's signature,
// an ECDSA P-256 key, its subject CN equal to the device, the token's
// device equal to the device. It does not check the token's validity
// (the hub's store does).
func ParseRequest(b []byte) (*Request, *x509.CertificateRequest, error) {
	if len(b) > MaxRequest {
		return nil, nil, fmt.Errorf("%w: %d bytes (max %d)", ErrMalformed, len(b), MaxRequest)
	}
	var r Request
	if err := strictDecode(b, &r); err != nil {
		return nil, nil, err
	}
	if r.V != Version {
		return nil, nil, fmt.Errorf("%w: version %d", ErrMalformed, r.V)
	}
	if !idRe.MatchString(r.ID) {
		return &r, nil, fmt.Errorf("%w: request id", ErrMalformed)
	}
	if !ValidDevice(r.Device) {
		return &r, nil, fmt.Errorf("%w: device id %q", ErrMalformed, r.Device)
	}
	if _, dev, err := ParseToken(string(r.Token)); err != nil {
		return &r, nil, err
	} else if dev != r.Device {
		return &r, nil, fmt.Errorf("%w: token for %q in a request for %q", ErrWrongDevice, dev, r.Device)
	}
	csr, err := ParseCSR(r.CSR, r.Device)
	if err != nil {
		return &r, nil, err
	}
	return &r, csr, nil
}

// ParseCSR parses a DER CSR and checks its signature, key and subject.
func ParseCSR(der []byte, device string) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: csr: %v", ErrMalformed, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: csr signature: %v", ErrMalformed, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: csr key is not ECDSA P-256", ErrMalformed)
	}
	if csr.Subject.CommonName != device {
		return nil, fmt.Errorf("%w: csr subject CN %q, device %q", ErrWrongDevice, csr.Subject.CommonName, device)
	}
	return csr, nil
}

// Accepted is the hub's answer with the device's certificate and what the
// kiosk needs to trust from now on.
type Accepted struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Device string `json:"device"`
	// Chain is the device certificate then the issuing CA, PEM.
	Chain string `json:"chain"`
	// Root is the bank device CA's root, PEM: the anchor of Chain.
	Root string `json:"root"`
	// BrokerCA is the CA bundle of the brokers, PEM.
	BrokerCA string `json:"broker_ca"`
	// AuthCert is the hub's authorization certificate(s), PEM: the
	// kiosk's hub.auth_cert.
	AuthCert string `json:"auth_cert"`
	// OpsCert is the hub's operations certificate(s), PEM: the kiosk's
	// hub.operations_cert, which fleet jobs must be sealed by. Empty when
	// the hub runs no fleet jobs.
	OpsCert string `json:"operations_cert,omitempty"`
	// TrustBundle is the initial trust bundle, PEM (may be empty).
	TrustBundle string    `json:"trust_bundle,omitempty"`
	NotAfter    time.Time `json:"not_after"`
}

// Rejection codes.
const (
	CodeTokenInvalid = "token_invalid" // unknown, or minted for another device
	CodeTokenExpired = "token_expired"
	CodeTokenUsed    = "token_used"
	CodeWrongDevice  = "wrong_device"
	CodeBadCSR       = "bad_csr"
	CodeInternal     = "internal" // the hub could not decide; try again later
)

// Rejected is the hub's refusal; Code is one of the Code constants.
type Rejected struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Device  string `json:"device"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Sealed is an answer: its body bytes and their HMAC-SHA256.
type Sealed struct {
	Body json.RawMessage `json:"body"`
	MAC  string          `json:"mac"` // base64 (standard) HMAC-SHA256 of Body
}

// Seal encodes v and seals it with t.
func Seal(t Token, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, t.macKey())
	m.Write(body)
	return json.Marshal(Sealed{Body: body, MAC: base64.StdEncoding.EncodeToString(m.Sum(nil))})
}

// Open checks an answer's size and seal and decodes its body into v
// (*Accepted or *Rejected).
func Open(t Token, b []byte, v any) error {
	if len(b) > MaxResponse {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrMalformed, len(b), MaxResponse)
	}
	var s Sealed
	if err := strictDecode(b, &s); err != nil {
		return err
	}
	mac, err := base64.StdEncoding.DecodeString(s.MAC)
	if err != nil {
		return fmt.Errorf("%w: mac: %v", ErrMalformed, err)
	}
	m := hmac.New(sha256.New, t.macKey())
	m.Write(s.Body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return ErrBadMAC
	}
	if err := strictDecode(s.Body, v); err != nil {
		return err
	}
	return nil
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	return nil
}

// NewRequestID is a random request id.
func NewRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
