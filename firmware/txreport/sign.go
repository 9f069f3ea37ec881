package txreport

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Alg is the only signature algorithm: ECDSA P-256 with SHA-256, the
// signature ASN.1 DER encoded (RFC 5480 / SEC 1 §4.1), as JWS names it.
const Alg = "ES256"

// MaxEnvelope bounds what a hub reads from the network.
const MaxEnvelope = 64 << 10

// Envelope is what travels on <p>/<d>/tx. Report is the canonical
// encoding of the report (a JSON object); Sig signs SHA-256 of exactly
// Canonical(Report); Cert is the lowercase hex SHA-256 of the signing
// certificate's DER, so the hub finds the key without trusting anything
// else in the message.
type Envelope struct {
	Report json.RawMessage `json:"report"`
	Alg    string          `json:"alg"`
	Sig    string          `json:"sig"`  // base64 (standard, padded) of the DER signature
	Cert   string          `json:"cert"` // certificate fingerprint
}

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// Signer signs reports with the device key. The key can be replaced (a
// renewed certificate) or withdrawn (tamper, decommission) while the
// signer is shared: what was signed before keeps its own fingerprint.
type Signer struct {
	mu   sync.RWMutex
	key  crypto.Signer // nil once Withdrawn
	cert *x509.Certificate
	fp   string
}

// ErrWithdrawn is returned by a signer whose key was withdrawn.
var ErrWithdrawn = errors.New("txreport: device key withdrawn")

// NewSigner pairs a P-256 key with its certificate (which must hold the
// matching public key). The key may live in a TPM (crypto.Signer).
func NewSigner(key crypto.Signer, cert *x509.Certificate) (*Signer, error) {
	if err := checkPair(key, cert); err != nil {
		return nil, err
	}
	return &Signer{key: key, cert: cert, fp: Fingerprint(cert)}, nil
}

// Replace makes s sign with a new key and certificate from now on (a
// renewal). A withdrawn signer stays withdrawn (ErrWithdrawn): a renewal
// that completes after a tamper must not bring a key back; only Restore
// re-arms it.
func (s *Signer) Replace(key crypto.Signer, cert *x509.Certificate) error {
	if err := checkPair(key, cert); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == nil {
		return ErrWithdrawn
	}
	s.key, s.cert, s.fp = key, cert, Fingerprint(cert)
	return nil
}

// Restore re-arms a withdrawn signer with a new key and certificate:
// staff putting a re-enrolled kiosk back in service.
func (s *Signer) Restore(key crypto.Signer, cert *x509.Certificate) error {
	if err := checkPair(key, cert); err != nil {
		return err
	}
	s.mu.Lock()
	s.key, s.cert, s.fp = key, cert, Fingerprint(cert)
	s.mu.Unlock()
	return nil
}

// Withdraw drops the key: every later Sign and Seal fails with
// ErrWithdrawn until Restore.
func (s *Signer) Withdraw() {
	s.mu.Lock()
	s.key = nil
	s.mu.Unlock()
}

// Withdrawn reports whether the key was withdrawn.
func (s *Signer) Withdrawn() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.key == nil
}

func checkPair(key crypto.Signer, cert *x509.Certificate) error {
	if key == nil || cert == nil {
		return errors.New("txreport: signer needs a key and a certificate")
	}
	kp, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || kp.Curve != elliptic.P256() {
		return errors.New("txreport: device key must be ECDSA P-256")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(kp) {
		return errors.New("txreport: certificate does not match the device key")
	}
	return nil
}

// LoadSigner reads a PEM private key (PKCS#8 or SEC 1) and a PEM
// certificate.
func LoadSigner(keyFile, certFile string) (*Signer, error) {
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("device key %s: no PEM block", keyFile)
	}
	var key *ecdsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("device key %s: not an ECDSA key", keyFile)
		}
		key = ek
	} else if key, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
		return nil, fmt.Errorf("device key %s: %w", keyFile, err)
	}
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, err
	}
	s, err := NewSigner(key, certs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return s, nil
}

// Fingerprint is the signing certificate's fingerprint.
func (s *Signer) Fingerprint() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fp
}

// DeviceID is the certificate's subject common name.
func (s *Signer) DeviceID() string { return s.Certificate().Subject.CommonName }

// Sign validates and signs r, returning the envelope bytes.
func (s *Signer) Sign(r *Report) ([]byte, error) {
	body, err := r.Encode()
	if err != nil {
		return nil, err
	}
	sig, fp, err := s.sign(body)
	if err != nil {
		return nil, fmt.Errorf("txreport: sign: %w", err)
	}
	return json.Marshal(Envelope{Report: body, Alg: Alg, Sig: sig, Cert: fp})
}

// sign returns the base64 DER signature of SHA-256(body) and the
// fingerprint of the certificate of the key that made it.
func (s *Signer) sign(body []byte) (sig, fp string, err error) {
	s.mu.RLock()
	key, fp := s.key, s.fp
	s.mu.RUnlock()
	if key == nil {
		return "", "", ErrWithdrawn
	}
	h := sha256.Sum256(body)
	// An ECDSA crypto.Signer returns the ASN.1 DER form (SEC 1 §4.1).
	der, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(der), fp, nil
}

// Errors a verifier returns; the hub does not acknowledge such messages.
var (
	ErrMalformed     = errors.New("txreport: malformed envelope")
	ErrUnknownDevice = errors.New("txreport: unknown device certificate")
	ErrBadSignature  = errors.New("txreport: signature does not verify")
	ErrWrongDevice   = errors.New("txreport: report terminal does not match its certificate")
)

