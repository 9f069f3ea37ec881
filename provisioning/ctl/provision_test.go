package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"kiosk/firmware/hub/mqtttest"
	"kiosk/internal/testpki"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
)

// The bank staff's command forms end to end: ca init, a hub that enrolls,
// provision token, provision enroll with the key in swtpm, provision
// revoke; and what the commands refuse.
func TestProvisionCommands(t *testing.T) {
	dir := mqtttest.ReadableDir(t)
	caDir := filepath.Join(dir, "ca")
	if code, out, errs := run("ca", "init", "--out", caDir, "--org", "Test Bank"); code != ExitOK || !strings.Contains(out, "root.crt") {
		t.Fatalf("ca init: %d %q %q", code, out, errs)
	}
	for name, mode := range map[string]os.FileMode{"root.key": 0o600, "issuing.key": 0o600} {
		if st, err := os.Stat(filepath.Join(caDir, name)); err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v", name, st, err)
		}
	}
	if code, _, errs := run("ca", "init", "--out", caDir); code != ExitFail || !strings.Contains(errs, "exist") {
		t.Fatalf("ca init over an existing CA: %d %q", code, errs)
	}
	// The root key straight to offline storage: never in the hub's CA
	// directory, and not by another name inside it either.
	offDir, offKey := filepath.Join(dir, "ca2"), filepath.Join(dir, "usb", "root.key")
	if code, _, errs := run("ca", "init", "--out", offDir, "--root-key-out", filepath.Join(offDir, "sub", "r.key")); code != ExitUsage || !strings.Contains(errs, "inside") {
		t.Fatalf("ca init with the root key inside DIR: %d %q", code, errs)
	}
	if code, out, errs := run("ca", "init", "--out", offDir, "--root-key-out", offKey); code != ExitOK || strings.Contains(errs, "warning") {
		t.Fatalf("ca init --root-key-out: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(offDir, "root.key")); !os.IsNotExist(err) {
		t.Fatalf("root.key in the CA directory: %v", err)
	}
	if st, err := os.Stat(offKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("offline root key: %v %v", st, err)
	}
	if _, err := deviceca.Load(filepath.Join(offDir, "root.crt"), filepath.Join(offDir, "issuing.crt"), filepath.Join(offDir, "issuing.key")); err != nil {
		t.Fatalf("CA without its root key does not load: %v", err)
	}

	bca := testpki.New(t, dir, "broker-ca")
	srvCrt, srvKey := bca.Issue(t, "server")
	hubCrt, hubKey := bca.Issue(t, "kioskhub")
	clientCA := testpki.Bundle(t, filepath.Join(dir, "client-ca.pem"), bca.File, filepath.Join(caDir, "root.crt"), filepath.Join(caDir, "issuing.crt"))
	broker := mqtttest.StartMosquittoTLS(t, mqtttest.TLSOptions{ClientCA: clientCA, ServerCert: srvCrt, ServerKey: srvKey, Provisioning: true})
	auth, err := devkey.Create(filepath.Join(dir, "auth"), "", "hub-auth")
	if err != nil {
		t.Fatal(err)
	}
	hubConf := filepath.Join(dir, "kioskhub.toml")
	if err := os.WriteFile(hubConf, fmt.Appendf(nil, `mode = "simulation"
instance = "hub-ctl"
[log]
level = "warn"
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
[http]
listen = "127.0.0.1:0"
`, filepath.Join(dir, "hub.db"), broker.TLSURL(), bca.File, hubCrt, hubKey, auth.Key, auth.Cert,
		filepath.Join(caDir, "root.crt"), filepath.Join(caDir, "issuing.crt"), filepath.Join(caDir, "issuing.key"), bca.File), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := hubd.Load(hubConf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hubd.Run(ctx, cfg, hubd.Options{Ready: func(a string) { ready <- a }}); err != nil {
			t.Errorf("kioskhub: %v", err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("kioskhub not ready")
	}

	code, tok, errs := run("provision", "token", "--device", "kiosk-42", "--ttl", "30m", "--config", hubConf)
	tok = strings.TrimSpace(tok)
	if code != ExitOK || !strings.HasPrefix(tok, "kt1.kiosk-42.") {
		t.Fatalf("provision token: %d %q %q", code, tok, errs)
	}
	if code, _, errs := run("provision", "token", "--device", "bad/id", "--config", hubConf); code != ExitFail || !strings.Contains(errs, "device id") {
		t.Fatalf("token for a bad id: %d %q", code, errs)
	}

	sw := swtpmtest.Start(t)
	idDir := filepath.Join(t.TempDir(), "identity")
	if code, _, errs := run("provision", "enroll", "--hub", broker.URL(), "--token", tok); code != ExitUsage || !strings.Contains(errs, "TLS") {
		t.Fatalf("enroll over tcp://: %d %q", code, errs)
	}
	code, out, errs := run("provision", "enroll", "--hub", broker.ProvisionURL(), "--token", tok, "--ca", bca.File,
		"--dir", idDir, "--tpm", "unix:"+sw.Socket, "--json")
	if code != ExitOK {
		t.Fatalf("provision enroll: %d %q %q", code, out, errs)
	}
	var id enroll.Identity
	if err := json.Unmarshal([]byte(out), &id); err != nil || id.Device != "kiosk-42" || id.KeyStorage != "tpm" {
		t.Fatalf("identity %q: %v", out, err)
	}
	// The key is in the TPM, not on disk.
	if _, err := os.Stat(filepath.Join(idDir, "device.key")); !os.IsNotExist(err) {
		t.Fatalf("a key file next to a TPM key: %v", err)
	}
	tp, err := devicekey.OpenTPM("unix:" + sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := tp.Exists(); !ok || err != nil {
		t.Fatalf("TPM key after enrollment: %v %v", ok, err)
	}
	tp.Close()
	// The token is spent.
	code, _, errs = run("provision", "enroll", "--hub", broker.ProvisionURL(), "--token", tok, "--ca", bca.File,
		"--dir", t.TempDir(), "--key-storage", "file")
	if code != ExitUsage || !strings.Contains(errs, "token_used") {
		t.Fatalf("replayed token: %d %q", code, errs)
	}
	// --token - reads it from stdin (kept out of argv): the hub sees the
	// same spent token.
	var sout, serr bytes.Buffer
	code = Main([]string{"provision", "enroll", "--hub", broker.ProvisionURL(), "--token", "-", "--ca", bca.File,
		"--dir", t.TempDir(), "--key-storage", "file"}, strings.NewReader(tok+"\n"), &sout, &serr, "test")
	if code != ExitUsage || !strings.Contains(serr.String(), "token_used") {
		t.Fatalf("--token - with the spent token on stdin: %d %q", code, serr.String())
	}
	if code, _, errs := run("provision", "enroll", "--hub", broker.ProvisionURL(), "--token", "-"); code != ExitUsage || !strings.Contains(errs, "no token on stdin") {
		t.Fatalf("--token - with nothing on stdin: %d %q", code, errs)
	}

	// One serial as staff may type it: upper case, 0x, colons, zero
	// padding all name the serial the hub looks up; an unknown serial is
	// an error, not a revocation.
	typed := "0x00" + strings.ToUpper(id.Serial)
	if len(id.Serial)%2 == 0 {
		var pairs []string
		for i := 0; i < len(id.Serial); i += 2 {
			pairs = append(pairs, strings.ToUpper(id.Serial[i:i+2]))
		}
		typed = strings.Join(pairs, ":")
	}
	code, out, errs = run("provision", "revoke", "--serial", typed, "--config", hubConf)
	if code != ExitOK || strings.TrimSpace(out) != "revoked "+id.Serial+" of device kiosk-42" {
		t.Fatalf("provision revoke --serial %s: %d %q %q", typed, code, out, errs)
	}
	code, out, errs = run("provision", "revoke", "--serial", "0x00"+strings.ToUpper(id.Serial), "--config", hubConf)
	if code != ExitOK || !strings.Contains(out, "revoked "+id.Serial) {
		t.Fatalf("provision revoke --serial 0x00…: %d %q %q", code, out, errs)
	}
	if code, out, errs := run("provision", "revoke", "--serial", "0x7A3F", "--config", hubConf); code != ExitFail || !strings.Contains(errs, "no certificate with serial 7a3f") {
		t.Fatalf("revoke an unknown serial: %d %q %q", code, out, errs)
	}
	if code, _, errs := run("provision", "revoke", "--serial", "xyz", "--config", hubConf); code != ExitFail || !strings.Contains(errs, "not a positive hexadecimal") {
		t.Fatalf("revoke a malformed serial: %d %q", code, errs)
	}

	code, out, errs = run("provision", "revoke", "--device", "kiosk-42", "--config", hubConf)
	if code != ExitOK || !strings.Contains(out, "revoked "+id.Serial) {
		t.Fatalf("provision revoke: %d %q %q", code, out, errs)
	}
	if code, _, errs := run("provision", "revoke", "--device", "nobody", "--config", hubConf); code != ExitFail || !strings.Contains(errs, "no certificate") {
		t.Fatalf("revoke an unknown device: %d %q", code, errs)
	}
	if code, _, _ := run("provision", "revoke", "--config", hubConf); code != ExitUsage {
		t.Fatalf("revoke without a target: %d", code)
	}
}

// The offline path: the kiosk writes a CSR file, the bank signs it into a
// bundle, the kiosk imports it after checking the signature, the chain and
// the root fingerprint; a tampered bundle, a wrong fingerprint and a CSR
// for another device are refused and change nothing.
func TestProvisionOffline(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	code, out, errs := run("ca", "init", "--out", caDir)
	if code != ExitOK {
		t.Fatalf("ca init: %d %q", code, errs)
	}
	rootSum := strings.TrimSpace(out[strings.Index(out, "root sha256 ")+len("root sha256 "):])
	auth, err := devkey.Create(filepath.Join(dir, "auth"), "", "hub-auth")
	if err != nil {
		t.Fatal(err)
	}
	hubConf := filepath.Join(dir, "kioskhub.toml")
	if err := os.WriteFile(hubConf, fmt.Appendf(nil, `mode = "simulation"
[store]
kind = "bolt"
path = %q
[mqtt]
brokers = ["tcp://127.0.0.1:1"]
[keys]
auth_key = %q
auth_cert = %q
[ca]
root = %q
issuing_cert = %q
issuing_key = %q
`, filepath.Join(dir, "hub.db"), auth.Key, auth.Cert, filepath.Join(caDir, "root.crt"), filepath.Join(caDir, "issuing.crt"),
		filepath.Join(caDir, "issuing.key")), 0o600); err != nil {
		t.Fatal(err)
	}
	idDir := filepath.Join(dir, "identity")
	csr := filepath.Join(dir, "usb", "kiosk-7.csr")
	if err := os.MkdirAll(filepath.Dir(csr), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := run("provision", "csr", "--device", "kiosk-7", "--out", csr, "--dir", idDir, "--key-storage", "file"); code != ExitOK {
		t.Fatalf("csr: %d %q %q", code, out, errs)
	}
	keyBefore, _ := os.ReadFile(filepath.Join(idDir, "device.key"))
	if code, _, errs := run("provision", "csr", "--device", "kiosk-7", "--out", csr, "--dir", idDir, "--key-storage", "file"); code != ExitFail || !strings.Contains(errs, "--force") {
		t.Fatalf("second csr over a key: %d %q", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(idDir, "device.key")); string(b) != string(keyBefore) {
		t.Fatal("a refused csr replaced the key")
	}
	bundle := filepath.Join(dir, "usb", "kiosk-7.bundle")
	if code, _, errs := run("provision", "sign", "--csr", csr, "--device", "kiosk-8", "--out", bundle, "--config", hubConf); code != ExitFail || !strings.Contains(errs, "another device") {
		t.Fatalf("sign for the wrong device: %d %q", code, errs)
	}
	hugeCSR := filepath.Join(dir, "usb", "huge.csr")
	if err := os.WriteFile(hugeCSR, make([]byte, enrollwire.MaxRequest+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run("provision", "sign", "--csr", hugeCSR, "--device", "kiosk-7", "--out", bundle, "--config", hubConf); code != ExitUsage || !strings.Contains(errs, "larger than") {
		t.Fatalf("sign an oversized CSR file: %d %q", code, errs)
	}
	code, out, errs = run("provision", "sign", "--csr", csr, "--device", "kiosk-7", "--out", bundle, "--config", hubConf)
	if code != ExitOK || !strings.Contains(out, rootSum) {
		t.Fatalf("sign: %d %q %q", code, out, errs)
	}
	huge := filepath.Join(dir, "usb", "huge.bundle")
	if err := os.WriteFile(huge, make([]byte, enrollwire.MaxBundle+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run("provision", "import", "--bundle", huge, "--root-sha256", rootSum, "--dir", idDir, "--key-storage", "file"); code != ExitUsage || !strings.Contains(errs, "larger than") {
		t.Fatalf("oversized bundle: %d %q", code, errs)
	}
	// Refusals leave no identity behind.
	good, _ := os.ReadFile(bundle)
	tampered := filepath.Join(dir, "usb", "tampered.bundle")
	if err := os.WriteFile(tampered, []byte(strings.Replace(string(good), "kiosk-7", "kiosk-6", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, sum, want string }{
		{tampered, rootSum, "does not verify"},
		{bundle, strings.Repeat("ab", 32), "SHA-256"},
	} {
		if code, _, errs := run("provision", "import", "--bundle", c.file, "--root-sha256", c.sum, "--dir", idDir, "--key-storage", "file"); code != ExitFail || !strings.Contains(errs, c.want) {
			t.Fatalf("import %s: %d %q", c.file, code, errs)
		}
	}
	if _, err := os.Stat(filepath.Join(idDir, enroll.FileIdentity)); !os.IsNotExist(err) {
		t.Fatalf("identity after refusals: %v", err)
	}
	code, out, errs = run("provision", "import", "--bundle", bundle, "--root-sha256", rootSum, "--dir", idDir, "--key-storage", "file")
	if code != ExitOK || !strings.Contains(out, "enrolled kiosk-7 offline") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	id, err := enroll.LoadIdentity(idDir)
	if err != nil || id.Device != "kiosk-7" || id.KeyStorage != "file" {
		t.Fatalf("identity %+v %v", id, err)
	}
}
