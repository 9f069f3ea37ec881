// Command enrolldemo is `make demo-enroll`: the whole device-identity
// flow on this machine with real parts. mosquitto (a mutual-TLS and a
// provisioning listener), swtpm (the kiosk's TPM), kioskhub (in process,
// bbolt store, the device CA), kioskctl's commands for the CA, the token
// and the enrollment; then the kiosk's own packages: a payment report
// signed in the TPM delivered through the outbox and acknowledged, a
// forced rotation (the hub issues 25-day certificates, so renewal is due
// at once) with a reconnect on the new certificate, decommission, and a
// report under the revoked certificate refused by the hub. The last line
// is
//
//	enroll: enrolled in N ms, key_storage tpm, rotated, decommissioned, revoked refused
//
// where N is token → first mutual-TLS connection with the new identity.
package main

import (
	"bytes"
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
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/devicekey/swtpmtest"
	"kiosk/firmware/enroll"
	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/outbox"
	"kiosk/firmware/retire"
	"kiosk/firmware/tamperlatch"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/ctl"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
)

const device = "kiosk-demo"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo-enroll:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("demo-enroll: "+format+"\n", a...) }

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "demo-enroll-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// mosquitto drops root for its own user: it must read the broker files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}

	// The bank's device CA, with kioskctl.
	caDir := filepath.Join(dir, "ca")
	if _, err := kioskctl("ca", "init", "--out", caDir, "--org", "Demo Bank"); err != nil {
		return err
	}
	step("device CA made in %s", caDir)

	// The broker: its own CA and server certificate, the hub's client
	// certificate; kiosks are trusted by the device CA.
	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o755); err != nil {
		return err
	}
	bca, bcaKey, err := issue(pki, "broker-ca", true, nil, nil)
	if err != nil {
		return err
	}
	for _, n := range []string{"server", "kioskhub"} {
		if _, _, err := issue(pki, n, false, bca, bcaKey); err != nil {
			return err
		}
	}
	clientCA := filepath.Join(pki, "client-ca.pem")
	if err := concat(clientCA, filepath.Join(pki, "broker-ca.crt"), filepath.Join(caDir, "root.crt"), filepath.Join(caDir, "issuing.crt")); err != nil {
		return err
	}
	provPort, err := freePort()
	if err != nil {
		return err
	}
	// Access control as a bank runs it: kiosks only their own topics, the
	// provisioning listener only each client's own request and answers.
	acl, err := mqtttest.WriteACLs(pki, "kiosk/v1", []string{"kioskhub"})
	if err != nil {
		return err
	}
	tlsFiles := []string{"cafile " + clientCA, "certfile " + filepath.Join(pki, "server.crt"), "keyfile " + filepath.Join(pki, "server.key"), "tls_version tlsv1.2"}
	listener := strings.Join(append(append([]string{}, tlsFiles...), "require_certificate true", "use_identity_as_username true",
		"acl_file "+acl.MutualTLS, fmt.Sprintf("listener %d 127.0.0.1", provPort)), "\n") + "\n" +
		strings.Join(append(tlsFiles, "require_certificate false", "acl_file "+acl.Provisioning), "\n")
	mqDir := filepath.Join(dir, "mosquitto")
	if err := os.Mkdir(mqDir, 0o755); err != nil {
		return err
	}
	broker, err := mqtttest.LaunchWith(mqDir, acl.Global, listener)
	if err != nil {
		return err
	}
	defer broker.Stop()
	mtlsURL, provURL := fmt.Sprintf("ssl://127.0.0.1:%d", broker.Port), fmt.Sprintf("ssl://127.0.0.1:%d", provPort)
	step("mosquitto: mutual TLS on %s, provisioning on %s", mtlsURL, provURL)

	tpm, err := swtpmtest.Launch(filepath.Join(dir, "swtpm"))
	if err != nil {
		return err
	}
	defer tpm.Stop()
	step("swtpm on %s", tpm.Socket)

	// kioskhub with the device CA: 25-day certificates, so the kiosk's
	// renewal is due at once (the forced rotation).
	auth, err := devkey.Create(filepath.Join(dir, "hub-auth"), "", "hub-auth")
	if err != nil {
		return err
	}
	hubConf := filepath.Join(dir, "kioskhub.toml")
	conf := fmt.Sprintf(`mode = "simulation"
instance = "hub-demo"
[log]
level = "warn"
format = "text"
[store]
kind = "bolt"
path = %q
[mqtt]
brokers = [%q]
ca = %q
cert = %q
key = %q
[keys]
auth_key = %q
auth_cert = %q
[ca]
root = %q
issuing_cert = %q
issuing_key = %q
broker_ca = %q
validity = "25d"
[http]
listen = "127.0.0.1:0"
`, filepath.Join(dir, "hub.db"), mtlsURL, filepath.Join(pki, "broker-ca.crt"), filepath.Join(pki, "kioskhub.crt"), filepath.Join(pki, "kioskhub.key"),
		auth.Key, auth.Cert, filepath.Join(caDir, "root.crt"), filepath.Join(caDir, "issuing.crt"), filepath.Join(caDir, "issuing.key"),
		filepath.Join(pki, "broker-ca.crt"))
	if err := os.WriteFile(hubConf, []byte(conf), 0o600); err != nil {
		return err
	}
	cfg, err := hubd.Load(hubConf)
	if err != nil {
		return err
	}
	hubCtx, stopHub := context.WithCancel(ctx)
	ready := make(chan string, 1)
	hubDone := make(chan error, 1)
	go func() { hubDone <- hubd.Run(hubCtx, cfg, hubd.Options{Ready: func(a string) { ready <- a }}) }()
	defer func() { stopHub(); <-hubDone }()
	var healthAddr string
	select {
	case healthAddr = <-ready:
	case err := <-hubDone:
		return fmt.Errorf("kioskhub: %v", err)
	case <-time.After(30 * time.Second):
		return errors.New("kioskhub not ready in 30 s")
	}
	step("kioskhub serving (health on %s)", healthAddr)

	// Staff: a token; the kiosk: enrollment with its key in the TPM.
	start := time.Now()
	out, err := kioskctl("provision", "token", "--device", device, "--ttl", "30m", "--config", hubConf)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(out)
	idDir := filepath.Join(dir, "identity")
	out, err = kioskctl("provision", "enroll", "--hub", provURL, "--token", token, "--ca", filepath.Join(pki, "broker-ca.crt"),
		"--dir", idDir, "--tpm", "unix:"+tpm.Socket, "--json")
	if err != nil {
		return err
	}
	var id enroll.Identity
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		return err
	}

	// The kiosk's link: its TLS client certificate is read at each
	// connection (a renewal reconnects with the new one).
	keys, err := devicekey.OpenTPM("unix:" + tpm.Socket)
	if err != nil {
		return err
	}
	defer keys.Close()
	key, err := keys.Load(ctx)
	if err != nil {
		return err
	}
	chainFile := filepath.Join(idDir, enroll.FileChain)
	var mu sync.Mutex
	current := key
	var served []string
	linkTLS, err := hub.TLSConfig(filepath.Join(idDir, enroll.FileBrokerCA), "", "")
	if err != nil {
		return err
	}
	linkTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
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
	link, err := hub.New(hub.Options{Brokers: []string{mtlsURL}, DeviceID: device, TopicPrefix: "kiosk/v1", TLS: linkTLS,
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		return err
	}
	chain, err := readCert(chainFile)
	if err != nil {
		return err
	}
	signer, err := txreport.NewSigner(key, chain)
	if err != nil {
		return err
	}
	hubKeys, err := txreport.LoadKeyringFile(filepath.Join(idDir, enroll.FileAuthCert))
	if err != nil {
		return err
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{})
	if err != nil {
		return err
	}
	flow, err := txflow.New(txflow.Options{Hub: link, Outbox: ob, Signer: signer, HubKeys: hubKeys})
	if err != nil {
		return err
	}
	renewer, err := enroll.NewRenewer(enroll.RenewerOptions{Hub: link, Signer: signer, HubKeys: hubKeys, Keys: keys, Chain: chainFile,
		OnRenewed: func(k crypto.Signer, _ *x509.Certificate) {
			mu.Lock()
			current = k
			mu.Unlock()
			link.Reconnect("certificate renewed")
		}})
	if err != nil {
		return err
	}
	kioskCtx, stopKiosk := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = link.Run(kioskCtx) })
	wg.Go(func() { _ = flow.Run(kioskCtx) })
	defer func() { stopKiosk(); wg.Wait() }()
	if err := waitFor(ctx, 20*time.Second, func() bool { return link.Status().Connected }); err != nil {
		return fmt.Errorf("first mutual-TLS connection: %w", err)
	}
	enrolledMS := time.Since(start).Milliseconds()
	step("enrolled %s (serial %s, until %s, key_storage %s); first mutual-TLS connection %d ms after the token was asked for",
		id.Device, id.Serial, id.NotAfter.Format(time.DateOnly), id.KeyStorage, enrolledMS)

	// A payment report signed in the TPM, through the outbox, acknowledged
	// by the hub (whose signed ack the flow verifies).
	if err := flow.Commit(ctx, payment("demo-tx-1")); err != nil {
		return err
	}
	if err := waitFor(ctx, 20*time.Second, func() bool { return ob.Stats().Depth == 0 }); err != nil {
		return fmt.Errorf("first payment not acknowledged: %w", err)
	}
	step("payment demo-tx-1 signed in the TPM, acknowledged by the hub")

	// Rotation: due at once (25-day certificates).
	oldSerial := signer.Certificate().SerialNumber.Text(16)
	if !renewer.Due() {
		return errors.New("renewal not due")
	}
	if err := renewer.Renew(ctx); err != nil {
		return fmt.Errorf("rotation: %w", err)
	}
	newSerial := signer.Certificate().SerialNumber.Text(16)
	if err := waitFor(ctx, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return link.Status().Connected && len(served) > 0 && served[len(served)-1] == newSerial
	}); err != nil {
		return fmt.Errorf("reconnect with the renewed certificate: %w", err)
	}
	if err := flow.Commit(ctx, payment("demo-tx-2")); err != nil {
		return err
	}
	if err := waitFor(ctx, 20*time.Second, func() bool { return ob.Stats().Depth == 0 }); err != nil {
		return fmt.Errorf("payment after rotation not acknowledged: %w", err)
	}
	step("rotated: certificate %s → %s in the TPM, link reconnected on the new one, demo-tx-2 acknowledged", oldSerial, newSerial)

	// Decommission. A report signed now (before the wipe) but dated after
	// the revocation, as a stolen key would date it, is sent after it: the
	// hub must refuse it. (One decided before the revocation still
	// verifies: the hub judges a report by its certificate at the
	// report's decision time.)
	lateReport := payment("demo-tx-late")
	lateReport.Started = txreport.Timestamp(time.Now().Add(time.Minute))
	lateReport.Decided = lateReport.Started
	late, err := signer.Sign(lateReport)
	if err != nil {
		return err
	}
	now := txreport.Timestamp(time.Now())
	err = retire.Decommission(ctx, retire.Kiosk{
		Commit: flow.Commit, Outbox: ob, Signer: signer, Keys: keys,
		Event: &txreport.Report{V: txreport.Version, TxID: "demo-decommission", Terminal: device, Kind: txreport.KindEvent,
			Service: txreport.EventDecommission, Started: now, Decided: now, Auth: txreport.Auth{Mode: txreport.AuthNone}},
		Latch: tamperlatch.File{Path: filepath.Join(dir, "tamper.json")},
		Files: []string{chainFile, filepath.Join(idDir, enroll.FileAuthCert)},
		CloseState: func() {
			_ = ob.Close()
		},
		State: []string{filepath.Join(dir, "outbox.db")},
	}, 20*time.Second, false)
	if err != nil {
		return fmt.Errorf("decommission: %w", err)
	}
	if ok, err := keys.Exists(); ok || err != nil {
		return fmt.Errorf("TPM key after decommission: exists %v, %v", ok, err)
	}
	step("decommissioned: the hub revoked the certificates before its ack; the TPM key is evicted, identity and outbox wiped")

	// The revoked kiosk is refused by the hub.
	before, err := rejected(healthAddr)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 10*time.Second, func() bool {
		_ = link.Publish(ctx, hub.TopicTx, 1, false, late)
		time.Sleep(200 * time.Millisecond)
		n, err := rejected(healthAddr)
		return err == nil && n > before
	}); err != nil {
		return errors.New("a report under the revoked certificate was not refused for the revocation")
	}
	step("demo-tx-late, dated after the revocation, was refused for it (the hub counted it in refused_for_good)")
	fmt.Printf("enroll: enrolled in %d ms, key_storage %s, rotated, decommissioned, revoked refused\n", enrolledMS, id.KeyStorage)
	return nil
}

