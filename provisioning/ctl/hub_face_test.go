package ctl

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
	"kiosk/provisioning/pgtest"
	"kiosk/provisioning/rabbittest"
	"kiosk/provisioning/registrar"
)

// Bank staff enrol a customer's face with kioskctl into kioskhub's
// PostgreSQL store; kioskhub (over mosquitto) answers a kiosk's sealed
// face reference request with it, encrypted to the kiosk's one-time key,
// and the kiosk opens it. An unknown identity gets found=false; after
// `face remove` too. Requests sealed by a device the CA never issued, or
// by a revoked one, get no answer. Bad input is refused and stores
// nothing.
func TestHubFaceEnrolmentOnKioskhub(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	faceEnrolment(t, []string{broker.URL()}, fmt.Sprintf("[mqtt]\nbrokers = [%q]\n", broker.URL()))
}

// The same behind RabbitMQ (one node): kiosks speak MQTT to it, kioskhub
// takes the requests from the shared quorum queue over AMQP.
func TestHubFaceEnrolmentOnKioskhubAMQP(t *testing.T) {
	c := rabbittest.Start(t, 1)
	urls, _ := json.Marshal(c.AMQPURLs())
	faceEnrolment(t, c.MQTTURLs(), "[amqp]\nurls = "+string(urls)+"\n")
}

