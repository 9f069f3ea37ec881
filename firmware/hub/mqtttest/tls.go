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
	// HubUsers, when set, turn on access control as a bank runs it (per
	// listener): on the mutual-TLS listener the username is the client
	// certificate's CN; a kiosk may use only <Prefix>/<CN>/#, the hub
	// users (their CNs) everything below <Prefix>/. On the provisioning
	// listener a client may only publish <Prefix>/provision/<client id>/csr
	// and read that request's answers: no one but the hub reads a token.
	HubUsers []string
	Prefix   string // default kiosk/v1
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
	global := ""
	var provACL string
	if len(o.HubUsers) > 0 {
		acl, err := WriteACLs(filepath.Dir(o.ClientCA), o.Prefix, o.HubUsers)
		if err != nil {
			t.Fatal(err)
		}
		global, provACL = acl.Global, acl.Provisioning
		lines = append(lines, "acl_file "+acl.MutualTLS)
	}
	port := 0
	if o.Provisioning {
		port = FreePort(t)
		lines = append(lines, fmt.Sprintf("listener %d 127.0.0.1", port),
			"cafile "+o.ClientCA, "certfile "+o.ServerCert, "keyfile "+o.ServerKey,
			"require_certificate false", "tls_version tlsv1.2")
		if provACL != "" {
			lines = append(lines, "acl_file "+provACL)
		}
	}
	b := startMosquitto(t, global, strings.Join(lines, "\n"))
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

// ACLs are the access-control files of a bank's broker (see
// TLSOptions.HubUsers): Global goes before the listeners, MutualTLS and
// Provisioning are the acl_file of each listener.
type ACLs struct {
	Global       string
	MutualTLS    string
	Provisioning string
}

// WriteACLs writes the two ACL files into dir (readable by mosquitto).
func WriteACLs(dir, prefix string, hubUsers []string) (ACLs, error) {
	if prefix == "" {
		prefix = "kiosk/v1"
	}
	var mtls strings.Builder
	for _, u := range hubUsers {
		fmt.Fprintf(&mtls, "user %s\ntopic readwrite %s/#\ntopic read $share/#\n", u, prefix)
	}
	// The username is the client certificate's CN (use_identity_as_username).
	fmt.Fprintf(&mtls, "\npattern readwrite %s/%%u/#\n", prefix)
	// Every kiosk follows the hubs' sealed presence (docs/mqtt.md).
	fmt.Fprintf(&mtls, "pattern read %s/_hub/presence/+\n", prefix)
	prov := fmt.Sprintf("pattern write %[1]s/provision/%%c/csr\npattern read %[1]s/provision/%%c/csr/accepted\npattern read %[1]s/provision/%%c/csr/rejected\n", prefix)
	a := ACLs{Global: "per_listener_settings true", MutualTLS: filepath.Join(dir, "mosquitto-mtls.acl"),
		Provisioning: filepath.Join(dir, "mosquitto-provisioning.acl")}
	for f, c := range map[string]string{a.MutualTLS: mtls.String(), a.Provisioning: prov} {
		if err := os.WriteFile(f, []byte(c), 0o644); err != nil {
			return ACLs{}, err
		}
	}
	return a, nil
}
