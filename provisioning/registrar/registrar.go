// Package registrar is the hub's side of enrollment by claim
// (docs/enrollment.md): it checks a kiosk's request, spends its one-time
// token in the shared registry, has the device CA sign the CSR, records
// the certificate and answers with the chain and what the kiosk must
// trust. Wire formats are package enrollwire's.
package registrar

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"kiosk/firmware/enrollwire"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/hubstore"
)

// Options configure a Registrar.
type Options struct {
	CA       *deviceca.CA
	Registry hubstore.Registry
	Prefix   string        // topic prefix, e.g. kiosk/v1
	Validity time.Duration // of device certificates (default 365 days)
	// What an enrolled kiosk is given to trust (PEM).
	BrokerCA    string
	AuthCert    string
	OpsCert     string // the operations certificate (fleet jobs); may be empty
	TrustBundle string
	// Keyring and Signer serve renewals: the request must be sealed by a
	// device the keyring trusts (by chain, not revoked), the answer is
	// sealed by the hub's authorization key. Without them renewals are
	// not answered.
	Keyring *txreport.Keyring
	Signer  *txreport.Signer
	// Rotation allows a renewal before the window: nil when device's
	// running rotate_certificate job jobID (an operator's signed request,
	// docs/mqtt.md "Jobs") is offered to it and unfinished. Nil: never
	// early.
	Rotation func(ctx context.Context, device, jobID string) error
	Now      func() time.Time
	Logger   *slog.Logger
}

// Registrar answers enrollment requests.
type Registrar struct {
	o   Options
	log *slog.Logger

	// inUse: per device, the certificate whose first use retired the
	// ones before it (Used), so the registry is asked once per switch.
	mu    sync.Mutex
	inUse map[string]string
}

// New checks options.
func New(o Options) (*Registrar, error) {
	if o.CA == nil || o.Registry == nil || o.Prefix == "" {
		return nil, errors.New("registrar: CA, registry and prefix are required")
	}
	if o.AuthCert == "" {
		return nil, errors.New("registrar: the hub's authorization certificate is required (kiosks verify answers with it)")
	}
	if o.Validity <= 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registrar{o: o, log: log, inUse: map[string]string{}}, nil
}

// Filter is the subscription of every kiosk's requests (below the
// shared-subscription prefix the caller adds).
func (r *Registrar) Filter() string { return r.o.Prefix + "/" + enrollwire.ProvisionLevel + "/+/csr" }

// Reply is an answer to publish; an empty Topic means none can be sent.
type Reply struct {
	Topic   string
	Payload []byte
	// Retry: the registry failed before anything was decided; handling
	// the request again later may succeed.
	Retry bool
}

