// Package deviceca is the bank's device CA: a root (kept offline once the
// issuing CA exists) and an issuing CA that the hub uses to sign device
// certificates from enrollment CSRs, and the verifier the hub checks
// device certificates with (a chain to the root, RFC 5280 §6, instead of
// pinned fingerprints).
package deviceca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"kiosk/firmware/enrollwire"
)

// File names Init writes in its directory.
const (
	RootCert    = "root.crt"
	RootKey     = "root.key"
	IssuingCert = "issuing.crt"
	IssuingKey  = "issuing.key"
)

// Lifetimes of the CA certificates.
const (
	rootLife    = 20 * 365 * 24 * time.Hour
	issuingLife = 10 * 365 * 24 * time.Hour
)

// ErrExists is returned rather than overwriting a CA.
var ErrExists = errors.New("deviceca: CA files exist")

// Files are the paths of a CA directory.
type Files struct {
	RootCert, RootKey, IssuingCert, IssuingKey string
}

// FilesIn names the files of dir.
func FilesIn(dir string) Files {
	return Files{RootCert: filepath.Join(dir, RootCert), RootKey: filepath.Join(dir, RootKey),
		IssuingCert: filepath.Join(dir, IssuingCert), IssuingKey: filepath.Join(dir, IssuingKey)}
}

// Init makes a root and an issuing CA (ECDSA P-384) named after org in
// dir. Keys are written with mode 0600; existing files are never
// overwritten.
func Init(dir, org string, now time.Time) (Files, error) {
	return InitFiles(FilesIn(dir), org, now)
}

// InitFiles is Init with each file's path given, so that the root key
// can go straight to offline storage, never beside the issuing key on the
// hub's disk. Missing directories are made with mode 0700.
func InitFiles(f Files, org string, now time.Time) (Files, error) {
	for _, p := range []string{f.RootCert, f.RootKey, f.IssuingCert, f.IssuingKey} {
		if _, err := os.Stat(p); err == nil {
			return Files{}, fmt.Errorf("%w: %s", ErrExists, p)
		}
	}
	for _, p := range []string{f.RootCert, f.RootKey, f.IssuingCert, f.IssuingKey} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return Files{}, fmt.Errorf("ca dir: %w", err)
		}
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	issKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	rootTmpl := caTemplate(pkix.Name{Organization: []string{org}, CommonName: org + " device root CA"}, now, rootLife, 1)
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return Files{}, fmt.Errorf("root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return Files{}, err
	}
	issTmpl := caTemplate(pkix.Name{Organization: []string{org}, CommonName: org + " device issuing CA"}, now, issuingLife, 0)
	issDER, err := x509.CreateCertificate(rand.Reader, issTmpl, root, &issKey.PublicKey, rootKey)
	if err != nil {
		return Files{}, fmt.Errorf("issuing certificate: %w", err)
	}
	writes := []struct {
		path string
		typ  string
		der  func() ([]byte, error)
		mode os.FileMode
	}{
		{f.RootKey, "PRIVATE KEY", func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(rootKey) }, 0o600},
		{f.IssuingKey, "PRIVATE KEY", func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(issKey) }, 0o600},
		{f.RootCert, "CERTIFICATE", func() ([]byte, error) { return rootDER, nil }, 0o644},
		{f.IssuingCert, "CERTIFICATE", func() ([]byte, error) { return issDER, nil }, 0o644},
	}
	for _, w := range writes {
		der, err := w.der()
		if err != nil {
			return Files{}, err
		}
		// O_EXCL: a file that appeared since the check is not overwritten.
		fh, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, w.mode)
		if err != nil {
			return Files{}, fmt.Errorf("write %s: %w", w.path, err)
		}
		_, err = fh.Write(pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: der}))
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return Files{}, fmt.Errorf("write %s: %w", w.path, err)
		}
	}
	return f, nil
}

func caTemplate(name pkix.Name, now time.Time, life time.Duration, pathLen int) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               name,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
	}
}

// randomSerial is a positive 127-bit serial (RFC 5280 §4.1.2.2: at most
// 20 octets, unpredictable as CA/B BR §7.1 asks).
func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