// faceEnrolment runs the test with kiosks on kioskBrokers and hubConf as
// kioskhub's broker section.
func faceEnrolment(t *testing.T, kioskBrokers []string, hubConf string) {
	ctx := context.Background()
	now := time.Now()
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	dir := t.TempDir()

	caFiles, err := deviceca.Init(filepath.Join(dir, "ca"), "Test Bank", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := deviceca.Load(caFiles.RootCert, caFiles.IssuingCert, caFiles.IssuingKey)
	if err != nil {
		t.Fatal(err)
	}
	store, err := pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Two kiosks the CA issued and the registry holds; one is revoked.
	issue := func(device string) *txreport.Signer {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(&x509.CertificateRequest{PublicKey: &key.PublicKey}, device, 24*time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.PutCert(ctx, hubstore.DeviceCert{Fingerprint: txreport.Fingerprint(cert), Serial: deviceca.SerialHex(cert),
			Device: device, NotAfter: cert.NotAfter, Issued: now, DER: cert.Raw}); err != nil {
			t.Fatal(err)
		}
		s, err := txreport.NewSigner(key, cert)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good, revoked := issue("kiosk-f1"), issue("kiosk-f2")
	if _, err := registrar.RevokeDevice(ctx, store, "kiosk-f2", "test", now); err != nil {
		t.Fatal(err)
	}
	// A self-signed key the CA never issued.
	strangerFiles, err := devkey.Create(filepath.Join(dir, "stranger"), filepath.Join(dir, "unused"), "kiosk-f3")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := txreport.LoadSigner(strangerFiles.Key, strangerFiles.Cert)
	if err != nil {
		t.Fatal(err)
	}

	auth, err := devkey.Create(filepath.Join(dir, "auth"), "", "hub-auth")
	if err != nil {
		t.Fatal(err)
	}
	hubKeys, err := txreport.LoadKeyringFile(auth.Cert)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "kioskhub.toml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `mode = "simulation"
instance = "hub-face"
[log]
level = "warn"
[store]
kind = "postgres"
dsn = %q
max_conns = 4
%s[keys]
auth_key = %q
auth_cert = %q
[ca]
root = %q
issuing_cert = %q
[http]
listen = "127.0.0.1:0"
`, dsn, hubConf, auth.Key, auth.Cert, caFiles.RootCert, caFiles.IssuingCert), 0o600); err != nil {
		t.Fatal(err)
	}

	// Staff enrol, through the configuration as on the bank's host.
	franck, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("hub", "face", "enroll", "--identity", "EID-3301-0001", "--photo", testmedia.Path(t, "franck_01829.jpg"), "--config", conf)
	if code != ExitOK || !strings.Contains(out, "enrolled the face of EID-3301-0001") {
		t.Fatalf("face enroll: %d %q %q", code, out, errs)
	}
	if code, out, errs := run("hub", "face", "enroll", "--identity", "EID-3301-0009", "--photo", testmedia.Path(t, "audrey.jpg"), "--dsn", dsn); code != ExitOK {
		t.Fatalf("face enroll --dsn: %d %q %q", code, out, errs)
	}
	// Bad input: exit 2 with the reason, nothing stored.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--identity", "EID-9", "--photo", testmedia.Path(t, "clmtrackr01.jpg")}, "58785 bytes"},
		{[]string{"--identity", "EID-9", "--photo", testmedia.Path(t, "average.png")}, "not a readable JPEG"},
		{[]string{"--identity", "EID-9", "--photo", filepath.Join(dir, "missing.jpg")}, "no such file"},
		{[]string{"--identity", "EID 9", "--photo", testmedia.Path(t, "audrey.jpg")}, "space"},
		{[]string{"--identity", "EID-9"}, "usage"},
		{[]string{"--photo", testmedia.Path(t, "audrey.jpg")}, "usage"},
	} {
		code, _, errs := run(append([]string{"hub", "face", "enroll", "--config", conf}, c.args...)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("enroll %q: exit %d %q, want 2 and %q", c.args, code, errs, c.want)
		}
	}
	for _, id := range []string{"EID-9", "EID 9"} {
		if f, err := store.FaceReference(ctx, id); err != nil || f != nil {
			t.Fatalf("refused enrolment of %q stored %d bytes (%v)", id, len(f), err)
		}
	}
	if code, _, errs := run("hub", "face", "remove", "--identity", "EID-0000", "--config", conf); code != ExitFail || !strings.Contains(errs, "no face enrolled for EID-0000") {
		t.Fatalf("remove an unknown identity: %d %q", code, errs)
	}

	cfg, err := hubd.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hubd.Run(hctx, cfg, hubd.Options{Ready: func(a string) { ready <- a }}); err != nil {
			t.Errorf("kioskhub: %v", err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	var healthAddr string
	select {
	case healthAddr = <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("kioskhub not ready")
	}

	kGood := faceKiosk(t, hctx, &wg, kioskBrokers, good, hubKeys)
	face, found := kGood.ask(t, "EID-3301-0001", true)
	if !found || !bytes.Equal(face, franck) {
		t.Fatalf("enrolled identity: found=%v, %d bytes, want the enrolled %d", found, len(face), len(franck))
	}
	if face, found := kGood.ask(t, "EID-4401-0002", true); found || face != nil {
		t.Fatalf("unknown identity: found=%v, %d bytes", found, len(face))
	}
	if code, out, errs := run("hub", "face", "remove", "--identity", "EID-3301-0001", "--config", conf); code != ExitOK || !strings.Contains(out, "removed") {
		t.Fatalf("face remove: %d %q %q", code, out, errs)
	}
	if _, found := kGood.ask(t, "EID-3301-0001", true); found {
		t.Fatal("a removed face is still answered")
	}

	// Revoked and unknown devices: the hub counts each request rejected
	// and answers nothing.
	rejected := hubStats(t, healthAddr).Stats.Rejected
	for _, s := range []*txreport.Signer{revoked, stranger} {
		k := faceKiosk(t, hctx, &wg, kioskBrokers, s, hubKeys)
		k.ask(t, "EID-3301-0009", false)
		rejected++
		deadline := time.Now().Add(20 * time.Second)
		for hubStats(t, healthAddr).Stats.Rejected < rejected {
			if time.Now().After(deadline) {
				t.Fatalf("%s: request not rejected", s.DeviceID())
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case m := <-k.rsp:
			t.Fatalf("%s got an answer: %d bytes", s.DeviceID(), len(m.Payload))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type faceKioskClient struct {
	client *hub.Client
	signer *txreport.Signer
	hubs   *txreport.Keyring
	rsp    <-chan hub.Message
}

func faceKiosk(t *testing.T, ctx context.Context, wg *sync.WaitGroup, brokers []string, s *txreport.Signer, hubs *txreport.Keyring) *faceKioskClient {
	t.Helper()
	c, err := hub.New(hub.Options{Brokers: brokers, DeviceID: s.DeviceID(), TopicPrefix: "kiosk/v1",
		ConnectTimeout: 2 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond, KeepAlive: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	k := &faceKioskClient{client: c, signer: s, hubs: hubs, rsp: c.Route(hub.TopicFaceRefRsp, 4)}
	wg.Go(func() { _ = c.Run(ctx) })
	deadline := time.Now().Add(20 * time.Second)
	for !c.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("%s not connected", s.DeviceID())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return k
}

// ask sends a sealed face reference request as kioskd does (a fresh
// one-time key) and, when wait, opens the hub's sealed answer.
func (k *faceKioskClient) ask(t *testing.T, identity string, wait bool) ([]byte, bool) {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req := hub.FaceRefRequest{ID: hub.NewID(), Terminal: k.signer.DeviceID(), EIDNumber: identity,
		Key: priv.PublicKey().Bytes(), Expires: time.Now().Add(time.Minute).UTC()}
	b, err := k.signer.Seal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := k.client.Publish(ctx, hub.TopicFaceRefReq, 1, false, b); err != nil {
		t.Fatal(err)
	}
	if !wait {
		return nil, false
	}
	for {
		select {
		case m := <-k.rsp:
			var resp hub.FaceRefResponse
			if _, err := k.hubs.Open(m.Payload, &resp); err != nil {
				t.Fatalf("answer not sealed by the hub: %v", err)
			}
			if resp.ID != req.ID {
				continue
			}
			face, err := hub.OpenFaceRef(priv, req, resp)
			if err != nil {
				t.Fatal(err)
			}
			return face, resp.Found
		case <-ctx.Done():
			t.Fatalf("no answer for %s", identity)
		}
	}
}

func hubStats(t *testing.T, addr string) hubd.Health {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h hubd.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// The reference hub's bbolt file (--db): enrol, replace, remove; a
// missing file is not created; conflicting flags are usage errors.
func TestHubFaceEnrolmentBolt(t *testing.T) {
	db := filepath.Join(t.TempDir(), "hub.db")
	s, err := hubstore.OpenBolt(db)
	if err != nil {
		t.Fatal(err)
	}
	audrey := testmedia.Path(t, "audrey.jpg")
	if code, out, errs := run("hub", "face", "enroll", "--identity", "EID-1", "--photo", testmedia.Path(t, "franck_01829.jpg"), "--db", db); code != ExitOK {
		t.Fatalf("enroll: %d %q %q", code, out, errs)
	}
	if code, out, errs := run("hub", "face", "enroll", "--identity", "EID-1", "--photo", audrey, "--db", db); code != ExitOK {
		t.Fatalf("enroll again: %d %q %q", code, out, errs)
	}
	want, err := os.ReadFile(audrey)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := s.FaceReference(context.Background(), "EID-1"); err != nil || !bytes.Equal(f, want) {
		t.Fatalf("a second enrolment does not replace the first: %d bytes, %v", len(f), err)
	}
	if code, _, errs := run("hub", "face", "remove", "--identity", "EID-1", "--db", db); code != ExitOK {
		t.Fatalf("remove: %d %q", code, errs)
	}
	if f, err := s.FaceReference(context.Background(), "EID-1"); err != nil || f != nil {
		t.Fatalf("removed: %d bytes, %v", len(f), err)
	}
	missing := filepath.Join(t.TempDir(), "missing.db")
	if code, _, errs := run("hub", "face", "enroll", "--identity", "EID-1", "--photo", audrey, "--db", missing); code != ExitFail || !strings.Contains(errs, "no such file") {
		t.Fatalf("enroll into a missing file: %d %q", code, errs)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a missing store was created: %v", err)
	}
	for _, args := range [][]string{
		{"enroll", "--identity", "EID-1", "--photo", audrey, "--db", db, "--dsn", "postgres://x/y"},
		{"remove", "--identity", "EID-1", "--photo", audrey, "--db", db},
		{"remove", "--db", db},
		{"enroll", "--identity", "EID-1", "--photo", audrey, "--db", db, "extra"},
	} {
		if code, _, errs := run(append([]string{"hub", "face"}, args...)...); code != ExitUsage || !strings.Contains(errs, "usage") {
			t.Errorf("%q: exit %d %q, want 2 with the usage", args, code, errs)
		}
	}
}
