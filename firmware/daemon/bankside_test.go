package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/enroll"
	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/internal/testpki"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/registrar"
)

// bankSide is the bank's side for tests of an enrolled kiosk: a device CA,
// mosquitto over mutual TLS with its provisioning listener, and kioskhub
// (bbolt store) with its authorization key and, when asked, its
// operations key and operator API. It stops with the test.
type bankSide struct {
	caDir     string
	brokerCA  string // the broker's CA certificate file
	broker    *mqtttest.Broker
	hubDB     string
	store     *hubstore.Bolt
	httpAddr  string // the operator API ("" without one)
	tokenFile string // the operator's bearer token
}

type bankOptions struct {
	instance   string
	operations bool // an operations key, and the operator API on a free port
}

func startBankSide(t *testing.T, o bankOptions) *bankSide {
	t.Helper()
	dir := mqtttest.ReadableDir(t)
	b := &bankSide{caDir: filepath.Join(dir, "ca"), hubDB: filepath.Join(dir, "hub.db")}
	if _, err := deviceca.Init(b.caDir, "Test Bank", time.Now()); err != nil {
		t.Fatal(err)
	}
	bca := testpki.New(t, dir, "broker-ca")
	b.brokerCA = bca.File
	srvCrt, srvKey := bca.Issue(t, "server")
	hubCrt, hubKey := bca.Issue(t, "kioskhub")
	clientCA := testpki.Bundle(t, filepath.Join(dir, "client-ca.pem"), bca.File, filepath.Join(b.caDir, "root.crt"), filepath.Join(b.caDir, "issuing.crt"))
	b.broker = mqtttest.StartMosquittoTLS(t, mqtttest.TLSOptions{ClientCA: clientCA, ServerCert: srvCrt, ServerKey: srvKey,
		Provisioning: true, HubUsers: []string{"kioskhub"}})
	auth, err := devkey.Create(filepath.Join(dir, "auth"), "", "hub-auth")
	if err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `mode = "simulation"
instance = %q
[log]
level = "error"
[store]
kind = "bolt"
path = %q
[mqtt]
brokers = [%q]
ca = %q
cert = %q
key = %q
[ca]
root = %q
issuing_cert = %q
issuing_key = %q
broker_ca = %q
[keys]
auth_key = %q
auth_cert = %q
`, o.instance, b.hubDB, b.broker.TLSURL(), bca.File, hubCrt, hubKey,
		filepath.Join(b.caDir, "root.crt"), filepath.Join(b.caDir, "issuing.crt"), filepath.Join(b.caDir, "issuing.key"), bca.File,
		auth.Key, auth.Cert)
	if o.operations {
		ops, err := devkey.Create(filepath.Join(dir, "ops"), "", "hub-operations")
		if err != nil {
			t.Fatal(err)
		}
		b.tokenFile = filepath.Join(dir, "operator-token")
		if err := os.WriteFile(b.tokenFile, []byte(strings.Repeat("fl33t", 8)), 0o600); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b.httpAddr = ln.Addr().String()
		ln.Close()
		fmt.Fprintf(&conf, "operations_key = %q\noperations_cert = %q\n[http]\nlisten = %q\noperator_token_file = %q\n",
			ops.Key, ops.Cert, b.httpAddr, b.tokenFile)
	} else {
		conf.WriteString("[http]\nlisten = \"\"\n")
	}
	hcfg, err := hubd.Parse([]byte(conf.String()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Go(func() { _ = hubd.Run(ctx, hcfg, hubd.Options{Ready: func(a string) { ready <- a }}) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("kioskhub not ready")
	}
	if b.store, err = hubstore.OpenBolt(b.hubDB); err != nil {
		t.Fatal(err)
	}
	return b
}

// token mints an enrollment token for device.
func (b *bankSide) token(t *testing.T, device string) string {
	t.Helper()
	tok, err := registrar.MintToken(context.Background(), b.store, device, 30*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// enroll enrolls device over the provisioning listener with a file key;
// it returns the identity directory and the key file.
func (b *bankSide) enroll(t *testing.T, device string) (idDir, keyFile string) {
	t.Helper()
	idDir = filepath.Join(t.TempDir(), "identity")
	keyFile = filepath.Join(idDir, "device.key")
	brokerTLS, _ := hub.TLSConfig(b.brokerCA, "", "")
	if _, err := enroll.Enroll(context.Background(), enroll.Options{Broker: b.broker.ProvisionURL(), TLS: brokerTLS, Token: b.token(t, device), Dir: idDir,
		Keys: &devicekey.File{Path: keyFile}}); err != nil {
		t.Fatal(err)
	}
	return idDir, keyFile
}
