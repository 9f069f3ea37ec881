// Package devkey creates development device keys: an ECDSA P-256 key and
// a self-signed certificate whose subject CN is the device id. Until
// production provisioning exists (keys generated on the device, CSR to
// the bank's CA) this is what signs transaction reports in development
// and tests. Never use these keys for real money.
package devkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

var deviceRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Generate makes a key and a self-signed certificate for deviceID, valid
// from now-1h for validFor.
func Generate(deviceID string, validFor time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	if !deviceRe.MatchString(deviceID) {
		return nil, nil, fmt.Errorf("device id %q: 1-64 letters, digits, '-' or '_'", deviceID)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: deviceID, Organization: []string{"kiosk development device"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return key, cert, nil
}

// Files are the paths Create wrote.
type Files struct {
	Key      string `json:"key"`       // <out>/<id>.key, PKCS#8 PEM, mode 0600
	Cert     string `json:"cert"`      // <out>/<id>.crt, PEM
	HubEntry string `json:"hub_entry"` // <devices>/<id>.pem: the certificate for the hub's devices dir
}

// ErrExists is returned rather than overwriting a key.
var ErrExists = errors.New("devkey: key file exists")

// Create writes a new key and certificate for deviceID into outDir and a
// copy of the certificate into devicesDir (default outDir/devices), the
// directory the reference hub reads with --devices.
func Create(outDir, devicesDir, deviceID string) (Files, error) {
	if devicesDir == "" {
		devicesDir = filepath.Join(outDir, "devices")
	}
	key, cert, err := Generate(deviceID, 5*365*24*time.Hour)
	if err != nil {
		return Files{}, err
	}
	f := Files{
		Key:      filepath.Join(outDir, deviceID+".key"),
		Cert:     filepath.Join(outDir, deviceID+".crt"),
		HubEntry: filepath.Join(devicesDir, deviceID+".pem"),
	}
	if _, err := os.Stat(f.Key); err == nil {
		return Files{}, fmt.Errorf("%w: %s", ErrExists, f.Key)
	}
	for _, d := range []string{outDir, devicesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Files{}, fmt.Errorf("mkdir: %w", err)
		}
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, fmt.Errorf("marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600},
		{f.Cert, certPEM, 0o644},
		{f.HubEntry, certPEM, 0o644},
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, fmt.Errorf("write %s: %w", w.path, err)
		}
	}
	return f, nil
}
