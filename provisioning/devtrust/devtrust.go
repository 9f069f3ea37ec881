// Package devtrust is how a hub instance decides which device
// certificates it accepts: those the bank's device CA issued (recorded in
// the shared registry at enrollment), that chain to the CA's root, are
// within their validity and whose serial is not revoked. Revocations are
// reloaded from the registry every second, so a serial revoked at any
// instance is refused by all within a few seconds, without a restart.
package devtrust

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/hubstore"
)

// Options configure a Trust.
type Options struct {
	Verifier *deviceca.Verifier
	Registry hubstore.Registry
	// Refresh is how often revocations are reloaded (default 1 s).
	Refresh time.Duration
	// Stale: when revocations could not be reloaded for this long every
	// registry device is refused (fail closed; default 5 s).
	Stale time.Duration
	// Lookup bounds one registry lookup (default 3 s).
	Lookup time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

type entry struct {
	dev    txreport.Device
	serial string
}

// Trust resolves device certificates for a txreport.Keyring.
type Trust struct {
	o   Options
	log *slog.Logger

	mu      sync.RWMutex
	known   map[string]entry     // fingerprint → device
	missing map[string]time.Time // fingerprint → until when "unknown" is cached
	revoked map[string]time.Time // serial → when it was revoked
	loaded  time.Time            // last successful reload (Now clock)
}

// New returns a Trust; call Reload (or Run) before Resolve accepts
// anything.
func New(o Options) (*Trust, error) {
	if o.Verifier == nil || o.Registry == nil {
		return nil, errors.New("devtrust: verifier and registry are required")
	}
	if o.Refresh <= 0 {
		o.Refresh = time.Second
	}
	if o.Stale <= 0 {
		o.Stale = 5 * time.Second
	}
	if o.Lookup <= 0 {
		o.Lookup = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Trust{o: o, log: log, known: map[string]entry{}, missing: map[string]time.Time{}, revoked: map[string]time.Time{}}, nil
}

// Reload reads the revocations.
func (t *Trust) Reload(ctx context.Context) error {
	revs, err := t.o.Registry.Revocations(ctx)
	if err != nil {
		return fmt.Errorf("devtrust: revocations: %w", err)
	}
	set := make(map[string]time.Time, len(revs))
	for _, r := range revs {
		set[r.Serial] = r.Revoked
	}
	t.mu.Lock()
	for s := range set {
		if _, was := t.revoked[s]; !was {
			t.log.Info("device certificate revoked", "serial", s)
		}
	}
	t.revoked = set
	t.loaded = t.o.Now()
	// Certificates issued since are looked up again.
	clear(t.missing)
	t.mu.Unlock()
	return nil
}

// Run reloads every Options.Refresh until ctx ends.
func (t *Trust) Run(ctx context.Context) {
	tk := time.NewTicker(t.o.Refresh)
	defer tk.Stop()
	for {
		if err := t.Reload(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("revocation reload failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// Revoked reports whether serial (lowercase hex) is revoked.
func (t *Trust) Revoked(serial string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.revoked[serial]
	return ok
}

// Resolve is a txreport.Resolver.
func (t *Trust) Resolve(fp string) (txreport.Device, bool) {
	now := t.o.Now()
	t.mu.RLock()
	fresh := !t.loaded.IsZero() && now.Sub(t.loaded) < t.o.Stale
	e, ok := t.known[fp]
	_, revoked := t.revoked[e.serial]
	revoked = ok && revoked
	until, neg := t.missing[fp]
	t.mu.RUnlock()
	switch {
	case !fresh:
		// Without a current revocation list nothing from the registry
		// is accepted.
		return txreport.Device{}, false
	case ok:
		if revoked || now.After(e.dev.Cert.NotAfter) || now.Before(e.dev.Cert.NotBefore) {
			return txreport.Device{}, false
		}
		return e.dev, true
	case neg && now.Before(until):
		return txreport.Device{}, false
	}
	e, err := t.lookup(fp, now)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if !errors.Is(err, hubstore.ErrNotFound) {
			t.log.Warn("device certificate refused", "fingerprint", fp, "err", err)
		}
		// A flood of unknown fingerprints costs one lookup each per 5 s.
		t.missing[fp] = now.Add(5 * time.Second)
		return txreport.Device{}, false
	}
	t.known[fp] = e
	if _, revoked := t.revoked[e.serial]; revoked {
		return txreport.Device{}, false
	}
	return e.dev, true
}

// RefusedForGood reports whether fp names a certificate the device CA
// issued to device that is revoked or expired now: a report under it
// will never be accepted (unless decided earlier: see ResolveAt).
func (t *Trust) RefusedForGood(fp, device string) bool {
	t.mu.RLock()
	e, ok := t.known[fp]
	t.mu.RUnlock()
	if !ok || e.dev.ID != device {
		return false
	}
	t.mu.RLock()
	_, revoked := t.revoked[e.serial]
	t.mu.RUnlock()
	return revoked || t.o.Now().After(e.dev.Cert.NotAfter)
}

// ResolveAt resolves a certificate as it stood at a report's decision
// time: within its validity then, and not revoked before then. A report
// signed while the certificate was good still verifies after it expired
// or was revoked (issue 14: "reports signed under the old key still
// verify"); a time after the hub's now counts as now. The decision time
// is the kiosk's claim, signed with the key: a key stolen before its
// revocation can backdate reports, which the revocation time bounds.
func (t *Trust) ResolveAt(fp string, at time.Time) (txreport.Device, bool) {
	now := t.o.Now()
	if at.After(now) {
		at = now
	}
	t.mu.RLock()
	fresh := !t.loaded.IsZero() && now.Sub(t.loaded) < t.o.Stale
	e, ok := t.known[fp]
	t.mu.RUnlock()
	if !fresh {
		return txreport.Device{}, false
	}
	if !ok {
		var err error
		if e, err = t.lookup(fp, at); err != nil {
			return txreport.Device{}, false
		}
		t.mu.Lock()
		t.known[fp] = e
		t.mu.Unlock()
	}
	t.mu.RLock()
	revokedAt, revoked := t.revoked[e.serial]
	t.mu.RUnlock()
	if at.After(e.dev.Cert.NotAfter) || at.Before(e.dev.Cert.NotBefore) || (revoked && !revokedAt.After(at)) {
		return txreport.Device{}, false
	}
	return e.dev, true
}

func (t *Trust) lookup(fp string, now time.Time) (entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.o.Lookup)
	defer cancel()
	dc, err := t.o.Registry.CertByFingerprint(ctx, fp)
	if err != nil {
		return entry{}, err
	}
	cert, err := x509.ParseCertificate(dc.DER)
	if err != nil {
		return entry{}, fmt.Errorf("registry certificate %s: %w", fp, err)
	}
	if txreport.Fingerprint(cert) != fp {
		return entry{}, fmt.Errorf("registry certificate %s: fingerprint mismatch", fp)
	}
	id, err := t.o.Verifier.Verify(cert, now)
	if err != nil {
		return entry{}, err
	}
	if id != dc.Device {
		return entry{}, fmt.Errorf("certificate names %q, registry %q", id, dc.Device)
	}
	dev, err := txreport.NewDevice(cert)
	if err != nil {
		return entry{}, err
	}
	return entry{dev: dev, serial: deviceca.SerialHex(cert)}, nil
}
