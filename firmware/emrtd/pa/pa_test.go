package pa_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/provisioning/issuer"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type doc struct {
	im    *cardimage.Image
	trust *issuer.Trust
}

func (d doc) sod() []byte { return d.im.Files[lds.FIDSOD] }
func (d doc) dgs() map[int][]byte {
	return map[int][]byte{1: d.im.Files[0x0101], 2: d.im.Files[0x0102]}
}

func issue(t testing.TB, mod func(*issuer.Options)) doc {
	t.Helper()
	var photo bytes.Buffer
	if err := jpeg.Encode(&photo, image.NewGray(image.Rect(0, 0, 32, 40)), nil); err != nil {
		t.Fatal(err)
	}
	o := issuer.Options{DocNumber: "L898902C3", Surname: "ERIKSSON", Given: "ANNA MARIA", Nationality: "UTO",
		Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456", Photo: photo.Bytes(), Now: now}
	if mod != nil {
		mod(&o)
	}
	im, trust, err := issuer.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return doc{im, trust}
}

func withAlg(a issuer.SignatureAlg) func(*issuer.Options) {
	return func(o *issuer.Options) { o.SignatureAlg = a }
}

// recert re-issues the CSCA certificate with the same key and name but
// changed by mod: the DS signature still verifies under it.
func recert(t *testing.T, tr *issuer.Trust, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := *tr.CSCA
	mod(&tmpl)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, tr.CSCA.PublicKey, tr.CSCAKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerify(t *testing.T) {
	ec := issue(t, nil)
	rsaDoc := issue(t, withAlg(issuer.SigRSA2048))
	pss := issue(t, withAlg(issuer.SigRSAPSS))
	flipAt := func(b []byte, off int) []byte {
		c := append([]byte(nil), b...)
		c[off] ^= 0x01
		return c
	}
	flipSig := func(d doc) []byte { return flipAt(d.sod(), len(d.sod())-3) } // the signature ends the SOD
	// The serial inside the embedded DS certificate (certificates precede
	// signerInfos, so the first occurrence is the certificate's).
	serialOff := bytes.Index(ec.sod(), ec.trust.DS.SerialNumber.Bytes())
	// A hash byte inside the LDSSecurityObject.
	dg1Hash, _ := lds.ParseSOD(ec.sod())
	hashOff := bytes.Index(ec.sod(), dg1Hash.LDS.Hashes[0].Hash)

	tests := []struct {
		name     string
		sod      []byte
		dgs      map[int][]byte
		store    *pa.TrustStore
		at       time.Time
		codes    []string
		verifier string
	}{
		{"ecdsa", ec.sod(), ec.dgs(), ec.trust.Store(), now, nil, "smallstep/pkcs7"},
		{"rsa pkcs1", rsaDoc.sod(), rsaDoc.dgs(), rsaDoc.trust.Store(), now, nil, "smallstep/pkcs7"},
		{"rsa-pss", pss.sod(), pss.dgs(), pss.trust.Store(), now, nil, "builtin"},
		{"only DG1 read", ec.sod(), map[int][]byte{1: ec.im.Files[0x0101]}, ec.trust.Store(), now, nil, "smallstep/pkcs7"},
		{"ecdsa signature", flipSig(ec), ec.dgs(), ec.trust.Store(), now, []string{pa.CodeSignatureInvalid}, "smallstep/pkcs7"},
		{"rsa signature", flipSig(rsaDoc), rsaDoc.dgs(), rsaDoc.trust.Store(), now, []string{pa.CodeSignatureInvalid}, "smallstep/pkcs7"},
		{"pss signature", flipSig(pss), pss.dgs(), pss.trust.Store(), now, []string{pa.CodeSignatureInvalid}, "builtin"},
		{"content changed", flipAt(ec.sod(), hashOff), ec.dgs(), ec.trust.Store(), now,
			[]string{pa.CodeMessageDigestMismatch, pa.CodeSignatureInvalid, "dg_hash_mismatch:DG1"}, "smallstep/pkcs7"},
		{"DG3 not in SOD", ec.sod(), map[int][]byte{1: ec.im.Files[0x0101], 3: {0x63, 0x00}}, ec.trust.Store(), now,
			[]string{"dg_not_in_sod:DG3"}, "smallstep/pkcs7"},
		{"no DG", ec.sod(), nil, ec.trust.Store(), now, []string{pa.CodeNoDataGroups}, "smallstep/pkcs7"},
		{"DS not yet valid", ec.sod(), ec.dgs(), ec.trust.Store(), now.Add(-48 * time.Hour), []string{pa.CodeDSNotYetValid}, "smallstep/pkcs7"},
		{"everything expired", ec.sod(), ec.dgs(), ec.trust.Store(), now.AddDate(30, 0, 0),
			[]string{pa.CodeDSExpired, pa.CodeCSCAExpired}, "smallstep/pkcs7"},
		{"CSCA expired", ec.sod(), ec.dgs(), pa.NewTrustStore(recert(t, ec.trust, func(c *x509.Certificate) {
			c.NotAfter = now.Add(-time.Hour)
		})), now, []string{pa.CodeCSCAExpired}, "smallstep/pkcs7"},
		{"CSCA not a CA", ec.sod(), ec.dgs(), pa.NewTrustStore(recert(t, ec.trust, func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid, c.MaxPathLenZero, c.KeyUsage = false, false, false, x509.KeyUsageDigitalSignature
		})), now, []string{pa.CodeCSCANotCA}, "smallstep/pkcs7"},
		{"CSCA without keyCertSign", ec.sod(), ec.dgs(), pa.NewTrustStore(recert(t, ec.trust, func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageCRLSign
		})), now, []string{pa.CodeCSCANotCA}, "smallstep/pkcs7"},
		{"other issuer's CSCA", ec.sod(), ec.dgs(), rsaDoc.trust.Store(), now, []string{pa.CodeCSCAUnknown}, "smallstep/pkcs7"},
		{"no trust store", ec.sod(), ec.dgs(), nil, now, []string{pa.CodeNoTrustStore}, "smallstep/pkcs7"},
		{"signer certificate missing", flipAt(ec.sod(), serialOff), ec.dgs(), ec.trust.Store(), now,
			[]string{pa.CodeDSMissing}, ""},
		{"malformed", ec.sod()[:100], ec.dgs(), ec.trust.Store(), now, []string{pa.CodeSODMalformed}, ""},
		{"not a SOD", ec.im.Files[0x0101], ec.dgs(), ec.trust.Store(), now, []string{pa.CodeSODMalformed}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := pa.Verify(tt.sod, tt.dgs, tt.store, tt.at)
			if got := r.Codes(); !reflect.DeepEqual(got, tt.codes) {
				t.Fatalf("codes %v, want %v\n%v", got, tt.codes, r.Err())
			}
			if r.Passed != (tt.codes == nil) || (r.Err() == nil) != r.Passed {
				t.Fatalf("Passed=%v Err=%v", r.Passed, r.Err())
			}
			if r.Verifier != tt.verifier {
				t.Errorf("verifier %q, want %q", r.Verifier, tt.verifier)
			}
			for _, c := range r.Checks {
				if c.Reason == "" || (c.OK && !c.Warn) == (c.Code != "") {
					t.Errorf("check %+v", c)
				}
			}
			var pe *pa.Error
			if !r.Passed && !errors.As(r.Err(), &pe) {
				t.Errorf("Err() %T", r.Err())
			}
		})
	}
}