// Handle answers the request payload received on topic. Anything that is
// not a request with a well-formed token is dropped (an answer could not
// be sealed); everything else is answered accepted or rejected, and a
// rejected request changes nothing in the registry.
func (r *Registrar) Handle(ctx context.Context, topic string, payload []byte) Reply {
	topicDev, err := enrollwire.DeviceOfRequestTopic(r.o.Prefix, topic)
	if err != nil {
		r.log.Warn("enrollment: not a request topic", "topic", topic, "err", err)
		return Reply{}
	}
	req, csr, perr := enrollwire.ParseRequest(payload)
	if req == nil || req.Token == "" {
		r.log.Warn("enrollment: request dropped", "device", topicDev, "err", perr)
		return Reply{}
	}
	tok, _, err := enrollwire.ParseToken(string(req.Token))
	if err != nil {
		r.log.Warn("enrollment: request without a token", "device", topicDev, "err", err)
		return Reply{}
	}
	reject := func(code, msg string) Reply {
		r.log.Warn("enrollment rejected", "device", topicDev, "code", code, "reason", msg)
		b, err := enrollwire.Seal(tok, enrollwire.Rejected{V: enrollwire.Version, ID: req.ID, Device: topicDev, Code: code, Message: msg})
		if err != nil {
			return Reply{}
		}
		return Reply{Topic: enrollwire.RejectedTopic(r.o.Prefix, topicDev), Payload: b}
	}
	switch {
	case errors.Is(perr, enrollwire.ErrWrongDevice):
		return reject(enrollwire.CodeWrongDevice, perr.Error())
	case perr != nil:
		return reject(enrollwire.CodeBadCSR, perr.Error())
	case req.Device != topicDev:
		return reject(enrollwire.CodeWrongDevice, fmt.Sprintf("request for %q on the topic of %q", req.Device, topicDev))
	}
	now := r.o.Now()
	// The token first: the CA signs nothing for a request whose token is
	// not valid (an unauthenticated caller must not get the device CA to
	// sign, even a certificate it never sees). Spent here, it stays spent
	// if signing fails: staff mint a new one, as for a failed record.
	if err := r.o.Registry.UseToken(ctx, tok.Hash(), req.Device, now); err != nil {
		switch {
		case errors.Is(err, hubstore.ErrTokenUnknown), errors.Is(err, hubstore.ErrTokenDevice):
			return reject(enrollwire.CodeTokenInvalid, "the token is not valid for this device")
		case errors.Is(err, hubstore.ErrTokenUsed):
			return reject(enrollwire.CodeTokenUsed, "the token was used already: ask for a new one")
		case errors.Is(err, hubstore.ErrTokenExpired):
			return reject(enrollwire.CodeTokenExpired, "the token expired: ask for a new one")
		}
		r.log.Error("enrollment: registry", "device", req.Device, "err", err)
		return Reply{Retry: true}
	}
	cert, err := r.o.CA.Issue(csr, req.Device, r.o.Validity, now)
	if err != nil {
		r.log.Error("enrollment: issue", "device", req.Device, "err", err)
		return reject(enrollwire.CodeInternal, "the hub could not sign the certificate: ask for a new token")
	}
	dc := hubstore.DeviceCert{Fingerprint: txreport.Fingerprint(cert), Serial: deviceca.SerialHex(cert), Device: req.Device,
		NotAfter: cert.NotAfter.UTC(), Issued: now.UTC(), DER: cert.Raw}
	if err := r.o.Registry.PutCert(ctx, dc); err != nil {
		// The token is spent and the certificate unknown to every hub:
		// staff mint a new token.
		r.log.Error("enrollment: record certificate", "device", req.Device, "err", err)
		return reject(enrollwire.CodeInternal, "the hub could not record the certificate: ask for a new token")
	}
	r.log.Info("device enrolled", "device", req.Device, "serial", dc.Serial, "not_after", dc.NotAfter)
	// Enrolled again: what the device held before is revoked (a kiosk
	// re-enrolled after a loss or a tamper must not leave a working old
	// key). A failure is logged, not answered: the token is spent and the
	// new certificate recorded; staff can revoke the serials by hand.
	if serials, err := r.revokeBefore(ctx, req.Device, dc, "superseded by a new enrollment"); err != nil {
		r.log.Error("enrollment: earlier certificates not revoked: revoke them with kioskctl provision revoke --serial", "device", req.Device, "err", err)
	} else if len(serials) > 0 {
		r.log.Warn("enrollment: earlier certificates revoked", "device", req.Device, "serials", serials)
	}
	b, err := enrollwire.Seal(tok, enrollwire.Accepted{V: enrollwire.Version, ID: req.ID, Device: req.Device,
		Chain: r.o.CA.ChainPEM(cert), Root: r.o.CA.RootPEM(), BrokerCA: r.o.BrokerCA, AuthCert: r.o.AuthCert, OpsCert: r.o.OpsCert,
		TrustBundle: r.o.TrustBundle, NotAfter: cert.NotAfter.UTC()})
	if err != nil {
		return Reply{}
	}
	return Reply{Topic: enrollwire.AcceptedTopic(r.o.Prefix, req.Device), Payload: b}
}

// MintToken makes a token for device valid for ttl and stores its hash.
func MintToken(ctx context.Context, reg hubstore.Registry, device string, ttl time.Duration, now time.Time) (enrollwire.Token, error) {
	if ttl <= 0 || ttl > 7*24*time.Hour {
		return "", fmt.Errorf("token lifetime %s: must be between 0 and 7 days", ttl)
	}
	tok, err := enrollwire.NewToken(device)
	if err != nil {
		return "", err
	}
	if err := reg.PutToken(ctx, hubstore.Token{Hash: tok.Hash(), Device: device, Created: now.UTC(), Expires: now.Add(ttl).UTC()}); err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return tok, nil
}

