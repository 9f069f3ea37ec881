package enroll

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"kiosk/firmware/enrollwire"
	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/internal/backoff"
)

// Renewal thresholds: renew with less than enrollwire.RenewWindow (30
// days) left; health is degraded with less than DegradedWindow.
const DegradedWindow = 14 * 24 * time.Hour

// PendingKeys makes the new key of a renewal beside the current one.
type PendingKeys interface {
	CreatePending(ctx context.Context) (key crypto.Signer, commit, discard func() error, err error)
}

// RenewerOptions wire a Renewer.
type RenewerOptions struct {
	Hub     *hub.Client
	Signer  *txreport.Signer  // the shared report signer: renewed in place
	HubKeys *txreport.Keyring // the hub's authorization certificate(s): answers must verify
	Keys    PendingKeys       // nil: this key storage cannot renew (the renewal is refused, logged)
	Chain   string            // the certificate chain file to replace
	// OnRenewed is called after the switch (reconnect the link with the
	// new certificate; update the daemon's key).
	OnRenewed func(key crypto.Signer, cert *x509.Certificate)
	// Hold, when it returns an error, refuses to commit an answered
	// renewal (the tamper latch): the new key is discarded.
	Hold   func() error
	Every  time.Duration // how often the certificate is checked (default 1 h)
	Wait   time.Duration // for the hub's answer (default 30 s)
	Now    func() time.Time
	Logger *slog.Logger
}

// Renewer renews the device certificate through the hub when it has
// less than 30 days left. Create with NewRenewer before the hub link
// runs (it routes the answer topic); run with Run.
type Renewer struct {
	o       RenewerOptions
	log     *slog.Logger
	answers <-chan hub.Message

	// renewMu runs one renewal at a time: the window's (Run) and an
	// operator's (RenewFor, a rotate_certificate job) share the answer
	// topic.
	renewMu sync.Mutex

	mu       sync.Mutex
	renewals int
	lastErr  string
}

// NewRenewer checks options and routes the answer topic.
func NewRenewer(o RenewerOptions) (*Renewer, error) {
	if o.Hub == nil || o.Signer == nil || o.Chain == "" {
		return nil, errors.New("enroll: renewer needs the hub link, the signer and the chain file")
	}
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Renewer{o: o, log: log, answers: o.Hub.Route(enrollwire.TopicRenewed, 8)}, nil
}

// CertStatus is the certificate's health: ok, degraded (under 14 days),
// expired.
type CertStatus struct {
	State    string    `json:"state"`
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"`
	Renewals int       `json:"renewals"`
	LastErr  string    `json:"last_error,omitempty"`
}

// Status reports the certificate in use.
func (r *Renewer) Status() CertStatus {
	return certStatus(r.o.Signer.Certificate(), r.o.Now(), r)
}

func certStatus(c *x509.Certificate, now time.Time, r *Renewer) CertStatus {
	left := c.NotAfter.Sub(now)
	s := CertStatus{State: "ok", NotAfter: c.NotAfter.UTC(), DaysLeft: int(left.Hours() / 24)}
	switch {
	case left <= 0:
		s.State = "expired"
	case left < DegradedWindow:
		s.State = "degraded"
	}
	if r != nil {
		r.mu.Lock()
		s.Renewals, s.LastErr = r.renewals, r.lastErr
		r.mu.Unlock()
	}
	return s
}

// Due reports whether the certificate should be renewed now.
func (r *Renewer) Due() bool {
	return r.o.Signer.Certificate().NotAfter.Sub(r.o.Now()) < enrollwire.RenewWindow
}