func TestVerifyPassedResult(t *testing.T) {
	d := issue(t, nil)
	r := pa.Verify(d.sod(), d.dgs(), d.trust.Store(), now)
	if !r.Passed || r.DS == nil || !r.DS.Equal(d.trust.DS) || r.CSCA == nil || !r.CSCA.Equal(d.trust.CSCA) ||
		r.HashAlgorithm.String() != "SHA-256" || r.SOD == nil {
		t.Fatalf("%+v", r)
	}
	names := map[string]int{}
	for _, c := range r.Checks {
		names[c.Name]++
	}
	for _, n := range []string{pa.CheckSODStructure, pa.CheckHashAlgorithm, pa.CheckDSCertificate, pa.CheckContentType,
		pa.CheckMessageDigest, pa.CheckSignature, pa.CheckSigningTime, pa.CheckDSValidity, pa.CheckDSKeyUsage,
		pa.CheckCSCA, pa.CheckCSCAValidity, pa.CheckCSCAIsCA} {
		if names[n] != 1 {
			t.Errorf("check %s ran %d times", n, names[n])
		}
	}
	if names[pa.CheckDGHash] != 2 {
		t.Errorf("%d DG checks", names[pa.CheckDGHash])
	}
}

func TestLoadTrustStore(t *testing.T) {
	a, b := issue(t, nil), issue(t, withAlg(issuer.SigRSA2048))
	dir := t.TempDir()
	pemOf := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	files := map[string][]byte{
		"both.pem":    append(pemOf(a.trust.CSCA), pemOf(b.trust.CSCA)...),
		"a.der":       a.trust.CSCA.Raw,
		"garbage.crt": []byte("not a certificate"),
		"key.pem":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"broken.pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}),
		".hidden":     []byte("ignored"),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := pa.LoadTrustStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Certificates()) != 2 {
		t.Errorf("%d certificates", len(s.Certificates()))
	}
	var bad []string
	for _, p := range s.Problems() {
		bad = append(bad, filepath.Base(p.File))
	}
	if !reflect.DeepEqual(bad, []string{"broken.pem", "garbage.crt", "key.pem"}) {
		t.Errorf("problems %v", s.Problems())
	}
	for _, d := range []doc{a, b} {
		if r := pa.Verify(d.sod(), d.dgs(), s, now); !r.Passed {
			t.Error(r.Err())
		}
	}

	empty := t.TempDir()
	if _, err := pa.LoadTrustStore(empty); !errors.Is(err, pa.ErrNoTrustAnchors) {
		t.Errorf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(empty, "x.pem"), []byte("junk"), 0o644)
	if _, err := pa.LoadTrustStore(empty); !errors.Is(err, pa.ErrNoTrustAnchors) {
		t.Errorf("junk-only dir: %v", err)
	}
	if _, err := pa.LoadTrustStore(filepath.Join(empty, "missing")); err == nil {
		t.Error("missing dir loaded")
	}
}

