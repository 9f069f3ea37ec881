package enrollwire

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func csr(t testing.TB, cn string) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustToken(t testing.TB, dev string) Token {
	t.Helper()
	tok, err := NewToken(dev)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestToken(t *testing.T) {
	tok := mustToken(t, "kiosk-1")
	got, dev, err := ParseToken(string(tok))
	if err != nil || dev != "kiosk-1" || got != tok {
		t.Fatalf("ParseToken: %q %q %v", got, dev, err)
	}
	if tok == mustToken(t, "kiosk-1") {
		t.Fatal("two tokens alike")
	}
	if len(tok.Hash()) != 64 || tok.Hash() == string(tok) {
		t.Fatalf("hash %q", tok.Hash())
	}
	for _, bad := range []string{"", "kiosk-1", "kt1.", "kt1.kiosk-1", "kt1.kiosk-1.short", "kt2.kiosk-1." + strings.Repeat("A", 43),
		"kt1.bad id." + strings.Repeat("A", 43), "kt1.provision." + strings.Repeat("A", 43)} {
		if _, _, err := ParseToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v", bad, err)
		}
	}
	if _, err := NewToken(ProvisionLevel); err == nil {
		t.Fatal("a token for the reserved id")
	}
}

func TestTopics(t *testing.T) {
	if got := RequestTopic("kiosk/v1", "k1"); got != "kiosk/v1/provision/k1/csr" {
		t.Fatal(got)
	}
	if d, err := DeviceOfRequestTopic("kiosk/v1", "kiosk/v1/provision/k1/csr"); err != nil || d != "k1" {
		t.Fatalf("%q %v", d, err)
	}
	for _, bad := range []string{"kiosk/v1/k1/csr", "kiosk/v1/provision/k1/csr/accepted", "kiosk/v1/provision//csr",
		"kiosk/v1/provision/k1/other", "other/provision/k1/csr", "kiosk/v1/provision/provision/csr"} {
		if _, err := DeviceOfRequestTopic("kiosk/v1", bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tok := mustToken(t, "k1")
	other := mustToken(t, "k2")
	enc := func(r any) []byte { b, _ := json.Marshal(r); return b }
	good := Request{V: 1, ID: "abcdefgh", Device: "k1", Token: tok, CSR: csr(t, "k1")}
	if r, c, err := ParseRequest(enc(good)); err != nil || r.Device != "k1" || c.Subject.CommonName != "k1" {
		t.Fatalf("good request: %v", err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "k1"}}, rsaKey)
	broken := csr(t, "k1")
	broken[len(broken)-3] ^= 0xff // the signature
	with := func(f func(*Request)) []byte { r := good; f(&r); return enc(r) }
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"oversized", make([]byte, MaxRequest+1), ErrMalformed},
		{"not json", []byte("{"), ErrMalformed},
		{"unknown field", []byte(`{"v":1,"x":1}`), ErrMalformed},
		{"trailing", append(enc(good), []byte(` {}`)...), ErrMalformed},
		{"version", with(func(r *Request) { r.V = 2 }), ErrMalformed},
		{"short id", with(func(r *Request) { r.ID = "a" }), ErrMalformed},
		{"bad device", with(func(r *Request) { r.Device = "a/b" }), ErrMalformed},
		{"no token", with(func(r *Request) { r.Token = "" }), ErrBadToken},
		{"token of another device", with(func(r *Request) { r.Token = other }), ErrWrongDevice},
		{"csr for another device", with(func(r *Request) { r.CSR = csr(t, "k2") }), ErrWrongDevice},
		{"csr garbage", with(func(r *Request) { r.CSR = []byte{0x30, 0x03, 1, 2, 3} }), ErrMalformed},
		{"csr bad signature", with(func(r *Request) { r.CSR = broken }), ErrMalformed},
		{"csr RSA key", with(func(r *Request) { r.CSR = rsaCSR }), ErrMalformed},
	} {
		if _, _, err := ParseRequest(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestSealOpen(t *testing.T) {
	tok := mustToken(t, "k1")
	b, err := Seal(tok, Rejected{V: 1, ID: "abcdefgh", Device: "k1", Code: CodeTokenUsed, Message: "used"})
	if err != nil {
		t.Fatal(err)
	}
	var r Rejected
	if err := Open(tok, b, &r); err != nil || r.Code != CodeTokenUsed {
		t.Fatalf("open: %+v %v", r, err)
	}
	if err := Open(mustToken(t, "k1"), b, &r); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("another token opened it: %v", err)
	}
	tampered := strings.Replace(string(b), "token_used", "token_uses", 1)
	if err := Open(tok, []byte(tampered), &r); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("tampered body: %v", err)
	}
	if err := Open(tok, make([]byte, MaxResponse+1), &r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized: %v", err)
	}
	// A sealed Rejected is not an Accepted (unknown fields).
	var a Accepted
	if err := Open(tok, b, &a); !errors.Is(err, ErrMalformed) {
		t.Fatalf("rejected opened as accepted: %v", err)
	}
}

