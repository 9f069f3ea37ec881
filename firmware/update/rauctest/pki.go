// Package rauctest builds what a firmware update needs around kioskd, for
// tests, `make bundle` and `make demo-ota`: a release PKI (a CA and a
// signing certificate, never a device key), root file system images and
// RAUC bundles signed with it, and an A/B system on loop devices with
// RAUC's custom boot loader backend, a private system D-Bus and `rauc
// service`, plus a boot loader that picks the slot to boot from the
// backend's state as U-Boot's boot-count script does.
//
// It needs root (losetup, mount), rauc, squashfs-tools, dbus and
// e2fsprogs. Everything it attaches, mounts or starts it stops in Close,
// by device and pid, also after a failure.
package rauctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// PKI is a release CA and the signing certificate it issued, as PEM files.
type PKI struct {
	CA   string // the keyring kiosks trust (update.keyring)
	Cert string // the release signing certificate
	Key  string // its key (mode 0600)
}

// NewPKI writes a release CA and a signing certificate into dir. Each call
// makes new keys: a second PKI stands for someone else's key.
func NewPKI(dir, org string) (PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return PKI{}, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PKI{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{org}, CommonName: org + " firmware release CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return PKI{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PKI{}, err
	}
	// RAUC verifies the CMS signature with OpenSSL's S/MIME signing
	// purpose by default: digitalSignature and emailProtection; code
	// signing is added for keyrings that check that purpose.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{org}, CommonName: org + " firmware release 1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(3, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageCodeSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return PKI{}, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return PKI{}, err
	}
	p := PKI{CA: filepath.Join(dir, "release-ca.pem"), Cert: filepath.Join(dir, "release.pem"), Key: filepath.Join(dir, "release.key")}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{p.CA, "CERTIFICATE", caDER, 0o644}, {p.Cert, "CERTIFICATE", der, 0o644}, {p.Key, "PRIVATE KEY", kb, 0o600}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return PKI{}, fmt.Errorf("rauctest: %w", err)
		}
	}
	return p, nil
}