// RevokeDevice revokes every certificate issued to device.
func RevokeDevice(ctx context.Context, reg hubstore.Registry, device, reason string, now time.Time) ([]string, error) {
	certs, err := reg.DeviceCerts(ctx, device)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate for device %q", hubstore.ErrNotFound, device)
	}
	var serials []string
	for _, c := range certs {
		if err := reg.Revoke(ctx, hubstore.Revocation{Serial: c.Serial, Device: device, Reason: reason, Revoked: now.UTC()}); err != nil {
			return serials, err
		}
		serials = append(serials, c.Serial)
	}
	return serials, nil
}

// ParseSerial reads a certificate serial as staff may type it ("7A3F",
// "0x7a3f", "7a:3f", zero-padded) into the form the hub looks up:
// deviceca.SerialHex, lowercase hex without leading zeros.
func ParseSerial(s string) (string, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	n, ok := new(big.Int).SetString(t, 16)
	if t == "" || !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q is not a positive hexadecimal number", s)
	}
	return n.Text(16), nil
}

// RevokeSerial revokes one certificate by serial; the serial must be one
// the device CA issued (an unknown one is ErrNotFound, so a typo is not
// reported as a revocation). It returns the certificate revoked.
func RevokeSerial(ctx context.Context, reg hubstore.Registry, serial, reason string, now time.Time) (hubstore.DeviceCert, error) {
	hex, err := ParseSerial(serial)
	if err != nil {
		return hubstore.DeviceCert{}, err
	}
	c, err := reg.CertBySerial(ctx, hex)
	if errors.Is(err, hubstore.ErrNotFound) {
		return c, fmt.Errorf("%w: no certificate with serial %s was issued by this hub's device CA", hubstore.ErrNotFound, hex)
	}
	if err != nil {
		return c, err
	}
	return c, reg.Revoke(ctx, hubstore.Revocation{Serial: c.Serial, Device: c.Device, Reason: reason, Revoked: now.UTC()})
}

// RenewFilter is the subscription of every kiosk's renewal requests.
func (r *Registrar) RenewFilter() string { return r.o.Prefix + "/+/" + enrollwire.TopicRenew }

