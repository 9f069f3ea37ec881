package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/devicekey/swtpmtest"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
)

// A kiosk whose device key lives in a TPM (swtpm): it connects to
// mosquitto over mutual TLS with the TPM-held key, signs with it, and
// health says key_storage tpm.
func TestTPMKeyMutualTLS(t *testing.T) {
	ctx := context.Background()
	sw := swtpmtest.Start(t)
	dir := mqtttest.ReadableDir(t)
	ca, err := deviceca.Init(filepath.Join(dir, "ca"), "Test Bank", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dca, err := deviceca.Load(ca.RootCert, ca.IssuingCert, ca.IssuingKey)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := devicekey.OpenTPM("unix:" + sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tp.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kiosk-tpm"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	cert, err := dca.Issue(csr, "kiosk-tpm", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tp.Close() // swtpm serves one connection at a time: the daemon's
	chain := filepath.Join(dir, "device.crt")
	if err := os.WriteFile(chain, []byte(dca.ChainPEM(cert)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The broker's own CA and server certificate.
	bkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	btmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true,
		IsCA: true, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	bder, _ := x509.CreateCertificate(rand.Reader, btmpl, btmpl, &bkey.PublicKey, bkey)
	bk, _ := x509.MarshalPKCS8PrivateKey(bkey)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	brokerCrt, brokerKey := write("broker.crt", "CERTIFICATE", bder), write("broker.key", "PRIVATE KEY", bk)
	clientCA := filepath.Join(dir, "client-ca.pem")
	root, _ := os.ReadFile(ca.RootCert)
	iss, _ := os.ReadFile(ca.IssuingCert)
	if err := os.WriteFile(clientCA, append(root, iss...), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.StartMosquittoTLS(t, mqtttest.TLSOptions{ClientCA: clientCA, ServerCert: brokerCrt, ServerKey: brokerKey})

	r := start(t, fmt.Sprintf(`
[device]
id = "kiosk-tpm"
mode = "simulation"
[http]
listen = "127.0.0.1:0"
[camera]
backend = "none"
[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[hub]
brokers = [%q]
ca_file = %q
cert_file = %q
retry_max = "1s"
[ecr]
listen = ""
[transactions]
state_dir = %q
key_storage = "tpm"
tpm_device = %q
device_cert = %q
`, broker.TLSURL(), brokerCrt, chain, t.TempDir(), "unix:"+sw.Socket, chain))
	h := r.waitHealth(t, "hub ok over mutual TLS with the TPM key", func(h Health) bool { return h.Components["hub"].State == "ok" })
	if h.KeyStorage != "tpm" {
		t.Fatalf("key_storage %q", h.KeyStorage)
	}
	// The certificate (1 day) is inside the 14-day warning: health says so.
	if c := h.Components["certificate"]; c.State != "degraded" || h.Status != "degraded" {
		t.Fatalf("certificate health %+v (overall %s)", c, h.Status)
	}
	// Reports are signed inside the TPM and verify against the issued
	// certificate.
	rep := &txreport.Report{V: 1, TxID: "tx-tpm", Terminal: "kiosk-tpm", Kind: "payment", Amount: 1, Currency: "EUR",
		Started: txreport.Timestamp(time.Now()), Decided: txreport.Timestamp(time.Now()), Decision: txreport.Approved,
		Auth: txreport.Auth{Mode: txreport.AuthOffline}}
	env, err := r.d.tx.signer.Sign(rep)
	if err != nil {
		t.Fatal(err)
	}
	ring := txreport.NewKeyring()
	if err := ring.Add(cert); err != nil {
		t.Fatal(err)
	}
	if _, dev, err := ring.Verify(env); err != nil || dev.ID != "kiosk-tpm" {
		t.Fatalf("TPM-signed report: %v", err)
	}
}