// ParseEnvelope decodes an envelope without verifying it. It is the
// first thing a hub does with network input.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelope {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Alg != Alg {
		return nil, fmt.Errorf("%w: alg %q", ErrMalformed, env.Alg)
	}
	if len(env.Report) == 0 || env.Report[0] != '{' {
		return nil, fmt.Errorf("%w: report is not an object", ErrMalformed)
	}
	if len(env.Cert) != 64 {
		return nil, fmt.Errorf("%w: cert fingerprint", ErrMalformed)
	}
	return &env, nil
}

// ReportHash is the lowercase hex SHA-256 of an envelope's canonical
// report: what a hub's signed ack names (hub.TxAck.ReportSHA256). It does
// not verify the signature.
func ReportHash(envelope []byte) (string, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return "", err
	}
	body, err := Canonical(env.Report)
	if err != nil {
		return "", fmt.Errorf("%w: report: %v", ErrMalformed, err)
	}
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:]), nil
}

// Device is one known kiosk: its certificate and id (the subject CN).
type Device struct {
	ID   string
	Cert *x509.Certificate
	Key  *ecdsa.PublicKey
}

// Keyring maps certificate fingerprints to devices. Safe for concurrent use.
type Keyring struct {
	mu       sync.RWMutex
	byFP     map[string]Device
	resolver Resolver
}

// Resolver finds a device the keyring does not hold by its certificate
// fingerprint (lowercase hex): the hub's registry of certificates its
// device CA issued, checked by chain and against revocations on every
// call. It must not block for long.
type Resolver func(fp string) (Device, bool)

// SetResolver makes k ask r for fingerprints it does not hold.
func (k *Keyring) SetResolver(r Resolver) {
	k.mu.Lock()
	k.resolver = r
	k.mu.Unlock()
}

// NewKeyring returns an empty keyring.
func NewKeyring() *Keyring { return &Keyring{byFP: map[string]Device{}} }

// Add registers a device certificate (ECDSA P-256, CN = device id).
func (k *Keyring) Add(c *x509.Certificate) error {
	d, err := NewDevice(c)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.byFP[Fingerprint(c)] = d
	k.mu.Unlock()
	return nil
}

// Devices lists the device ids, sorted.
func (k *Keyring) Devices() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var ids []string
	for _, d := range k.byFP {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// LoadKeyring reads every *.pem and *.crt file in dir.
func LoadKeyring(dir string) (*Keyring, error) {
	k := NewKeyring()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("devices dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".pem") || strings.HasSuffix(e.Name(), ".crt")) {
			continue
		}
		certs, err := readCerts(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if err := k.Add(c); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
		}
	}
	return k, nil
}

// LoadKeyringFile reads the certificates of one PEM file (a bundle).
func LoadKeyringFile(path string) (*Keyring, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	k := NewKeyring()
	for _, c := range certs {
		if err := k.Add(c); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return k, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

// Verify parses an envelope from the network, checks its signature
// against the keyring and that the report's terminal is the certificate's
// device, and returns the report and the device.
func (k *Keyring) Verify(b []byte) (*Report, Device, error) {
	env, err := ParseEnvelope(b)
	if err != nil {
		return nil, Device{}, err
	}
	dev, ok := k.device(env.Cert)
	if !ok {
		return nil, Device{}, fmt.Errorf("%w: %s", ErrUnknownDevice, env.Cert)
	}
	body, err := verified(dev, env.Report, env.Sig, "report")
	if err != nil {
		return nil, dev, err
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, dev, fmt.Errorf("%w: report: %v", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, dev, err
	}
	if r.Terminal != dev.ID {
		return nil, dev, fmt.Errorf("%w: report says %q, certificate %q", ErrWrongDevice, r.Terminal, dev.ID)
	}
	return &r, dev, nil
}

// Certificate is the signing certificate.
func (s *Signer) Certificate() *x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cert
}

// device finds a signer by its certificate fingerprint.
func (k *Keyring) device(fp string) (Device, bool) {
	fp = strings.ToLower(fp)
	k.mu.RLock()
	dev, ok := k.byFP[fp]
	r := k.resolver
	k.mu.RUnlock()
	if !ok && r != nil {
		return r(fp)
	}
	return dev, ok
}

// NewDevice is the Device of a certificate (ECDSA P-256, CN = device id).
func NewDevice(c *x509.Certificate) (Device, error) {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return Device{}, fmt.Errorf("certificate %q: not an ECDSA P-256 key", c.Subject.CommonName)
	}
	if !terminalRe.MatchString(c.Subject.CommonName) {
		return Device{}, fmt.Errorf("certificate subject CN %q is not a device id", c.Subject.CommonName)
	}
	return Device{ID: c.Subject.CommonName, Cert: c, Key: pub}, nil
}

// verified checks sig (base64 DER) over the canonical form of raw with
// dev's key and returns that canonical form; what names raw in errors.
func verified(dev Device, raw json.RawMessage, sig, what string) ([]byte, error) {
	body, err := Canonical(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: sig: %v", ErrMalformed, err)
	}
	h := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(dev.Key, h[:], der) {
		return nil, fmt.Errorf("%w (device %s)", ErrBadSignature, dev.ID)
	}
	return body, nil
}