func kioskctl(args ...string) (string, error) {
	var out, errb bytes.Buffer
	if code := ctl.Main(args, strings.NewReader(""), &out, &errb, "demo"); code != ctl.ExitOK {
		return "", fmt.Errorf("kioskctl %s: exit %d: %s", strings.Join(args[:2], " "), code, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func payment(tx string) *txreport.Report {
	now := txreport.Timestamp(time.Now())
	return &txreport.Report{V: txreport.Version, TxID: tx, Terminal: device, Merchant: "DEMO", Kind: "payment", Amount: 1250,
		Currency: "EUR", Started: now, Decided: now, Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOffline}}
}

// rejected is the hub's count of reports refused for good (their
// certificate revoked or expired before their decision time; GET
// /healthz): not any rejection, so a malformed message cannot pass for
// the revocation.
func rejected(addr string) (uint64, error) {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var h hubd.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return 0, err
	}
	return h.Stats.RefusedForGood, nil
}

func waitFor(ctx context.Context, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func concat(out string, files ...string) error {
	var b []byte
	for _, f := range files {
		p, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		b = append(b, p...)
	}
	return os.WriteFile(out, b, 0o644)
}

// issue writes name.crt and name.key (PKCS #8) signed by parent (nil: a
// self-signed CA); leaf certificates serve 127.0.0.1 and clients. The
// files are world-readable for mosquitto: demo keys only.
func issue(dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), BasicConstraintsValid: true, IsCA: isCA}
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
		return nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o644); err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}
