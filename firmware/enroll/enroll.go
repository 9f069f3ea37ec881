// Package enroll is the kiosk's side of enrollment by claim
// (docs/enrollment.md): with a one-time token from bank staff it creates
// the device key (in the TPM or a 0600 file), sends a CSR to the hub over
// MQTT and stores what the hub answers: the certificate chain, the device
// CA root, the brokers' CA, the hub's authorization certificate and the
// initial trust bundle.
package enroll

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/enrollwire"
)

// File names in the identity directory.
const (
	FileChain       = "device.crt"         // device certificate then issuing CA
	FileRoot        = "device-root.pem"    // the bank device CA root
	FileBrokerCA    = "broker-ca.pem"      // hub.ca_file
	FileAuthCert    = "hub-auth.pem"       // hub.auth_cert
	FileOpsCert     = "hub-operations.pem" // hub.operations_cert
	FileTrustBundle = "trust-bundle.pem"   // initial trust bundle
	FileIdentity    = "identity.json"      // Identity
)

// Identity is what identity.json records about the enrollment.
type Identity struct {
	Device     string    `json:"device"`
	Serial     string    `json:"serial"`
	NotAfter   time.Time `json:"not_after"`
	KeyStorage string    `json:"key_storage"`
	Enrolled   time.Time `json:"enrolled"`
}

// Options configure Enroll.
type Options struct {
	Broker string      // the hub's broker: ssl://, mqtts://, wss:// (tcp:// only in tests and simulation)
	TLS    *tls.Config // server authentication during enrollment; nil = system roots
	Token  string
	Dir    string // identity directory
	Keys   devicekey.Store
	Prefix string        // topic prefix (default kiosk/v1)
	Wait   time.Duration // for the answer (default 30 s)
	Now    func() time.Time
	Logger *slog.Logger
}

// RejectedError is the hub's refusal.
type RejectedError struct {
	Code    string // enrollwire.Code*
	Message string
}

func (e *RejectedError) Error() string { return "enrollment rejected: " + e.Code + ": " + e.Message }

// ErrNoAnswer: nothing sealed with the token came back in time.
var ErrNoAnswer = errors.New("enroll: no answer from the hub")

// Enroll runs the whole flow and returns the stored identity.
func Enroll(ctx context.Context, o Options) (Identity, error) {
	tok, device, err := enrollwire.ParseToken(o.Token)
	if err != nil {
		return Identity{}, err
	}
	if o.Keys == nil || o.Dir == "" || o.Broker == "" {
		return Identity{}, errors.New("enroll: broker, identity directory and key store are required")
	}
	if o.Prefix == "" {
		o.Prefix = "kiosk/v1"
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

	answers := make(chan mqtt.Message, 16)
	mo := mqtt.NewClientOptions().AddBroker(o.Broker).SetClientID(device).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetOrderMatters(false)
	if o.TLS != nil {
		mo.SetTLSConfig(o.TLS)
	}
	c := mqtt.NewClient(mo)
	if err := wait(ctx, c.Connect(), "connect to "+o.Broker); err != nil {
		return Identity{}, err
	}
	defer c.Disconnect(250)
	// Subscribe before publishing (the AWS convention): the answer cannot
	// overtake the subscription.
	onAnswer := func(_ mqtt.Client, m mqtt.Message) {
		select {
		case answers <- m:
		default: // a flood of forgeries must not block paho's router
		}
	}
	subs := map[string]byte{enrollwire.AcceptedTopic(o.Prefix, device): 1, enrollwire.RejectedTopic(o.Prefix, device): 1}
	if err := wait(ctx, c.SubscribeMultiple(subs, onAnswer), "subscribe"); err != nil {
		return Identity{}, err
	}

	// The new key waits at the pending slot: the current key (a kiosk
	// enrolled before) stays until a verified answer for the new one.
	pk, ok := o.Keys.(PendingKeys)
	if !ok {
		return Identity{}, errors.New("enroll: this key storage cannot hold a pending key")
	}
	key, commit, discard, err := pk.CreatePending(ctx)
	if err != nil {
		return Identity{}, err
	}
	committed := false
	defer func() {
		if !committed {
			_ = discard()
		}
	}()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: device}}, key)
	if err != nil {
		return Identity{}, fmt.Errorf("enroll: csr: %w", err)
	}
	req := enrollwire.Request{V: enrollwire.Version, ID: enrollwire.NewRequestID(), Device: device, Token: tok, CSR: csr}
	b, err := json.Marshal(req)
	if err != nil {
		return Identity{}, err
	}
	if err := wait(ctx, c.Publish(enrollwire.RequestTopic(o.Prefix, device), 1, false, b), "publish request"); err != nil {
		return Identity{}, err
	}
	log.Info("enrollment requested", "device", device, "broker", o.Broker)

	timer := time.NewTimer(o.Wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return Identity{}, ctx.Err()
		case <-timer.C:
			return Identity{}, fmt.Errorf("%w in %s", ErrNoAnswer, o.Wait)
		case m := <-answers:
			if m.Topic() == enrollwire.RejectedTopic(o.Prefix, device) {
				var r enrollwire.Rejected
				if err := enrollwire.Open(tok, m.Payload(), &r); err != nil || r.ID != req.ID {
					log.Warn("enrollment: ignored an answer that is not ours", "err", err)
					continue
				}
				return Identity{}, &RejectedError{Code: r.Code, Message: r.Message}
			}
			var a enrollwire.Accepted
			if err := enrollwire.Open(tok, m.Payload(), &a); err != nil || a.ID != req.ID {
				log.Warn("enrollment: ignored an answer that is not ours", "err", err)
				continue
			}
			id, err := store(o, device, key, &a, commit)
			committed = err == nil
			return id, err
		}
	}
}

