package registrar_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/devicekey/swtpmtest"
	"kiosk/firmware/enroll"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/registrar"
)

// Rotation: a certificate with less than 30 days left renews through the
// hub (request sealed by the current key, the CSR through the enrollment
// path, answer sealed by the hub); the MQTT link reconnects with the new
// certificate without a restart; a report signed under the old key before
// the switch and one signed under the new key both reach the hub. The
// thresholds are checked on an injected clock.
func TestRotation(t *testing.T) {
	f := newFixture(t, func(o *registrar.Options) { o.Validity = 20 * 24 * time.Hour })
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		rotation(t, f, "kiosk-rot", dir, &devicekey.File{Path: filepath.Join(dir, "device.key")})
	})
	t.Run("tpm", func(t *testing.T) {
		sw := swtpmtest.Start(t)
		tp, err := devicekey.OpenTPM("unix:" + sw.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close()
		rotation(t, f, "kiosk-rot-tpm", t.TempDir(), tp)
	})
}

type rotatingStore interface {
	devicekey.Store
	enroll.PendingKeys
}

func rotation(t *testing.T, f *fixture, device, dir string, keys rotatingStore) {
	if _, err := f.enrollWith(t, f.token(t, device, 30*time.Minute, time.Now()), dir, keys); err != nil {
		t.Fatal(err)
	}
	key, err := keys.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	chainFile := filepath.Join(dir, enroll.FileChain)
	chain, _ := deviceca.ReadCerts(chainFile)
	signer, err := txreport.NewSigner(key, chain[0])
	if err != nil {
		t.Fatal(err)
	}
	hubKeys, err := txreport.LoadKeyringFile(filepath.Join(dir, enroll.FileAuthCert))
	if err != nil {
		t.Fatal(err)
	}

	// The kiosk's link reads its client certificate at each connection.
	var mu sync.Mutex
	current := key
	var served []string
	baseTLS, err := hub.TLSConfig(filepath.Join(dir, enroll.FileBrokerCA), "", "")
	if err != nil {
		t.Fatal(err)
	}
	baseTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		mu.Lock()
		k := current
		mu.Unlock()
		c, err := hub.TLSConfigSigner("", chainFile, k)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		served = append(served, c.Certificates[0].Leaf.SerialNumber.Text(16))
		mu.Unlock()
		return &c.Certificates[0], nil
	}
	link, err := hub.New(hub.Options{Brokers: []string{f.broker.TLSURL()}, DeviceID: device, TopicPrefix: "kiosk/v1", TLS: baseTLS,
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rn, err := enroll.NewRenewer(enroll.RenewerOptions{Hub: link, Signer: signer, HubKeys: hubKeys, Keys: keys, Chain: chainFile,
		OnRenewed: func(k crypto.Signer, _ *x509.Certificate) {
			mu.Lock()
			current = k
			mu.Unlock()
			link.Reconnect("certificate renewed")
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = link.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 10*time.Second, "kiosk link up", func() bool { return link.Status().Connected })

	// Thresholds on an injected clock.
	notAfter := signer.Certificate().NotAfter
	for _, c := range []struct {
		at    time.Time
		due   bool
		state string
	}{
		{notAfter.Add(-40 * 24 * time.Hour), false, "ok"},
		{notAfter.Add(-20 * 24 * time.Hour), true, "ok"},
		{notAfter.Add(-13 * 24 * time.Hour), true, "degraded"},
		{notAfter.Add(time.Hour), true, "expired"},
	} {
		r, _ := enroll.NewRenewer(enroll.RenewerOptions{Hub: link, Signer: signer, Chain: chainFile, Now: func() time.Time { return c.at }})
		if r.Due() != c.due || r.Status().State != c.state {
			t.Errorf("at %s before expiry: due %v state %s, want %v %s", notAfter.Sub(c.at), r.Due(), r.Status().State, c.due, c.state)
		}
	}

	report := func(tx string) *txreport.Report {
		return &txreport.Report{V: 1, TxID: tx, Terminal: device, Kind: "payment", Amount: 100, Currency: "EUR",
			Started: txreport.Timestamp(time.Now()), Decided: txreport.Timestamp(time.Now()), Decision: txreport.Approved,
			Auth: txreport.Auth{Mode: txreport.AuthOffline}}
	}
	oldEnv, err := signer.Sign(report("tx-old-key"))
	if err != nil {
		t.Fatal(err)
	}
	oldFP, oldSerial := signer.Fingerprint(), signer.Certificate().SerialNumber.Text(16)

	if err := rn.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if signer.Fingerprint() == oldFP || rn.Status().Renewals != 1 {
		t.Fatalf("signer not renewed: %+v", rn.Status())
	}
	newSerial := signer.Certificate().SerialNumber.Text(16)
	if certs, err := f.store.DeviceCerts(ctx, device); err != nil || len(certs) != 2 {
		t.Fatalf("registry after renewal: %v %v", certs, err)
	}
	if fk, ok := keys.(*devicekey.File); ok {
		if _, err := os.Stat(fk.Path + ".new"); !os.IsNotExist(err) {
			t.Fatalf("pending key left: %v", err)
		}
		if st, err := os.Stat(fk.Path); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("renewed key file: %v %v", st, err)
		}
	}
	// The store now holds the new key.
	if k, err := keys.Load(ctx); err != nil || !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Certificate().PublicKey) {
		t.Fatalf("key store after renewal: %v", err)
	}
	// The link came back with the new certificate, without a restart.
	waitFor(t, 10*time.Second, "reconnected with the new certificate", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return link.Status().Connected && len(served) >= 2 && served[len(served)-1] == newSerial
	})
	mu.Lock()
	if served[0] != oldSerial {
		t.Errorf("first connection used %s, want the old %s", served[0], oldSerial)
	}
	mu.Unlock()

	newEnv, err := signer.Sign(report("tx-new-key"))
	if err != nil {
		t.Fatal(err)
	}
	applied := f.hub.Stats().Applied
	for _, env := range [][]byte{oldEnv, newEnv} {
		if err := link.Publish(ctx, hub.TopicTx, 1, false, env); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "old-key and new-key reports applied", func() bool { return f.hub.Stats().Applied == applied+2 })
	// The new certificate in use retires the old one; the old-key report
	// was decided before, so it still verified.
	waitFor(t, 10*time.Second, "the superseded certificate revoked", func() bool {
		revs, _ := f.store.Revocations(ctx)
		for _, r := range revs {
			if r.Serial == oldSerial && r.Reason == "superseded by renewal" {
				return true
			}
		}
		return false
	})
	for _, r := range mustRevocations(t, f) {
		if r.Serial == newSerial {
			t.Fatal("the certificate in use was revoked")
		}
	}

}