// FuzzVerify feeds mutated SODs through the whole verification (including
// the CMS library): it must never panic and never pass.
func FuzzVerify(f *testing.F) {
	d := issue(f, nil)
	p := issue(f, withAlg(issuer.SigRSAPSS))
	b := issue(f, withAlg(issuer.SigECDSABrainpool))
	f.Add(d.sod(), 0)
	f.Add(p.sod(), 1)
	f.Add(b.sod(), 2)
	f.Add(toBER(f, d.sod()), 0)
	stores := []*pa.TrustStore{d.trust.Store(), p.trust.Store(), b.trust.Store()}
	dgsets := []map[int][]byte{d.dgs(), p.dgs(), b.dgs()}
	orig := [][]byte{d.sod(), p.sod(), b.sod()}
	f.Fuzz(func(t *testing.T, sod []byte, which int) {
		i := int(uint(which) % 3)
		r := pa.Verify(sod, dgsets[i], stores[i], now)
		if r.Passed && !bytes.Equal(sod, orig[i]) {
			// Only a re-encoding with the same signed content may pass.
			s, err := lds.ParseSOD(sod)
			o, _ := lds.ParseSOD(orig[i])
			if err != nil || !bytes.Equal(s.Content, o.Content) || !bytes.Equal(s.Signers[0].SignedAttrsDER, o.Signers[0].SignedAttrsDER) {
				t.Fatalf("mutated SOD passed")
			}
		}
	})
}
