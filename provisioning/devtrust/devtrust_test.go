package devtrust

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/hubstore"
)

// Trust by chain: an issued certificate resolves; after its revocation is
// reloaded it does not; without a current revocation list nothing does
// (fail closed); unknown and expired certificates never.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	f, err := deviceca.Init(filepath.Join(t.TempDir(), "ca"), "Test", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := deviceca.Load(f.RootCert, f.IssuingCert, f.IssuingKey)
	if err != nil {
		t.Fatal(err)
	}
	store, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(dev string, validity time.Duration, at time.Time) string {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: dev}}, k)
		csr, _ := x509.ParseCertificateRequest(der)
		c, err := ca.Issue(csr, dev, validity, at)
		if err != nil {
			t.Fatal(err)
		}
		fp := txreport.Fingerprint(c)
		if err := store.PutCert(ctx, hubstore.DeviceCert{Fingerprint: fp, Serial: deviceca.SerialHex(c), Device: dev, NotAfter: c.NotAfter, Issued: at, DER: c.Raw}); err != nil {
			t.Fatal(err)
		}
		return fp
	}
	good := issue("k1", 24*time.Hour, now)
	expired := issue("k2", 24*time.Hour, now.Add(-48*time.Hour))
	clock := now
	tr, err := New(Options{Verifier: ca.Verifier(), Registry: store, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Resolve(good); ok {
		t.Fatal("resolved before any revocation list was loaded")
	}
	if err := tr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if d, ok := tr.Resolve(good); !ok || d.ID != "k1" {
		t.Fatalf("issued certificate: %v %v", d, ok)
	}
	if _, ok := tr.Resolve(expired); ok {
		t.Fatal("an expired certificate resolved")
	}
	if _, ok := tr.Resolve("00"); ok {
		t.Fatal("an unknown fingerprint resolved")
	}
	// Revoked: refused from the next reload on.
	c, _ := store.CertByFingerprint(ctx, good)
	if err := store.Revoke(ctx, hubstore.Revocation{Serial: c.Serial, Device: "k1", Reason: "test", Revoked: now}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Resolve(good); ok || !tr.Revoked(c.Serial) {
		t.Fatal("a revoked certificate resolved")
	}
	// A stale revocation list fails closed.
	other := issue("k3", 24*time.Hour, now)
	clock = now.Add(6 * time.Second)
	if _, ok := tr.Resolve(other); ok {
		t.Fatal("resolved with a stale revocation list")
	}
	if err := tr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Resolve(other); !ok {
		t.Fatal("not resolved after a fresh reload")
	}
}