// The hub renews only inside the window (a key cannot mint itself
// certificates at will), and only for a request sealed by the device's
// trusted certificate (anything else is not answered).
func TestRenewalRefusals(t *testing.T) {
	f := newFixture(t) // certificates for 365 days
	dir := t.TempDir()
	if _, err := f.enroll(t, f.token(t, "kiosk-nr", 30*time.Minute, time.Now()), dir); err != nil {
		t.Fatal(err)
	}
	keys := &devicekey.File{Path: filepath.Join(dir, "device.key")}
	key, _ := keys.Load(context.Background())
	chainFile := filepath.Join(dir, enroll.FileChain)
	chain, _ := deviceca.ReadCerts(chainFile)
	signer, err := txreport.NewSigner(key, chain[0])
	if err != nil {
		t.Fatal(err)
	}
	hubKeys, _ := txreport.LoadKeyringFile(filepath.Join(dir, enroll.FileAuthCert))
	tlsCfg, err := enroll.TLSConfig(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	link, err := hub.New(hub.Options{Brokers: []string{f.broker.TLSURL()}, DeviceID: "kiosk-nr", TopicPrefix: "kiosk/v1", TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	rn, _ := enroll.NewRenewer(enroll.RenewerOptions{Hub: link, Signer: signer, HubKeys: hubKeys, Keys: keys, Chain: chainFile, Wait: 3 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = link.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 10*time.Second, "kiosk link up", func() bool { return link.Status().Connected })

	var re *enroll.RejectedError
	if err := rn.Renew(ctx); !errors.As(err, &re) || re.Code != enrollwire.CodeNotDue {
		t.Fatalf("renewal with 365 days left: %v", err)
	}
	before, _ := os.ReadFile(chainFile)
	// Sealed by a key whose certificate the device CA never issued.
	k, c, err := devkey.Generate("kiosk-nr", 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rogue, _ := txreport.NewSigner(k, c)
	rr, _ := enroll.NewRenewer(enroll.RenewerOptions{Hub: link, Signer: rogue, HubKeys: hubKeys, Keys: &devicekey.File{Path: filepath.Join(t.TempDir(), "k")},
		Chain: filepath.Join(t.TempDir(), "chain"), Wait: 2 * time.Second})
	if err := rr.Renew(ctx); !errors.Is(err, enroll.ErrNoAnswer) {
		t.Fatalf("renewal sealed by a foreign key: %v", err)
	}
	// Nothing changed on the kiosk or in the registry.
	after, _ := os.ReadFile(chainFile)
	if string(before) != string(after) {
		t.Fatal("the chain file changed")
	}
	if certs, err := f.store.DeviceCerts(ctx, "kiosk-nr"); err != nil || len(certs) != 1 {
		t.Fatalf("registry: %v %v", certs, err)
	}
	if _, err := os.Stat(keys.Path + ".new"); !os.IsNotExist(err) {
		t.Fatalf("pending key left after a refusal: %v", err)
	}
}

// A tamper during a renewal: the enclosure opens after the hub answered
// but before the kiosk saw the latch (the daemon withdraws the signer and
// wipes the key store); the answer must bring back neither the key file
// nor the signer. A set latch (Hold) refuses the commit, leaving the old
// key and chain in place.
func TestRenewalAfterTamper(t *testing.T) {
	f := newFixture(t, func(o *registrar.Options) { o.Validity = 20 * 24 * time.Hour })
	// renewer enrolls device and returns its renewer (made before the
	// link runs: it routes the answer topic).
	renewer := func(t *testing.T, device string, mod func(*enroll.RenewerOptions, *devicekey.File, *txreport.Signer)) (*enroll.Renewer, *devicekey.File, *txreport.Signer, string) {
		dir := t.TempDir()
		keys := &devicekey.File{Path: filepath.Join(dir, "device.key")}
		if _, err := f.enrollWith(t, f.token(t, device, 30*time.Minute, time.Now()), dir, keys); err != nil {
			t.Fatal(err)
		}
		key, _ := keys.Load(context.Background())
		chainFile := filepath.Join(dir, enroll.FileChain)
		chain, _ := deviceca.ReadCerts(chainFile)
		signer, err := txreport.NewSigner(key, chain[0])
		if err != nil {
			t.Fatal(err)
		}
		hubKeys, _ := txreport.LoadKeyringFile(filepath.Join(dir, enroll.FileAuthCert))
		tlsCfg, err := enroll.TLSConfig(dir, key)
		if err != nil {
			t.Fatal(err)
		}
		link, err := hub.New(hub.Options{Brokers: []string{f.broker.TLSURL()}, DeviceID: device, TopicPrefix: "kiosk/v1", TLS: tlsCfg})
		if err != nil {
			t.Fatal(err)
		}
		o := enroll.RenewerOptions{Hub: link, Signer: signer, HubKeys: hubKeys, Keys: keys, Chain: chainFile, Wait: 10 * time.Second}
		mod(&o, keys, signer)
		rn, err := enroll.NewRenewer(o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = link.Run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		waitFor(t, 10*time.Second, "kiosk link up", func() bool { return link.Status().Connected })
		return rn, keys, signer, chainFile
	}
	t.Run("wiped", func(t *testing.T) {
		renewed := false
		rn, keys, signer, _ := renewer(t, "kiosk-tmid", func(o *enroll.RenewerOptions, keys *devicekey.File, signer *txreport.Signer) {
			o.OnRenewed = func(crypto.Signer, *x509.Certificate) { renewed = true }
			// The latch is not on disk yet when Hold looks; the wipe runs.
			o.Hold = func() error {
				signer.Withdraw()
				return keys.Wipe(context.Background())
			}
		})
		if err := rn.Renew(context.Background()); err == nil {
			t.Fatal("a renewal committed after the tamper wipe")
		}
		if !signer.Withdrawn() || renewed {
			t.Fatal("the renewal re-armed the withdrawn signer")
		}
		for _, p := range []string{keys.Path, keys.Path + ".new"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("%s after tamper and renewal answer: %v", p, err)
			}
		}
	})
	t.Run("commit fails", func(t *testing.T) {
		rn, keys, signer, chainFile := renewer(t, "kiosk-tcf", func(o *enroll.RenewerOptions, keys *devicekey.File, _ *txreport.Signer) {
			o.Keys = failingCommit{keys}
		})
		before, _ := os.ReadFile(chainFile)
		oldFP := signer.Fingerprint()
		if err := rn.Renew(context.Background()); err == nil || !strings.Contains(err.Error(), "commit") {
			t.Fatalf("renewal whose key commit fails: %v", err)
		}
		after, _ := os.ReadFile(chainFile)
		if string(before) != string(after) || signer.Fingerprint() != oldFP {
			t.Fatal("a failed key commit left a chain for a key that is not there")
		}
		if _, err := os.Stat(chainFile + ".new"); !os.IsNotExist(err) {
			t.Fatalf("pending chain left: %v", err)
		}
		if _, err := keys.Load(context.Background()); err != nil {
			t.Fatalf("old key after a failed commit: %v", err)
		}
	})
	t.Run("held", func(t *testing.T) {
		rn, keys, signer, chainFile := renewer(t, "kiosk-thold", func(o *enroll.RenewerOptions, _ *devicekey.File, _ *txreport.Signer) {
			o.Hold = func() error { return errors.New("tamper latch is set") }
		})
		before, _ := os.ReadFile(chainFile)
		oldFP := signer.Fingerprint()
		if err := rn.Renew(context.Background()); err == nil || !strings.Contains(err.Error(), "tamper latch") {
			t.Fatalf("renewal under a latch: %v", err)
		}
		after, _ := os.ReadFile(chainFile)
		if string(before) != string(after) || signer.Fingerprint() != oldFP {
			t.Fatal("a held renewal changed the chain or the signer")
		}
		if _, err := os.Stat(keys.Path + ".new"); !os.IsNotExist(err) {
			t.Fatalf("pending key left: %v", err)
		}
		if _, err := keys.Load(context.Background()); err != nil {
			t.Fatalf("old key after a held renewal: %v", err)
		}
	})
}

// failingCommit makes the pending key but fails its commit (a full disk,
// a TPM error), leaving the old key where it was.
type failingCommit struct{ *devicekey.File }

func (f failingCommit) CreatePending(ctx context.Context) (crypto.Signer, func() error, func() error, error) {
	k, _, discard, err := f.File.CreatePending(ctx)
	return k, func() error { return errors.New("injected commit failure") }, discard, err
}

func mustRevocations(t *testing.T, f *fixture) []hubstore.Revocation {
	t.Helper()
	revs, err := f.store.Revocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return revs
}