// HandleRenew answers a renewal request from device (the topic's
// device). It is answered only when sealed by that device's current,
// trusted certificate, and renewed only inside the renewal window; the
// CSR takes the enrollment's checks and issuing path. A request that
// does not verify is dropped (it cannot be answered to anyone).
func (r *Registrar) HandleRenew(ctx context.Context, device string, payload []byte) Reply {
	if r.o.Keyring == nil || r.o.Signer == nil {
		return Reply{}
	}
	var req enrollwire.RenewRequest
	dev, err := r.o.Keyring.Open(payload, &req)
	if err == nil && (dev.ID != device || req.Device != device) {
		err = fmt.Errorf("%w: topic %q, request %q, certificate %q", txreport.ErrWrongDevice, device, req.Device, dev.ID)
	}
	if err != nil {
		r.log.Warn("renewal dropped", "device", device, "err", err)
		return Reply{}
	}
	topic := r.o.Prefix + "/" + device + "/" + enrollwire.TopicRenewed
	answer := func(a enrollwire.RenewAnswer) Reply {
		a.V, a.ID, a.Device = enrollwire.Version, req.ID, device
		b, err := r.o.Signer.Seal(a)
		if err != nil {
			r.log.Error("renewal answer not sealed", "err", err)
			return Reply{}
		}
		return Reply{Topic: topic, Payload: b}
	}
	reject := func(code, msg string) Reply {
		r.log.Warn("renewal rejected", "device", device, "code", code, "reason", msg)
		return answer(enrollwire.RenewAnswer{Status: "rejected", Code: code, Message: msg})
	}
	csr, err := req.Check()
	switch {
	case errors.Is(err, enrollwire.ErrWrongDevice):
		return reject(enrollwire.CodeWrongDevice, err.Error())
	case err != nil:
		return reject(enrollwire.CodeBadCSR, err.Error())
	}
	now := r.o.Now()
	if now.After(req.Expires) || req.Expires.Sub(now) > enrollwire.MaxRenewRequestLife {
		return reject(enrollwire.CodeRequestExpired, fmt.Sprintf("the request expires %s; the hub's time is %s", req.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	// Only the device's newest certificate renews: one it replaced (by
	// renewal or enrollment) cannot mint a fresh one.
	certs, err := r.o.Registry.DeviceCerts(ctx, device)
	if err != nil {
		r.log.Error("renewal: registry", "device", device, "err", err)
		return Reply{Retry: true}
	}
	if len(certs) == 0 || certs[len(certs)-1].Fingerprint != txreport.Fingerprint(dev.Cert) {
		return reject(enrollwire.CodeSuperseded, "sealed by a certificate that is not this device's newest")
	}
	if left := dev.Cert.NotAfter.Sub(now); left > enrollwire.RenewWindow {
		early := errors.New("no rotate_certificate job named")
		if req.Job != "" {
			early = errors.New("this hub runs no fleet jobs")
			if r.o.Rotation != nil {
				early = r.o.Rotation(ctx, device, req.Job)
			}
		}
		if early != nil {
			return reject(enrollwire.CodeNotDue, fmt.Sprintf("the certificate has %d days left; renewal opens at %d (or for an operator's rotate_certificate job: %v)",
				int(left.Hours()/24), int(enrollwire.RenewWindow.Hours()/24), early))
		}
		r.log.Info("early renewal for a rotate_certificate job", "device", device, "job", req.Job)
	}
	cert, err := r.o.CA.Issue(csr, device, r.o.Validity, now)
	if err != nil {
		r.log.Error("renewal: issue", "device", device, "err", err)
		return reject(enrollwire.CodeInternal, "the hub could not sign the certificate")
	}
	dc := hubstore.DeviceCert{Fingerprint: txreport.Fingerprint(cert), Serial: deviceca.SerialHex(cert), Device: device,
		NotAfter: cert.NotAfter.UTC(), Issued: now.UTC(), DER: cert.Raw}
	if err := r.o.Registry.PutCert(ctx, dc); err != nil {
		r.log.Error("renewal: record certificate", "device", device, "err", err)
		return Reply{Retry: true}
	}
	// The old certificate stays valid (and in the registry): reports it
	// signed before the switch still verify.
	r.log.Info("device certificate renewed", "device", device, "serial", dc.Serial, "not_after", dc.NotAfter)
	return answer(enrollwire.RenewAnswer{Status: "accepted", Chain: [][]byte{cert.Raw, r.o.CA.Issuing.Raw}, NotAfter: cert.NotAfter.UTC()})
}

// revokeBefore revokes the device's certificates issued before keep (and
// any other than keep issued at the same time), keep itself not.
func (r *Registrar) revokeBefore(ctx context.Context, device string, keep hubstore.DeviceCert, reason string) ([]string, error) {
	certs, err := r.o.Registry.DeviceCerts(ctx, device)
	if err != nil {
		return nil, err
	}
	var serials []string
	for _, c := range certs {
		if c.Fingerprint == keep.Fingerprint || c.Issued.After(keep.Issued) {
			continue
		}
		if err := r.o.Registry.Revoke(ctx, hubstore.Revocation{Serial: c.Serial, Device: device, Reason: reason, Revoked: r.o.Now().UTC()}); err != nil {
			return serials, err
		}
		serials = append(serials, c.Serial)
	}
	return serials, nil
}

// Used is told that device used the certificate fp (a verified report).
// The first use of a device's newest certificate revokes the ones it
// superseded: the renewal's grace period lasts until the kiosk has
// switched, and reports decided before still verify (devtrust.ResolveAt).
func (r *Registrar) Used(ctx context.Context, device, fp string) error {
	r.mu.Lock()
	same := r.inUse[device] == fp
	r.mu.Unlock()
	if same {
		return nil
	}
	certs, err := r.o.Registry.DeviceCerts(ctx, device)
	if err != nil {
		return err
	}
	if len(certs) == 0 || certs[len(certs)-1].Fingerprint != fp {
		return nil // not the newest (or not from the device CA): nothing to retire
	}
	newest := certs[len(certs)-1]
	revs, err := r.o.Registry.Revocations(ctx)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, rv := range revs {
		done[rv.Serial] = true
	}
	var serials []string
	for _, c := range certs[:len(certs)-1] {
		if done[c.Serial] || c.Issued.After(newest.Issued) {
			continue
		}
		if err := r.o.Registry.Revoke(ctx, hubstore.Revocation{Serial: c.Serial, Device: device, Reason: "superseded by renewal", Revoked: r.o.Now().UTC()}); err != nil {
			return err
		}
		serials = append(serials, c.Serial)
	}
	if len(serials) > 0 {
		r.log.Info("superseded certificates revoked on the first use of the newest", "device", device, "serials", serials)
	}
	r.mu.Lock()
	r.inUse[device] = fp
	r.mu.Unlock()
	return nil
}

// TamperAlarm revokes the certificate that signed a device's verified
// tamper alarm and every earlier one: the key may be in other hands now.
// Certificates issued after it (the kiosk enrolled again before the
// alarm arrived) stay.
func (r *Registrar) TamperAlarm(ctx context.Context, device, fingerprint string) error {
	c, err := r.o.Registry.CertByFingerprint(ctx, fingerprint)
	if errors.Is(err, hubstore.ErrNotFound) {
		return nil // not issued by the device CA (a pinned development key)
	}
	if err != nil {
		return err
	}
	serials, err := r.revokeBefore(ctx, device, c, "tamper alarm")
	if err != nil {
		return err
	}
	if err := r.o.Registry.Revoke(ctx, hubstore.Revocation{Serial: c.Serial, Device: device, Reason: "tamper alarm", Revoked: r.o.Now().UTC()}); err != nil {
		return err
	}
	r.log.Warn("tamper alarm: certificates revoked", "device", device, "serials", append(serials, c.Serial))
	return nil
}

// Decommission revokes every certificate of a device that reported its
// decommissioning (a verified event report).
func (r *Registrar) Decommission(ctx context.Context, device string) error {
	serials, err := RevokeDevice(ctx, r.o.Registry, device, "decommissioned", r.o.Now())
	if errors.Is(err, hubstore.ErrNotFound) {
		return nil // nothing the device CA issued (a pinned development key)
	}
	if err != nil {
		return err
	}
	r.log.Warn("device decommissioned: certificates revoked", "device", device, "serials", serials)
	return nil
}

// SignOffline signs a CSR brought from a kiosk without a link (PEM) into
// a bundle for it, after checking that it is for device (staff say which
// kiosk they expect): the certificate is recorded like an online one.
func (r *Registrar) SignOffline(ctx context.Context, csrPEM []byte, device string) ([]byte, error) {
	if len(csrPEM) > enrollwire.MaxRequest {
		return nil, fmt.Errorf("%w: CSR file of %d bytes (max %d)", enrollwire.ErrMalformed, len(csrPEM), enrollwire.MaxRequest)
	}
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE REQUEST", enrollwire.ErrMalformed)
	}
	if !enrollwire.ValidDevice(device) {
		return nil, fmt.Errorf("device id %q", device)
	}
	csr, err := enrollwire.ParseCSR(blk.Bytes, device)
	if err != nil {
		return nil, err
	}
	now := r.o.Now()
	cert, err := r.o.CA.Issue(csr, device, r.o.Validity, now)
	if err != nil {
		return nil, err
	}
	if err := r.o.Registry.PutCert(ctx, hubstore.DeviceCert{Fingerprint: txreport.Fingerprint(cert), Serial: deviceca.SerialHex(cert),
		Device: device, NotAfter: cert.NotAfter.UTC(), Issued: now.UTC(), DER: cert.Raw}); err != nil {
		return nil, fmt.Errorf("record certificate: %w", err)
	}
	acc, err := json.Marshal(enrollwire.Accepted{V: enrollwire.Version, ID: "offline-" + enrollwire.NewRequestID(), Device: device,
		Chain: r.o.CA.ChainPEM(cert), Root: r.o.CA.RootPEM(), BrokerCA: r.o.BrokerCA, AuthCert: r.o.AuthCert, OpsCert: r.o.OpsCert,
		TrustBundle: r.o.TrustBundle, NotAfter: cert.NotAfter.UTC()})
	if err != nil {
		return nil, err
	}
	sig, err := r.o.CA.SignBlob(acc)
	if err != nil {
		return nil, fmt.Errorf("sign bundle: %w", err)
	}
	r.log.Info("device enrolled offline", "device", device, "serial", deviceca.SerialHex(cert))
	// Compact: the accepted bytes must reach the kiosk exactly as signed.
	return json.Marshal(enrollwire.Bundle{V: enrollwire.Version, Accepted: acc, Alg: enrollwire.BundleAlg, Sig: sig})
}

// RootFingerprint is the device CA root's SHA-256 (for offline imports).
func (r *Registrar) RootFingerprint() string { return r.o.CA.RootFingerprint() }
