package registrar_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/devicekey/swtpmtest"
	"kiosk/firmware/enroll"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/devtrust"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
	"kiosk/provisioning/registrar"
)

// fixture is a bank in miniature: a device CA, a broker PKI, mosquitto
// with a mutual-TLS and a provisioning listener, the bbolt registry and a
// reference hub that enrolls and trusts by chain.
type fixture struct {
	dir      string
	ca       *deviceca.CA
	store    *hubstore.Bolt
	broker   *mqtttest.Broker
	brokerCA string // PEM file
	hub      *refhub.Hub
	trust    *devtrust.Trust
	now      func() time.Time
	// authSigner is the hub's authorization key: it seals acks and
	// renewal answers.
	authSigner *txreport.Signer
	reg        *registrar.Registrar
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tlsPair issues a certificate for name from parent (nil: self-signed CA)
// and writes name.crt and name.key.
func tlsPair(t testing.TB, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), BasicConstraintsValid: true, IsCA: isCA}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+".key"), "PRIVATE KEY", kb)
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func newFixture(t testing.TB, mods ...func(*registrar.Options)) *fixture {
	t.Helper()
	dir := mqtttest.ReadableDir(t)
	f := &fixture{dir: dir, now: time.Now}
	files, err := deviceca.Init(filepath.Join(dir, "ca"), "Test Bank", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if f.ca, err = deviceca.Load(files.RootCert, files.IssuingCert, files.IssuingKey); err != nil {
		t.Fatal(err)
	}
	bca, bcaKey := tlsPair(t, dir, "broker-ca", true, nil, nil)
	tlsPair(t, dir, "server", false, bca, bcaKey)
	tlsPair(t, dir, "kioskhub", false, bca, bcaKey)
	f.brokerCA = filepath.Join(dir, "broker-ca.crt")
	// The broker verifies kiosks by the device CA and the hub by the
	// broker CA.
	var bundle []byte
	for _, p := range []string{f.brokerCA, files.RootCert, files.IssuingCert} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	clientCA := filepath.Join(dir, "client-ca.pem")
	if err := os.WriteFile(clientCA, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	f.broker = mqtttest.StartMosquittoTLS(t, mqtttest.TLSOptions{ClientCA: clientCA,
		ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"), Provisioning: true,
		HubUsers: []string{"kioskhub"}})

	if f.store, err = hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db")); err != nil {
		t.Fatal(err)
	}
	authKey, authCert, err := devkey.Generate("hub-auth", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.authSigner, err = txreport.NewSigner(authKey, authCert)
	if err != nil {
		t.Fatal(err)
	}
	_, opsCert, err := devkey.Generate("hub-operations", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ring := txreport.NewKeyring()
	brokerCAPEM, _ := os.ReadFile(f.brokerCA)
	now := func() time.Time { return f.now() }
	ro := registrar.Options{CA: f.ca, Registry: f.store, Prefix: "kiosk/v1", BrokerCA: string(brokerCAPEM),
		AuthCert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authCert.Raw})), Now: now,
		OpsCert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: opsCert.Raw})),
		Keyring: ring, Signer: f.authSigner}
	if os.Getenv("REGISTRAR_TEST_LOG") != "" {
		ro.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	for _, m := range mods {
		m(&ro)
	}
	reg, err := registrar.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	if f.trust, err = devtrust.New(devtrust.Options{Verifier: f.ca.Verifier(), Registry: f.store, Refresh: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ring.SetResolver(f.trust.Resolve)
	hubTLS, err := hub.TLSConfig(f.brokerCA, filepath.Join(dir, "kioskhub.crt"), filepath.Join(dir, "kioskhub.key"))
	if err != nil {
		t.Fatal(err)
	}
	f.hub, err = refhub.New(refhub.Options{Brokers: []string{f.broker.TLSURL()}, ClientID: "hub-test", TLS: hubTLS,
		Keyring: ring, ResolveAt: f.trust.ResolveAt, RefusedForGood: f.trust.RefusedForGood, Store: f.store, Registrar: reg, Signer: f.authSigner, Now: now})
	f.reg = reg
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.trust.Run(ctx) })
	wg.Go(func() { _ = f.hub.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-f.hub.Connected():
	case <-time.After(20 * time.Second):
		t.Fatal("hub did not connect")
	}
	return f
}

func (f *fixture) token(t testing.TB, device string, ttl time.Duration, at time.Time) enrollwire.Token {
	t.Helper()
	tok, err := registrar.MintToken(context.Background(), f.store, device, ttl, at)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) enroll(t testing.TB, tok enrollwire.Token, dir string) (enroll.Identity, error) {
	t.Helper()
	return f.enrollWith(t, tok, dir, &devicekey.File{Path: filepath.Join(dir, "device.key")})
}

func (f *fixture) enrollWith(t testing.TB, tok enrollwire.Token, dir string, keys devicekey.Store) (enroll.Identity, error) {
	t.Helper()
	brokerTLS, err := hub.TLSConfig(f.brokerCA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return enroll.Enroll(context.Background(), enroll.Options{Broker: f.broker.ProvisionURL(), TLS: brokerTLS, Token: string(tok),
		Dir: dir, Keys: keys, Wait: 15 * time.Second})
}

// connect opens an MQTT connection with tlsCfg to the mutual-TLS listener.
func (f *fixture) connect(t testing.TB, id string, tlsCfg *tls.Config) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(f.broker.TLSURL()).SetClientID(id).SetTLSConfig(tlsCfg).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, errors.Join(errors.New("connect"), tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// Enrollment end to end: the kiosk enrolls on the provisioning listener,
// connects with its new certificate over mutual TLS, its signed report is
// applied by the hub (trusted by chain, not by pin); once its serial is
// revoked the hub refuses its reports within 5 s, without a restart.
func TestEnrollEndToEnd(t *testing.T) {
	f := newFixture(t)
	kdir := t.TempDir()
	id, err := f.enroll(t, f.token(t, "kiosk-7", 30*time.Minute, time.Now()), kdir)
	if err != nil {
		t.Fatal(err)
	}
	if id.Device != "kiosk-7" || id.KeyStorage != "file" || time.Until(id.NotAfter) < 300*24*time.Hour {
		t.Fatalf("identity %+v", id)
	}
	st, err := os.Stat(filepath.Join(kdir, "device.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device key mode: %v %v", st, err)
	}
	// Everything a production kioskd.toml points at, the operations
	// certificate (fleet jobs) included.
	for _, name := range []string{enroll.FileChain, enroll.FileRoot, enroll.FileBrokerCA, enroll.FileAuthCert, enroll.FileOpsCert, enroll.FileIdentity} {
		if b, err := os.ReadFile(filepath.Join(kdir, name)); err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	key, err := (&devicekey.File{Path: filepath.Join(kdir, "device.key")}).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := enroll.TLSConfig(kdir, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.connect(t, "kiosk-7", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := deviceca.ReadCerts(filepath.Join(kdir, enroll.FileChain))
	signer, err := txreport.NewSigner(key.(*ecdsa.PrivateKey), chain[0])
	if err != nil {
		t.Fatal(err)
	}
	send := func(tx string) {
		t.Helper()
		r := &txreport.Report{V: 1, TxID: tx, Terminal: "kiosk-7", Kind: "payment", Amount: 100, Currency: "EUR",
			Started: txreport.Timestamp(time.Now()), Decided: txreport.Timestamp(time.Now()), Decision: txreport.Approved,
			Auth: txreport.Auth{Mode: txreport.AuthOffline}}
		b, err := signer.Sign(r)
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish("kiosk/v1/kiosk-7/tx", 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	send("tx-1")
	waitFor(t, 10*time.Second, "report applied", func() bool { return f.hub.Stats().Applied == 1 })

	serials, err := registrar.RevokeDevice(context.Background(), f.store, "kiosk-7", "test", time.Now())
	if err != nil || len(serials) != 1 || serials[0] != id.Serial {
		t.Fatalf("revoke: %v %v", serials, err)
	}
	revokedAt := time.Now()
	rejected := f.hub.Stats().Rejected
	for i := 0; ; i++ {
		send("tx-r" + string(rune('a'+i%26)))
		time.Sleep(200 * time.Millisecond)
		if f.hub.Stats().Rejected > rejected {
			break
		}
		if time.Since(revokedAt) > 5*time.Second {
			t.Fatalf("revoked kiosk still accepted after 5 s (stats %+v)", f.hub.Stats())
		}
	}
	t.Logf("revoked kiosk refused %s after the revocation", time.Since(revokedAt).Round(time.Millisecond))
	// From then on nothing of it is applied.
	before := f.hub.Stats()
	send("tx-after-1")
	send("tx-after-2")
	waitFor(t, 10*time.Second, "later reports refused", func() bool { return f.hub.Stats().Rejected >= before.Rejected+2 })
	if got := f.hub.Stats().Applied; got != before.Applied {
		t.Fatalf("reports applied after the refusal began: %d → %d", before.Applied, got)
	}
}

// ask publishes a raw request on topic and returns the sealed answer (or
// nil when none came within wait).
func (f *fixture) ask(t *testing.T, device, topic string, payload []byte, tok enrollwire.Token, wait time.Duration) (*enrollwire.Accepted, *enrollwire.Rejected) {
	t.Helper()
	brokerTLS, _ := hub.TLSConfig(f.brokerCA, "", "")
	// The broker lets a client use only the provisioning topics of its
	// own client id.
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(f.broker.ProvisionURL()).SetClientID(device).
		SetTLSConfig(brokerTLS).SetAutoReconnect(false))
	if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	got := make(chan mqtt.Message, 4)
	subs := map[string]byte{enrollwire.AcceptedTopic("kiosk/v1", device): 1, enrollwire.RejectedTopic("kiosk/v1", device): 1}
	if tk := c.SubscribeMultiple(subs, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	if tk := c.Publish(topic, 1, false, payload); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("publish: %v", tk.Error())
	}
	select {
	case m := <-got:
		if strings.HasSuffix(m.Topic(), "/accepted") {
			var a enrollwire.Accepted
			if err := enrollwire.Open(tok, m.Payload(), &a); err != nil {
				t.Fatalf("accepted answer: %v", err)
			}
			return &a, nil
		}
		var r enrollwire.Rejected
		if err := enrollwire.Open(tok, m.Payload(), &r); err != nil {
			t.Fatalf("rejected answer: %v", err)
		}
		return nil, &r
	case <-time.After(wait):
		return nil, nil
	}
}

func csrFor(t *testing.T, cn string) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func request(t *testing.T, device string, tok enrollwire.Token, csr []byte) []byte {
	t.Helper()
	b, err := json.Marshal(enrollwire.Request{V: 1, ID: enrollwire.NewRequestID(), Device: device, Token: tok, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Replayed, expired and wrong-device tokens, a CSR for another device,
// bad input: each gets a clear answer (or none, when it cannot be sealed)
// and leaves the token and the registry as they were.
func TestEnrollRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k1 := f.token(t, "k1", 30*time.Minute, time.Now())
	k2 := f.token(t, "k2", 30*time.Minute, time.Now())
	expired := f.token(t, "k3", 30*time.Minute, time.Now().Add(-time.Hour))
	topic := enrollwire.RequestTopic("kiosk/v1", "k1")
	forged := enrollwire.Token(string(k1[:len(k1)-43]) + string(k2[len(k2)-43:]))

	refusals := []struct {
		name     string
		device   string
		topic    string
		payload  []byte
		tok      enrollwire.Token
		wantCode string
	}{
		{"CSR for another device", "k1", topic, request(t, "k1", k1, csrFor(t, "k2")), k1, enrollwire.CodeWrongDevice},
		{"token of another device", "k1", topic, request(t, "k1", k2, csrFor(t, "k1")), k2, enrollwire.CodeWrongDevice},
		{"request on another device's topic", "k2", enrollwire.RequestTopic("kiosk/v1", "k2"), request(t, "k1", k1, csrFor(t, "k1")), k1, enrollwire.CodeWrongDevice},
		{"malformed CSR", "k1", topic, request(t, "k1", k1, []byte("not a csr")), k1, enrollwire.CodeBadCSR},
		{"expired token", "k3", enrollwire.RequestTopic("kiosk/v1", "k3"), request(t, "k3", expired, csrFor(t, "k3")), expired, enrollwire.CodeTokenExpired},
		// k1's device part with k2's secret: no such token.
		{"forged token", "k1", topic, request(t, "k1", forged, csrFor(t, "k1")), forged, enrollwire.CodeTokenInvalid},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			a, rej := f.ask(t, r.device, r.topic, r.payload, r.tok, 10*time.Second)
			if a != nil || rej == nil || rej.Code != r.wantCode || rej.Message == "" {
				t.Fatalf("answer %+v %+v, want rejected %s", a, rej, r.wantCode)
			}
		})
	}
	// Input that cannot be answered is dropped: oversized, not JSON, a
	// wrong topic.
	big := request(t, "k1", k1, append(csrFor(t, "k1"), make([]byte, enrollwire.MaxRequest)...))
	if a, rej := f.ask(t, "k1", topic, big, k1, 2*time.Second); a != nil || rej != nil {
		t.Fatalf("oversized request answered: %+v %+v", a, rej)
	}
	if a, rej := f.ask(t, "k1", topic, []byte("{"), k1, time.Second); a != nil || rej != nil {
		t.Fatalf("garbage answered: %+v %+v", a, rej)
	}
	if a, rej := f.ask(t, "k1", "kiosk/v1/provision/k1/other", request(t, "k1", k1, csrFor(t, "k1")), k1, time.Second); a != nil || rej != nil {
		t.Fatalf("wrong topic answered: %+v %+v", a, rej)
	}
	if certs, err := f.store.DeviceCerts(ctx, "k1"); err != nil || len(certs) != 0 {
		t.Fatalf("refusals recorded certificates: %v %v", certs, err)
	}

	// After all that the token is still good, once.
	a, rej := f.ask(t, "k1", topic, request(t, "k1", k1, csrFor(t, "k1")), k1, 10*time.Second)
	if a == nil || rej != nil || a.Device != "k1" || a.AuthCert == "" || a.BrokerCA == "" || a.Root == "" {
		t.Fatalf("good request: %+v %+v", a, rej)
	}
	a, rej = f.ask(t, "k1", topic, request(t, "k1", k1, csrFor(t, "k1")), k1, 10*time.Second)
	if a != nil || rej == nil || rej.Code != enrollwire.CodeTokenUsed {
		t.Fatalf("replayed token: %+v %+v", a, rej)
	}
	if certs, err := f.store.DeviceCerts(ctx, "k1"); err != nil || len(certs) != 1 {
		t.Fatalf("certificates of k1 after one enrollment: %v %v", certs, err)
	}
	// The kiosk's own client reports a refusal as a typed error.
	_, err := f.enroll(t, k1, t.TempDir())
	var re *enroll.RejectedError
	if !errors.As(err, &re) || re.Code != enrollwire.CodeTokenUsed {
		t.Fatalf("enroll with a used token: %v", err)
	}
}

// A certificate from a foreign CA is refused by the broker (mutual TLS)
// and, were it recorded in the registry, by the hub's chain check.
func TestForeignCACertificate(t *testing.T) {
	f := newFixture(t)
	dir := mqtttest.ReadableDir(t)
	rogue, rogueKey := tlsPair(t, dir, "rogue-ca", true, nil, nil)
	cert, _ := tlsPair(t, dir, "k9", false, rogue, rogueKey)
	tlsCfg, err := hub.TLSConfig(f.brokerCA, filepath.Join(dir, "k9.crt"), filepath.Join(dir, "k9.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.connect(t, "k9", tlsCfg); err == nil {
		t.Fatal("the broker accepted a certificate from a foreign CA")
	}
	noCert, _ := hub.TLSConfig(f.brokerCA, "", "")
	if _, err := f.connect(t, "k9", noCert); err == nil {
		t.Fatal("the mutual-TLS listener accepted a client without a certificate")
	}
	fp := txreport.Fingerprint(cert)
	if err := f.store.PutCert(context.Background(), hubstore.DeviceCert{Fingerprint: fp, Serial: deviceca.SerialHex(cert), Device: "k9",
		NotAfter: cert.NotAfter, Issued: time.Now(), DER: cert.Raw}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.trust.Resolve(fp); ok {
		t.Fatal("the hub trusts a certificate from a foreign CA")
	}
}

// BenchmarkEnroll: token → enrolled (key, CSR, MQTT round trip, hub
// signs and records) → first mutual-TLS connection with the new
// certificate, against mosquitto and the hub on this machine (bbolt
// registry, file key).
func BenchmarkEnroll(b *testing.B) {
	f := newFixture(b)
	i := 0
	for b.Loop() {
		i++
		dev := fmt.Sprintf("bench-%d", i)
		dir := b.TempDir()
		if _, err := f.enroll(b, f.token(b, dev, 30*time.Minute, time.Now()), dir); err != nil {
			b.Fatal(err)
		}
		key, err := (&devicekey.File{Path: filepath.Join(dir, "device.key")}).Load(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		tlsCfg, err := enroll.TLSConfig(dir, key)
		if err != nil {
			b.Fatal(err)
		}
		c, err := f.connect(b, dev, tlsCfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Disconnect(0)
	}
}

// A kiosk's signed decommission event: the hub revokes its certificates
// before it acknowledges; its reports are refused from then on.
func TestDecommissionRevokes(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	id, err := f.enroll(t, f.token(t, "kiosk-dc", 30*time.Minute, time.Now()), dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := (&devicekey.File{Path: filepath.Join(dir, "device.key")}).Load(context.Background())
	tlsCfg, _ := enroll.TLSConfig(dir, key)
	c, err := f.connect(t, "kiosk-dc", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := deviceca.ReadCerts(filepath.Join(dir, enroll.FileChain))
	signer, _ := txreport.NewSigner(key, chain[0])
	acks := make(chan string, 4)
	if tok := c.Subscribe("kiosk/v1/kiosk-dc/"+hub.TopicTxAck, 1, func(_ mqtt.Client, m mqtt.Message) { acks <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	now := txreport.Timestamp(time.Now())
	ev, err := signer.Sign(&txreport.Report{V: 1, TxID: "ev-decommission-1", Terminal: "kiosk-dc", Kind: txreport.KindEvent,
		Service: txreport.EventDecommission, Started: now, Decided: now, Auth: txreport.Auth{Mode: txreport.AuthNone}})
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish("kiosk/v1/kiosk-dc/tx", 1, false, ev); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case <-acks:
	case <-time.After(10 * time.Second):
		t.Fatal("decommission event not acknowledged")
	}
	// Revoked before the ack.
	revs, err := f.store.Revocations(context.Background())
	if err != nil || len(revs) != 1 || revs[0].Serial != id.Serial || revs[0].Reason != "decommissioned" {
		t.Fatalf("revocations %+v %v", revs, err)
	}
	rejected := f.hub.Stats().Rejected
	// Decided after the revocation (a report decided before it would
	// still verify: it was signed while the certificate was good).
	after := txreport.Timestamp(time.Now().Add(time.Second))
	r := &txreport.Report{V: 1, TxID: "tx-after", Terminal: "kiosk-dc", Kind: "payment", Amount: 1, Currency: "EUR",
		Started: after, Decided: after, Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOffline}}
	b, _ := signer.Sign(r)
	waitFor(t, 10*time.Second, "report after decommission refused", func() bool {
		c.Publish("kiosk/v1/kiosk-dc/tx", 1, false, b).WaitTimeout(time.Second)
		time.Sleep(200 * time.Millisecond)
		return f.hub.Stats().Rejected > rejected
	})
}

// The broker's access control: on the provisioning listener no one but
// the hub reads a request (a token in flight), and no one forges an
// answer; an enrolled kiosk cannot read another kiosk's topics.
func TestBrokerACL(t *testing.T) {
	f := newFixture(t)
	brokerTLS, _ := hub.TLSConfig(f.brokerCA, "", "")
	spy := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(f.broker.ProvisionURL()).SetClientID("spy").SetTLSConfig(brokerTLS).SetAutoReconnect(false))
	if tk := spy.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer spy.Disconnect(100)
	seen := make(chan string, 16)
	spy.Subscribe("kiosk/v1/#", 1, func(_ mqtt.Client, m mqtt.Message) { seen <- m.Topic() }).WaitTimeout(5 * time.Second)
	spy.Subscribe("kiosk/v1/provision/+/csr", 1, func(_ mqtt.Client, m mqtt.Message) { seen <- m.Topic() }).WaitTimeout(5 * time.Second)
	// A forged answer to k1's subscription is not delivered.
	spy.Publish(enrollwire.AcceptedTopic("kiosk/v1", "k1"), 1, false, []byte(`{"body":{},"mac":""}`)).WaitTimeout(5 * time.Second)

	dir := t.TempDir()
	if _, err := f.enroll(t, f.token(t, "k1", 30*time.Minute, time.Now()), dir); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-seen:
		t.Fatalf("the spy received %s", topic)
	case <-time.After(500 * time.Millisecond):
	}
	// Enrolled k1 on the mutual-TLS listener cannot read k2's topics.
	key, _ := (&devicekey.File{Path: filepath.Join(dir, "device.key")}).Load(context.Background())
	tlsCfg, _ := enroll.TLSConfig(dir, key)
	c, err := f.connect(t, "k1", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe("kiosk/v1/k2/#", 1, func(_ mqtt.Client, m mqtt.Message) { seen <- m.Topic() }).WaitTimeout(5 * time.Second)
	dir2 := t.TempDir()
	if _, err := f.enroll(t, f.token(t, "k2", 30*time.Minute, time.Now()), dir2); err != nil {
		t.Fatal(err)
	}
	key2, _ := (&devicekey.File{Path: filepath.Join(dir2, "device.key")}).Load(context.Background())
	tls2, _ := enroll.TLSConfig(dir2, key2)
	c2, err := f.connect(t, "k2", tls2)
	if err != nil {
		t.Fatal(err)
	}
	// k2 talks on its own topic; the hub (subscribed to every kiosk) gets
	// it, k1 does not.
	rejected := f.hub.Stats().Rejected
	c2.Publish("kiosk/v1/k2/tx", 1, false, []byte(`{"report":{},"alg":"ES256","sig":"","cert":"`+strings.Repeat("0", 64)+`"}`)).WaitTimeout(5 * time.Second)
	waitFor(t, 5*time.Second, "the hub got k2's message", func() bool { return f.hub.Stats().Rejected > rejected })
	select {
	case topic := <-seen:
		t.Fatalf("k1 received %s", topic)
	case <-time.After(300 * time.Millisecond):
	}
}

// Enrolling a kiosk again with a token the hub refuses leaves its current
// key and identity as they were: the new key waits at the pending slot
// until a verified answer, and is discarded on a refusal. (File and TPM.)
func TestReenrollRefusedKeepsKey(t *testing.T) {
	f := newFixture(t)
	check := func(t *testing.T, device, dir string, keys devicekey.Store) {
		tok := f.token(t, device, 30*time.Minute, time.Now())
		if _, err := f.enrollWith(t, tok, dir, keys); err != nil {
			t.Fatal(err)
		}
		before, err := keys.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		chainBefore, _ := os.ReadFile(filepath.Join(dir, enroll.FileChain))
		var re *enroll.RejectedError
		if _, err := f.enrollWith(t, tok, dir, keys); !errors.As(err, &re) || re.Code != enrollwire.CodeTokenUsed {
			t.Fatalf("replayed token: %v", err)
		}
		after, err := keys.Load(context.Background())
		if err != nil {
			t.Fatalf("key after a refused enrollment: %v", err)
		}
		if !after.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(before.Public()) {
			t.Fatal("a refused enrollment replaced the device key")
		}
		if chainAfter, _ := os.ReadFile(filepath.Join(dir, enroll.FileChain)); string(chainAfter) != string(chainBefore) {
			t.Fatal("a refused enrollment changed the chain")
		}
		if fk, ok := keys.(*devicekey.File); ok {
			if _, err := os.Stat(fk.Path + ".new"); !os.IsNotExist(err) {
				t.Fatalf("pending key left: %v", err)
			}
		}
	}
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		check(t, "kiosk-keep", dir, &devicekey.File{Path: filepath.Join(dir, "device.key")})
	})
	t.Run("tpm", func(t *testing.T) {
		sw := swtpmtest.Start(t)
		tp, err := devicekey.OpenTPM("unix:" + sw.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close()
		check(t, "kiosk-keep-tpm", t.TempDir(), tp)
	})
}
