package hubstore

import (
	"context"
	"errors"
	"time"
)

// Registry is the device registry every hub instance shares: enrollment
// tokens (stored as hashes), the certificates the device CA issued, and
// revocations. Both stores implement it.
type Registry interface {
	// PutToken stores a new token hash for a device.
	PutToken(ctx context.Context, t Token) error
	// UseToken marks the token with this hash used, once: it must exist,
	// be bound to device, be unused and unexpired at now. The errors are
	// ErrTokenUnknown, ErrTokenDevice, ErrTokenUsed, ErrTokenExpired; on
	// any of them nothing changes.
	UseToken(ctx context.Context, hash, device string, now time.Time) error
	// PutCert records an issued certificate.
	PutCert(ctx context.Context, c DeviceCert) error
	// CertByFingerprint finds an issued certificate (ErrNotFound).
	CertByFingerprint(ctx context.Context, fp string) (DeviceCert, error)
	// CertBySerial finds an issued certificate by its serial in
	// deviceca.SerialHex form (ErrNotFound).
	CertBySerial(ctx context.Context, serial string) (DeviceCert, error)
	// DeviceCerts lists a device's certificates, oldest first.
	DeviceCerts(ctx context.Context, device string) ([]DeviceCert, error)
	// Revoke records a serial as revoked (idempotent: the first time
	// stays).
	Revoke(ctx context.Context, r Revocation) error
	// Revocations lists every revocation.
	Revocations(ctx context.Context) ([]Revocation, error)
}

// Token is an enrollment token as stored: never the token itself.
type Token struct {
	Hash    string     `json:"hash"` // enrollwire.Token.Hash
	Device  string     `json:"device"`
	Created time.Time  `json:"created"`
	Expires time.Time  `json:"expires"`
	Used    *time.Time `json:"used,omitempty"`
}

// DeviceCert is a certificate the device CA issued.
type DeviceCert struct {
	Fingerprint string    `json:"fingerprint"` // txreport.Fingerprint
	Serial      string    `json:"serial"`      // lowercase hex
	Device      string    `json:"device"`
	NotAfter    time.Time `json:"not_after"`
	Issued      time.Time `json:"issued"`
	DER         []byte    `json:"der"`
}

// Revocation of one certificate serial.
type Revocation struct {
	Serial  string    `json:"serial"`
	Device  string    `json:"device"`
	Reason  string    `json:"reason"`
	Revoked time.Time `json:"revoked"`
}

// Registry errors.
var (
	ErrTokenUnknown = errors.New("hubstore: enrollment token unknown")
	ErrTokenDevice  = errors.New("hubstore: enrollment token minted for another device")
	ErrTokenUsed    = errors.New("hubstore: enrollment token already used")
	ErrTokenExpired = errors.New("hubstore: enrollment token expired")
	ErrNotFound     = errors.New("hubstore: not found")
	ErrExists       = errors.New("hubstore: already exists")
)
