package ecr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/session"
)

type noChip struct{}

func (noChip) Read(ctx context.Context, _ emrtd.Password) (document.Document, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

type noFace struct{}

func (noFace) Verify(ctx context.Context, _ []byte, _ func(session.FaceProgress)) (session.FaceResult, error) {
	return session.FaceResult{}, nil
}

type okAuth struct{}

func (okAuth) Authorize(context.Context, session.Request) (session.Authorization, error) {
	return session.Authorization{Approved: true}, nil
}
func (okAuth) Commit(context.Context, session.Record) error { return nil }

func newAPI(t *testing.T, token string) (*httptest.Server, *session.Machine) {
	t.Helper()
	m := session.New(session.Options{Chip: noChip{}, Face: noFace{}, Authorizer: okAuth{},
		Policy: session.Policy{ResultDisplay: 10 * time.Millisecond, CardTimeout: 5 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for m.Status().State != session.Idle {
		time.Sleep(time.Millisecond)
	}
	srv := httptest.NewServer(Handler(Options{Sessions: m, Token: token}))
	t.Cleanup(srv.Close)
	return srv, m
}

func call(t *testing.T, c *http.Client, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestPaymentLifecycle(t *testing.T) {
	srv, _ := newAPI(t, "s3cret")
	c := srv.Client()
	pay := `{"amount_minor":2350,"currency":"cny","merchant_ref":"till-7-0001"}`

	if code, _ := call(t, c, "POST", srv.URL+"/v1/payments", "", pay); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := call(t, c, "POST", srv.URL+"/v1/payments", "wrong", pay); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	code, p := call(t, c, "POST", srv.URL+"/v1/payments", "s3cret", pay)
	if code != 201 || p["status"] != "pending" || p["currency"] != "CNY" || p["state"] != "insert_card" {
		t.Fatalf("create: %d %v", code, p)
	}
	id := p["id"].(string)

	// Retrying the same request is safe.
	code, again := call(t, c, "POST", srv.URL+"/v1/payments", "s3cret", pay)
	if code != 200 || again["id"] != id {
		t.Fatalf("retry: %d %v", code, again)
	}
	if code, _ := call(t, c, "POST", srv.URL+"/v1/payments", "s3cret", `{"amount_minor":999,"currency":"CNY","merchant_ref":"till-7-0001"}`); code != 409 {
		t.Fatalf("reused reference with another amount: %d", code)
	}
	if code, b := call(t, c, "POST", srv.URL+"/v1/payments", "s3cret", `{"amount_minor":100,"currency":"CNY","merchant_ref":"till-7-0002"}`); code != 409 || b["error"] != "busy" {
		t.Fatalf("second payment while busy: %d %v", code, b)
	}
	for _, k := range []string{id, "till-7-0001"} {
		if code, g := call(t, c, "GET", srv.URL+"/v1/payments/"+k, "s3cret", ""); code != 200 || g["id"] != id {
			t.Fatalf("get %s: %d %v", k, code, g)
		}
	}
	if code, _ := call(t, c, "POST", srv.URL+"/v1/payments/"+id+"/cancel", "s3cret", ""); code != 202 {
		t.Fatalf("cancel: %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, g := call(t, c, "GET", srv.URL+"/v1/payments/"+id, "s3cret", "")
		if g["status"] == "declined" {
			if rs := g["reasons"].([]any); rs[0].(map[string]any)["code"] != "cancelled_by_till" {
				t.Fatalf("reasons %v", rs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never declined after cancel: %v", g)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := call(t, c, "POST", srv.URL+"/v1/payments/"+id+"/cancel", "s3cret", ""); code != 409 {
		t.Fatalf("cancel a finished payment: %d", code)
	}
	if code, _ := call(t, c, "GET", srv.URL+"/v1/payments/nope", "s3cret", ""); code != 404 {
		t.Fatalf("unknown payment: %d", code)
	}
}

func TestBadRequests(t *testing.T) {
	srv, _ := newAPI(t, "tok")
	c := srv.Client()
	for _, body := range []string{
		`{"amount_minor":-5,"currency":"CNY","merchant_ref":"a"}`,
		`{"amount_minor":5,"currency":"YUAN","merchant_ref":"b"}`,
		`{"amount_minor":5,"currency":"CNY"}`,
		`{"amount_minor":"5","currency":"CNY","merchant_ref":"c"}`,
		`{"amount_minor":5,"currency":"CNY","merchant_ref":"d","tip":1}`,
		`not json`,
	} {
		if code, b := call(t, c, "POST", srv.URL+"/v1/payments", "tok", body); code != 400 || b["error"] == "" {
			t.Errorf("%s: %d %v", body, code, b)
		}
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/payments", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 415 {
		t.Fatalf("text/plain: %v %v", err, resp.StatusCode)
	}
}

// With no token configured the till must present a client certificate
// that the TLS layer verified (mutual TLS).
func TestMutualTLS(t *testing.T) {
	ca, caKey := selfSigned(t, "till CA", true, nil, nil)
	client, clientKey := selfSigned(t, "till 7", false, ca, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	m := session.New(session.Options{Chip: noChip{}, Face: noFace{}, Authorizer: okAuth{}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	srv := httptest.NewUnstartedServer(Handler(Options{Sessions: m}))
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()

	noCert := srv.Client()
	if code, _ := call(t, noCert, "GET", srv.URL+"/v1/payments/x", "", ""); code != 401 {
		t.Fatalf("without a client certificate: %d", code)
	}
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{client.Raw}, PrivateKey: clientKey}}
	withCert := &http.Client{Transport: tr}
	if code, _ := call(t, withCert, "GET", srv.URL+"/v1/payments/x", "", ""); code != 404 {
		t.Fatalf("with a client certificate: %d", code)
	}
}

func selfSigned(t *testing.T, cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}
