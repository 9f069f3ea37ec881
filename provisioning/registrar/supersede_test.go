package registrar_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/enroll"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/registrar"
)

// Earlier certificates stop working: only the newest certificate renews
// (the one a renewal replaced gets "superseded"), a renewal request past
// its expiry is refused, enrolling again revokes what the device held
// before, and a tamper alarm revokes the certificate that signed it and
// earlier ones, not a newer one.
func TestEarlierCertificatesRevoked(t *testing.T) {
	f := newFixture(t, func(o *registrar.Options) { o.Validity = 20 * 24 * time.Hour })
	ctx := context.Background()
	const device = "kiosk-sup"
	dir := t.TempDir()
	keys := &devicekey.File{Path: filepath.Join(dir, "device.key")}
	if _, err := f.enrollWith(t, f.token(t, device, 30*time.Minute, time.Now()), dir, keys); err != nil {
		t.Fatal(err)
	}
	key1, _ := keys.Load(ctx)
	chain, _ := deviceca.ReadCerts(filepath.Join(dir, enroll.FileChain))
	first, err := txreport.NewSigner(key1, chain[0])
	if err != nil {
		t.Fatal(err)
	}
	hubKeys := txreport.NewKeyring()
	if err := hubKeys.Add(f.authSigner.Certificate()); err != nil {
		t.Fatal(err)
	}
	// renew asks the registrar directly, sealed by s; it waits until the
	// hub's trust knows s's certificate (reloaded every 200 ms).
	renew := func(s *txreport.Signer, expires time.Time) (enrollwire.RenewAnswer, *ecdsa.PrivateKey) {
		t.Helper()
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: device}}, k)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Seal(enrollwire.RenewRequest{V: enrollwire.Version, ID: enrollwire.NewRequestID(), Device: device, CSR: csr, Expires: expires})
		if err != nil {
			t.Fatal(err)
		}
		var a enrollwire.RenewAnswer
		waitFor(t, 5*time.Second, "an answer", func() bool {
			rep := f.reg.HandleRenew(ctx, device, b)
			if rep.Payload == nil {
				return false
			}
			if _, err := hubKeys.Open(rep.Payload, &a); err != nil {
				t.Fatal(err)
			}
			return true
		})
		return a, k
	}
	soon := time.Now().Add(time.Minute)
	a, k2 := renew(first, soon)
	if a.Status != "accepted" {
		t.Fatalf("renewal by the newest certificate: %+v", a)
	}
	c2, err := x509.ParseCertificate(a.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	second, err := txreport.NewSigner(k2, c2)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := renew(first, soon); a.Status != "rejected" || a.Code != enrollwire.CodeSuperseded {
		t.Fatalf("renewal by the superseded certificate: %+v", a)
	}
	if a, _ := renew(second, time.Now().Add(-time.Second)); a.Code != enrollwire.CodeRequestExpired {
		t.Fatalf("expired renewal request: %+v", a)
	}
	if a, _ := renew(second, time.Now().Add(2*time.Hour)); a.Code != enrollwire.CodeRequestExpired {
		t.Fatalf("renewal request valid for 2 h: %+v", a)
	}
	revoked := func() []string {
		revs, err := f.store.Revocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range revs {
			if r.Device == device {
				out = append(out, r.Serial)
			}
		}
		return out
	}
	if r := revoked(); len(r) != 0 {
		t.Fatalf("revoked before re-enrollment: %v", r)
	}

	// Enrolled again (a new key): both earlier certificates are revoked.
	dir3 := t.TempDir()
	id3, err := f.enrollWith(t, f.token(t, device, 30*time.Minute, time.Now()), dir3, &devicekey.File{Path: filepath.Join(dir3, "device.key")})
	if err != nil {
		t.Fatal(err)
	}
	r := revoked()
	if len(r) != 2 || !slices.Contains(r, deviceca.SerialHex(first.Certificate())) || !slices.Contains(r, deviceca.SerialHex(c2)) || slices.Contains(r, id3.Serial) {
		t.Fatalf("revocations after re-enrollment: %v (new %s)", r, id3.Serial)
	}

	// A late tamper alarm signed by the second certificate leaves the
	// third alone; one signed by the third revokes it.
	if err := f.reg.TamperAlarm(ctx, device, txreport.Fingerprint(c2)); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(revoked(), id3.Serial) {
		t.Fatal("a late alarm from an earlier key revoked the newer certificate")
	}
	c3, _ := deviceca.ReadCerts(filepath.Join(dir3, enroll.FileChain))
	if err := f.reg.TamperAlarm(ctx, device, txreport.Fingerprint(c3[0])); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(revoked(), id3.Serial) {
		t.Fatal("the tamper alarm did not revoke the certificate that signed it")
	}
}