// Run checks every Options.Every and renews when due, retrying a failed
// renewal with capped back-off, until ctx ends.
func (r *Renewer) Run(ctx context.Context) error {
	attempt := 0
	for {
		wait := r.o.Every
		if r.Due() && r.o.Hub.Status().Connected {
			if err := r.Renew(ctx); err != nil && ctx.Err() == nil {
				attempt++
				wait = min(r.o.Every, backoff.Exp(10*time.Second, 10*time.Minute, attempt))
				r.log.Warn("certificate renewal failed", "err", err, "retry_in", wait)
			} else {
				attempt = 0
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		case <-r.o.Hub.Changed():
			// The link came up: check at once.
		}
	}
}

// Renew makes a new key, asks the hub to certify it (the request sealed
// by the current key), and switches to it: chain file, key, signer, then
// OnRenewed. Reports signed before the switch keep the old certificate's
// fingerprint and still verify at the hub.
func (r *Renewer) Renew(ctx context.Context) error { return r.RenewFor(ctx, "") }

// RenewFor renews now, before the window if need be, for the operator's
// rotate_certificate job (the hub renews early only for such a job; ""
// for none).
func (r *Renewer) RenewFor(ctx context.Context, job string) (err error) {
	r.renewMu.Lock()
	defer r.renewMu.Unlock()
	defer func() {
		r.mu.Lock()
		if err != nil {
			r.lastErr = err.Error()
		} else {
			r.lastErr = ""
			r.renewals++
		}
		r.mu.Unlock()
	}()
	if r.o.Keys == nil {
		return errors.New("enroll: this key storage cannot renew its key yet (no pending-key support): enroll again")
	}
	device := r.o.Signer.DeviceID()
	key, commit, discard, err := r.o.Keys.CreatePending(ctx)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = discard()
		}
	}()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: device}}, key)
	if err != nil {
		return fmt.Errorf("enroll: renewal csr: %w", err)
	}
	req := enrollwire.RenewRequest{V: enrollwire.Version, ID: enrollwire.NewRequestID(), Device: device, CSR: csr,
		Expires: r.o.Now().Add(max(r.o.Wait, 5*time.Minute)).UTC(), Job: job}
	b, err := r.o.Signer.Seal(req)
	if err != nil {
		return err
	}
	// Answers to earlier, abandoned requests are stale.
	for len(r.answers) > 0 {
		<-r.answers
	}
	if err := r.o.Hub.Publish(ctx, enrollwire.TopicRenew, 1, false, b); err != nil {
		return fmt.Errorf("enroll: renewal request: %w", err)
	}
	timer := time.NewTimer(r.o.Wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("%w in %s", ErrNoAnswer, r.o.Wait)
		case m := <-r.answers:
			var a enrollwire.RenewAnswer
			if r.o.HubKeys == nil {
				return errors.New("enroll: no hub authorization certificate to verify the answer with")
			}
			if _, err := r.o.HubKeys.Open(m.Payload, &a); err != nil || a.ID != req.ID || a.Device != device {
				r.log.Warn("renewal: ignored an answer that is not ours", "err", err)
				continue
			}
			if a.Status != "accepted" {
				return &RejectedError{Code: a.Code, Message: a.Message}
			}
			leaf, err := r.switchTo(device, key, a.Chain, commit)
			if err != nil {
				return err
			}
			committed = true
			r.log.Info("device certificate renewed", "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
			if r.o.OnRenewed != nil {
				r.o.OnRenewed(key, leaf)
			}
			return nil
		}
	}
}

// switchTo checks the new chain against the new key and the chain the
// kiosk trusts (the old chain's issuer), then writes it and commits the
// key.
func (r *Renewer) switchTo(device string, key crypto.Signer, ders [][]byte, commit func() error) (*x509.Certificate, error) {
	var chain []*x509.Certificate
	var chainPEM []byte
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("enroll: renewed chain: %w", err)
		}
		chain = append(chain, c)
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if len(chain) == 0 {
		return nil, errors.New("enroll: renewed chain is empty")
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) || leaf.Subject.CommonName != device {
		return nil, errors.New("enroll: the renewed certificate is not for the new key and this device")
	}
	// The new certificate must come from the issuer of the old one.
	old := r.o.Signer.Certificate()
	if len(chain) < 2 || leaf.CheckSignatureFrom(chain[1]) != nil || string(chain[1].RawSubject) != string(old.RawIssuer) {
		return nil, errors.New("enroll: the renewed certificate is not from the device CA that issued the old one")
	}
	// A tamper while the request was out: the new key is discarded, the
	// withdrawn signer stays withdrawn.
	if r.o.Signer.Withdrawn() {
		return nil, fmt.Errorf("enroll: renewal not committed: %w", txreport.ErrWithdrawn)
	}
	if r.o.Hold != nil {
		if err := r.o.Hold(); err != nil {
			return nil, fmt.Errorf("enroll: renewal not committed: %w", err)
		}
	}
	// The new chain is written aside first (a full disk fails here, with
	// nothing changed), then the key is committed, then the chain renamed
	// in: a failed commit leaves the old key with the old chain.
	pending := r.o.Chain + ".new"
	if err := WriteFile(pending, chainPEM, 0o644); err != nil {
		return nil, err
	}
	if err := commit(); err != nil {
		_ = os.Remove(pending)
		return nil, fmt.Errorf("enroll: commit the renewed key: %w", err)
	}
	if err := os.Rename(pending, r.o.Chain); err != nil {
		return nil, fmt.Errorf("enroll: the renewed key is in place but its chain is at %s: %w", pending, err)
	}
	if err := r.o.Signer.Replace(key, leaf); err != nil {
		return nil, err
	}
	return leaf, nil
}
