package mqtttest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TLSOptions configure a broker as a bank runs it: Port is a mutual-TLS
// listener (a client certificate from ClientCA is required), and with
// Provisioning a second listener on ProvisionPort authenticates only the
// server, for kiosks that enroll before they have a certificate.
type TLSOptions struct {
	ClientCA     string // PEM bundle the broker verifies client certificates with
	ServerCert   string
	ServerKey    string
	Provisioning bool
	// CRL, when set, is a PEM CRL file the mutual-TLS listener checks
	// (mosquitto's crlfile).
	CRL string
}

// StartMosquittoTLS starts mosquitto with the listeners of o. The files
// must be readable by the mosquitto user (see ReadableDir).
func StartMosquittoTLS(t testing.TB, o TLSOptions) *Broker {
	t.Helper()
	lines := []string{"cafile " + o.ClientCA, "certfile " + o.ServerCert, "keyfile " + o.ServerKey,
		"require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"}
	if o.CRL != "" {
		lines = append(lines, "crlfile "+o.CRL)
	}
	port := 0
	if o.Provisioning {
		port = FreePort(t)
		lines = append(lines, fmt.Sprintf("listener %d 127.0.0.1", port),
			"cafile "+o.ClientCA, "certfile "+o.ServerCert, "keyfile "+o.ServerKey,
			"require_certificate false", "tls_version tlsv1.2")
	}
	b := StartMosquittoWith(t, strings.Join(lines, "\n"))
	b.ProvisionPort = port
	return b
}

// TLSURL is the ssl:// address of the first (mutual-TLS) listener.
func (b *Broker) TLSURL() string { return "ssl://127.0.0.1:" + strconv.Itoa(b.Port) }

// ProvisionURL is the ssl:// address of the provisioning listener.
func (b *Broker) ProvisionURL() string { return "ssl://127.0.0.1:" + strconv.Itoa(b.ProvisionPort) }

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ReadableDir is a temporary directory that mosquitto, which drops root
// for its own user, can read; the test's files are test keys only.
func ReadableDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