// Through the hub: a verified tamper_alarm report revokes the certificate
// that signed it before it is acknowledged.
func TestTamperAlarmRevokesAtHub(t *testing.T) {
	f := newFixture(t)
	const device = "kiosk-ta"
	dir := t.TempDir()
	id, err := f.enroll(t, f.token(t, device, 30*time.Minute, time.Now()), dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := (&devicekey.File{Path: filepath.Join(dir, "device.key")}).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := enroll.TLSConfig(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.connect(t, device, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := deviceca.ReadCerts(filepath.Join(dir, enroll.FileChain))
	signer, err := txreport.NewSigner(key, chain[0])
	if err != nil {
		t.Fatal(err)
	}
	now := txreport.Timestamp(time.Now())
	b, err := signer.Sign(&txreport.Report{V: txreport.Version, TxID: "ev-tamper_alarm-1", Terminal: device, Merchant: "M-1",
		Kind: txreport.KindEvent, Service: txreport.EventTamperAlarm, Started: now, Decided: now, Auth: txreport.Auth{Mode: txreport.AuthNone}})
	if err != nil {
		t.Fatal(err)
	}
	// The hub's trust learns the new certificate within its refresh.
	time.Sleep(500 * time.Millisecond)
	if tok := c.Publish("kiosk/v1/"+device+"/tx", 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	waitFor(t, 10*time.Second, "certificate revoked by the alarm", func() bool {
		revs, _ := f.store.Revocations(context.Background())
		for _, r := range revs {
			if r.Serial == id.Serial && r.Reason == "tamper alarm" {
				return true
			}
		}
		return false
	})
}

// A report decided while the certificate was good still verifies after
// the revocation (it waited in the kiosk's outbox); one decided after the
// revocation does not.
func TestReportVerifiesAtDecisionTime(t *testing.T) {
	f := newFixture(t)
	const device = "kiosk-late"
	dir := t.TempDir()
	if _, err := f.enroll(t, f.token(t, device, 30*time.Minute, time.Now()), dir); err != nil {
		t.Fatal(err)
	}
	key, err := (&devicekey.File{Path: filepath.Join(dir, "device.key")}).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := enroll.TLSConfig(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.connect(t, device, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := deviceca.ReadCerts(filepath.Join(dir, enroll.FileChain))
	signer, err := txreport.NewSigner(key, chain[0])
	if err != nil {
		t.Fatal(err)
	}
	sign := func(tx string, decided time.Time) []byte {
		b, err := signer.Sign(&txreport.Report{V: 1, TxID: tx, Terminal: device, Kind: "payment", Amount: 100, Currency: "EUR",
			Started: txreport.Timestamp(decided), Decided: txreport.Timestamp(decided), Decision: txreport.Approved,
			Auth: txreport.Auth{Mode: txreport.AuthOffline}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	early := sign("tx-before-revocation", time.Now().Add(-time.Second))
	if _, err := registrar.RevokeDevice(context.Background(), f.store, device, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	late := sign("tx-after-revocation", time.Now().Add(time.Second))
	time.Sleep(time.Second) // every hub reloads revocations within it
	publish := func(b []byte) {
		if tok := c.Publish("kiosk/v1/"+device+"/tx", 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	acks := make(chan []byte, 4)
	if tok := c.Subscribe("kiosk/v1/"+device+"/"+hub.TopicTxAck, 1, func(_ mqtt.Client, m mqtt.Message) { acks <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	applied, rejected := f.hub.Stats().Applied, f.hub.Stats().Rejected
	publish(late)
	waitFor(t, 10*time.Second, "the late report refused", func() bool { return f.hub.Stats().Rejected == rejected+1 })
	// Refused for good: a sealed negative ack naming exactly that report,
	// so the kiosk stops resending it.
	hubKeys := txreport.NewKeyring()
	if err := hubKeys.Add(f.authSigner.Certificate()); err != nil {
		t.Fatal(err)
	}
	lateHash, _ := txreport.ReportHash(late)
	select {
	case b := <-acks:
		var a hub.TxAck
		if _, err := hubKeys.Open(b, &a); err != nil || a.Status != hub.AckRefused || a.TxID != "tx-after-revocation" || a.ReportSHA256 != lateHash {
			t.Fatalf("ack of the late report: %+v %v", a, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no negative ack for a report refused for good")
	}
	if f.hub.Stats().RefusedForGood != 1 {
		t.Fatalf("stats %+v", f.hub.Stats())
	}
	publish(early)
	waitFor(t, 10*time.Second, "the early report applied", func() bool { return f.hub.Stats().Applied == applied+1 })
}