// FuzzParseRequest: network input never panics, and whatever parses
// satisfies the checks.
func FuzzParseRequest(f *testing.F) {
	tok := mustToken(f, "k1")
	good, _ := json.Marshal(Request{V: 1, ID: "abcdefgh", Device: "k1", Token: tok, CSR: csr(f, "k1")})
	f.Add(good)
	f.Add([]byte(`{"v":1,"id":"abcdefgh","device":"k1","token":"kt1.k1.x","csr":"MAMCAQE="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, c, err := ParseRequest(b)
		if err != nil {
			return
		}
		if c == nil || c.Subject.CommonName != r.Device || !ValidDevice(r.Device) {
			t.Fatalf("accepted an inconsistent request: %+v", r)
		}
		if _, dev, err := ParseToken(string(r.Token)); err != nil || dev != r.Device {
			t.Fatalf("accepted a bad token: %v", err)
		}
	})
}

// FuzzOpen: answers from the network never panic, and nothing opens
// without the token's seal.
func FuzzOpen(f *testing.F) {
	tok := mustToken(f, "k1")
	b, _ := Seal(tok, Rejected{V: 1, ID: "abcdefgh", Device: "k1", Code: CodeBadCSR})
	f.Add(b)
	f.Add([]byte(`{"body":{},"mac":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Rejected
		_ = Open(tok, b, &r)
		var a Accepted
		_ = Open(tok, b, &a)
	})
}

func TestRenewRequestCheck(t *testing.T) {
	good := RenewRequest{V: 1, ID: "abcdefgh", Device: "k1", CSR: csr(t, "k1"), Expires: time.Now().Add(time.Minute)}
	if _, err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*RenewRequest){
		"version": func(r *RenewRequest) { r.V = 0 },
		"id":      func(r *RenewRequest) { r.ID = "x" },
		"device":  func(r *RenewRequest) { r.Device = "provision" },
		"other":   func(r *RenewRequest) { r.CSR = csr(t, "k2") },
		"garbage": func(r *RenewRequest) { r.CSR = []byte{1} },
		"expiry":  func(r *RenewRequest) { r.Expires = time.Time{} },
	} {
		r := good
		mod(&r)
		if _, err := r.Check(); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// FuzzParseBundle: a bundle file from a USB stick never panics.
func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(`{"v":1,"accepted":{"v":1,"id":"offline","device":"k1","chain":"","root":"","broker_ca":"","auth_cert":"","not_after":"2027-01-01T00:00:00Z"},"alg":"ES384","sig":"AA=="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if bu, a, err := ParseBundle(b); err == nil && (bu == nil || a == nil || !ValidDevice(a.Device)) {
			t.Fatal("accepted an inconsistent bundle")
		}
	})
}
