package hub

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/hub/mqtttest"
)

type pki struct {
	dir string
}

// issue writes <name>.crt and <name>.key signed by parent (nil: self-signed CA).
func (p pki) issue(t *testing.T, name string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: ca,
	}
	if ca {
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
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	write := func(file string, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(p.dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".crt", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", kb)
	return cert, key
}

func (p pki) path(f string) string { return filepath.Join(p.dir, f) }

// Mutual TLS against mosquitto with require_certificate: the kiosk with
// a client certificate from the bank's CA connects; without one, or with
// one from another CA, it does not.
func TestMosquittoTLSClientCertificate(t *testing.T) {
	// mosquitto started as root drops to the "mosquitto" user, which must
	// be able to read the files: use a world-readable test directory.
	p := pki{dir: t.TempDir()}
	for d := p.dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca, caKey := p.issue(t, "ca", true, nil, nil)
	p.issue(t, "server", false, ca, caKey)
	p.issue(t, "kiosk", false, ca, caKey)
	rogue, rogueKey := p.issue(t, "rogue-ca", true, nil, nil)
	p.issue(t, "rogue", false, rogue, rogueKey)
	b := mqtttest.StartMosquittoWith(t, strings.Join([]string{
		"cafile " + p.path("ca.crt"), "certfile " + p.path("server.crt"), "keyfile " + p.path("server.key"),
		"require_certificate true", "tls_version tlsv1.2",
	}, "\n"))
	url := "ssl://127.0.0.1:" + strconv.Itoa(b.Port)

	for _, tc := range []struct {
		name, cert, key string
		ok              bool
	}{
		{"client certificate", p.path("kiosk.crt"), p.path("kiosk.key"), true},
		{"no client certificate", "", "", false},
		{"certificate from another CA", p.path("rogue.crt"), p.path("rogue.key"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg, err := TLSConfig(p.path("ca.crt"), tc.cert, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Options{Brokers: []string{url}, DeviceID: "kiosk-tls", TopicPrefix: "kiosk/v1", TLS: tlsCfg,
				ConnectTimeout: 2 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			stop := runClient(t, c)
			defer stop()
			if tc.ok {
				waitStatus(t, c, true)
				return
			}
			time.Sleep(1500 * time.Millisecond)
			if s := c.Status(); s.Connected || s.Detail == "" {
				t.Fatalf("connected without a valid client certificate: %+v", s)
			}
		})
	}
}

// The first broker is dead: the client connects to the second, and says so.
func TestBrokerFailover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "tcp://" + ln.Addr().String()
	ln.Close()
	b := mqtttest.StartMosquitto(t)
	c, stop := startClient(t, dead, b.URL())
	defer stop()
	if s := waitStatus(t, c, true); s.Broker != b.URL() {
		t.Fatalf("connected to %q, want %q", s.Broker, b.URL())
	}
	// The second dies, the first comes up: the client moves there.
	b2 := mqtttest.StartMosquitto(t)
	c2, stop2 := startClient(t, b2.URL(), b.URL())
	defer stop2()
	if s := waitStatus(t, c2, true); s.Broker != b2.URL() {
		t.Fatalf("first choice: %q", s.Broker)
	}
	b2.Stop()
	waitStatus(t, c2, false)
	if s := waitStatus(t, c2, true); s.Broker != b.URL() {
		t.Fatalf("after failover: %q, want %q", s.Broker, b.URL())
	}
}