func wait(ctx context.Context, t mqtt.Token, what string) error {
	select {
	case <-t.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("enroll: %s: no answer in 15 s", what)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("enroll: %s: %w", what, err)
	}
	return nil
}

// store checks the answer against the key, commits the key (commit may
// be nil: the key is in place already), then writes the identity.
func store(o Options, device string, key crypto.Signer, a *enrollwire.Accepted, commit func() error) (Identity, error) {
	chain, err := parseCerts(a.Chain)
	if err != nil {
		return Identity{}, fmt.Errorf("enroll: chain: %w", err)
	}
	roots, err := parseCerts(a.Root)
	if err != nil {
		return Identity{}, fmt.Errorf("enroll: root: %w", err)
	}
	if _, err := parseCerts(a.AuthCert); err != nil {
		return Identity{}, fmt.Errorf("enroll: hub authorization certificate: %w", err)
	}
	if a.OpsCert != "" {
		if _, err := parseCerts(a.OpsCert); err != nil {
			return Identity{}, fmt.Errorf("enroll: hub operations certificate: %w", err)
		}
		if a.OpsCert == a.AuthCert {
			return Identity{}, errors.New("enroll: the hub's operations certificate is its authorization certificate")
		}
	}
	if a.BrokerCA != "" {
		if _, err := parseCerts(a.BrokerCA); err != nil {
			return Identity{}, fmt.Errorf("enroll: broker CA: %w", err)
		}
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return Identity{}, errors.New("enroll: the certificate is not for this device's key")
	}
	if leaf.Subject.CommonName != device || a.Device != device {
		return Identity{}, fmt.Errorf("enroll: certificate for %q, this device is %q", leaf.Subject.CommonName, device)
	}
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		rp.AddCert(c)
	}
	for _, c := range chain[1:] {
		ip.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: o.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, fmt.Errorf("enroll: certificate chain: %w", err)
	}
	id := Identity{Device: device, Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter.UTC(),
		KeyStorage: o.Keys.Kind(), Enrolled: o.Now().UTC()}
	idJSON, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return Identity{}, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return Identity{}, fmt.Errorf("enroll: %w", err)
	}
	if commit != nil {
		if err := commit(); err != nil {
			return Identity{}, fmt.Errorf("enroll: commit the new key: %w", err)
		}
	}
	// identity.json last: its presence means the rest is complete.
	for _, w := range []struct{ name, data string }{
		{FileChain, a.Chain}, {FileRoot, a.Root}, {FileBrokerCA, a.BrokerCA}, {FileAuthCert, a.AuthCert},
		{FileTrustBundle, a.TrustBundle}, {FileOpsCert, a.OpsCert}, {FileIdentity, string(idJSON) + "\n"},
	} {
		if w.name == FileOpsCert && w.data == "" {
			// The hub runs no fleet jobs: no file, so a production
			// kioskd names the missing hub.operations_cert.
			_ = os.Remove(filepath.Join(o.Dir, w.name))
			continue
		}
		if err := WriteFile(filepath.Join(o.Dir, w.name), []byte(w.data), 0o644); err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

func parseCerts(s string) ([]*x509.Certificate, error) {
	return enrollwire.ParseCertificates([]byte(s))
}

// WriteFile replaces path atomically (temporary file, sync, rename).
func WriteFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadIdentity reads identity.json of dir.
func LoadIdentity(dir string) (Identity, error) {
	var id Identity
	b, err := os.ReadFile(filepath.Join(dir, FileIdentity))
	if err != nil {
		return id, fmt.Errorf("identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("identity %s: %w", dir, err)
	}
	return id, nil
}

// TLSConfig is the kiosk's mutual-TLS configuration from an identity
// directory: the chain and key as client certificate, the brokers' CA
// (system roots when the hub sent none).
func TLSConfig(dir string, key crypto.Signer) (*tls.Config, error) {
	chainPEM, err := os.ReadFile(filepath.Join(dir, FileChain))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	chain, err := parseCerts(string(chainPEM))
	if err != nil {
		return nil, fmt.Errorf("identity chain: %w", err)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if ca, err := os.ReadFile(filepath.Join(dir, FileBrokerCA)); err == nil && len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("identity broker CA: no PEM certificate")
		}
		c.RootCAs = pool
	}
	return c, nil
}
