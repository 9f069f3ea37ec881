package deviceca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInitIssueVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f, err := Init(dir, "Test Bank", now)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{f.RootKey: 0o600, f.IssuingKey: 0o600, f.RootCert: 0o644, f.IssuingCert: 0o644} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v, want %04o", p, st, err, mode)
		}
	}
	if _, err := Init(dir, "Test Bank", now); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	ca, err := Load(f.RootCert, f.IssuingCert, f.IssuingKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f.RootCert, f.IssuingCert, f.RootKey); err == nil {
		t.Fatal("loaded the issuing certificate with the root key")
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "k1"}}, k)
	csr, _ := x509.ParseCertificateRequest(der)
	cert, err := ca.Issue(csr, "k1", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "k1" || !cert.NotAfter.Equal(now.Add(365*24*time.Hour)) || cert.IsCA {
		t.Fatalf("issued %+v", cert.Subject)
	}
	v := ca.Verifier()
	if id, err := v.Verify(cert, now.Add(time.Hour)); err != nil || id != "k1" {
		t.Fatalf("verify: %q %v", id, err)
	}
	if _, err := v.Verify(cert, now.Add(366*24*time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("expired certificate: %v", err)
	}
	// Another CA's certificate does not chain.
	other, err := Init(filepath.Join(t.TempDir(), "other"), "Other", now)
	if err != nil {
		t.Fatal(err)
	}
	oca, _ := Load(other.RootCert, other.IssuingCert, other.IssuingKey)
	foreign, _ := oca.Issue(csr, "k1", time.Hour*24, now)
	if _, err := v.Verify(foreign, now.Add(time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("foreign certificate: %v", err)
	}
	// The issuing CA itself is not a device.
	if _, err := v.Verify(ca.Issuing, now.Add(time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("CA certificate as device: %v", err)
	}
	// Validity never outlives the issuing CA.
	long, _ := ca.Issue(csr, "k1", 50*365*24*time.Hour, now)
	if long.NotAfter.After(ca.Issuing.NotAfter) {
		t.Fatal("device certificate outlives its issuer")
	}
}