// CA is the issuing CA with its key, and the root it chains to.
type CA struct {
	Root    *x509.Certificate
	Issuing *x509.Certificate
	key     crypto.Signer
}

// Load reads the root certificate, the issuing certificate and the
// issuing key (the root key is not needed to issue).
func Load(rootCert, issuingCert, issuingKey string) (*CA, error) {
	roots, err := ReadCerts(rootCert)
	if err != nil {
		return nil, err
	}
	iss, err := ReadCerts(issuingCert)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(issuingKey)
	if err != nil {
		return nil, fmt.Errorf("issuing key: %w", err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("issuing key %s: no PEM block", issuingKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuing key %s: %w", issuingKey, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("issuing key %s: not a signing key", issuingKey)
	}
	ca := &CA{Root: roots[0], Issuing: iss[0], key: signer}
	if err := ca.Issuing.CheckSignatureFrom(ca.Root); err != nil {
		return nil, fmt.Errorf("issuing CA is not signed by the root: %w", err)
	}
	if pub, ok := ca.Issuing.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		return nil, errors.New("issuing key does not match the issuing certificate")
	}
	return ca, nil
}

// Issue signs a device certificate for the CSR's key: CN = device, client
// authentication, valid from now-5m (clock skew) for validity but not
// beyond the issuing CA.
func (ca *CA) Issue(csr *x509.CertificateRequest, device string, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	notAfter := now.Add(validity)
	if notAfter.After(ca.Issuing.NotAfter) {
		notAfter = ca.Issuing.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: device, Organization: ca.Issuing.Subject.Organization},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Issuing, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", device, err)
	}
	return x509.ParseCertificate(der)
}

// ChainPEM is cert then the issuing CA, PEM.
func (ca *CA) ChainPEM(cert *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Issuing.Raw}))
}

// RootPEM is the root certificate, PEM.
func (ca *CA) RootPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw}))
}

// Verifier checks device certificates by chain to the root.
type Verifier struct {
	roots, inters *x509.CertPool
}

// NewVerifier trusts roots; intermediates are the issuing CAs a device
// certificate may chain through.
func NewVerifier(roots, intermediates []*x509.Certificate) *Verifier {
	v := &Verifier{roots: x509.NewCertPool(), inters: x509.NewCertPool()}
	for _, c := range roots {
		v.roots.AddCert(c)
	}
	for _, c := range intermediates {
		v.inters.AddCert(c)
	}
	return v
}

// Verifier of this CA.
func (ca *CA) Verifier() *Verifier {
	return NewVerifier([]*x509.Certificate{ca.Root}, []*x509.Certificate{ca.Issuing})
}

// ErrUntrusted wraps every reason a device certificate is refused.
var ErrUntrusted = errors.New("deviceca: device certificate not trusted")

// Verify checks that cert chains to the root at now, is for client
// authentication and names a device; it returns the device id (subject CN).
func (v *Verifier) Verify(cert *x509.Certificate, now time.Time) (string, error) {
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: v.inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if cert.IsCA || cert.Subject.CommonName == "" {
		return "", fmt.Errorf("%w: not a device certificate", ErrUntrusted)
	}
	return cert.Subject.CommonName, nil
}

// ReadCerts reads every CERTIFICATE block of a PEM file.
func ReadCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	certs, err := ParsePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParsePEM parses every CERTIFICATE block; at least one is required.
func ParsePEM(b []byte) ([]*x509.Certificate, error) { return enrollwire.ParseCertificates(b) }

// SerialHex is the canonical text form of a serial: lowercase hex.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// SignBlob signs SHA-384(b) with the issuing key (ECDSA, ASN.1 DER): the
// offline enrollment bundle's signature, verified with the issuing
// certificate, itself verified by chain to a root whose fingerprint the
// kiosk is told out of band.
func (ca *CA) SignBlob(b []byte) ([]byte, error) {
	h := sha512.Sum384(b)
	return ca.key.Sign(rand.Reader, h[:], crypto.SHA384)
}

// RootFingerprint is the lowercase hex SHA-256 of the root certificate's
// DER: what staff check when they import an offline bundle.
func (ca *CA) RootFingerprint() string {
	s := sha256.Sum256(ca.Root.Raw)
	return hex.EncodeToString(s[:])
}
