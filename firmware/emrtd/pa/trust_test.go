package pa_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/tlv"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/issuer"
)

// The real German and Dutch master lists (../shared/data/trust): every
// entry is read (brainpool, explicit parameters, RSA-PSS keys, negative
// serials) and each list verifies against the root that certifies its
// signer. The German root is itself a brainpool certificate.
func TestRealMasterLists(t *testing.T) {
	dir := testmedia.TrustData(t)
	at := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ml, root string
		n        int
	}{
		{"DE_ML_2026-05-28-08-28-45.ml", "DE_ROOT_CA_CSCA07.cer", 588},
		{"NL_ML_2026-07-22.ml", "NL_ROOT_CA.cer", 411},
	} {
		t.Run(tc.ml, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.ml))
			if err != nil {
				t.Fatal(err)
			}
			rootDER, err := os.ReadFile(filepath.Join(dir, tc.root))
			if err != nil {
				t.Fatal(err)
			}
			root, err := cert.Parse(rootDER)
			if err != nil {
				t.Fatal(err)
			}
			ml, err := pa.VerifyMasterListWith(b, []*x509.Certificate{root}, at)
			if err != nil {
				t.Fatal(err)
			}
			if len(ml.CSCAs) != tc.n || len(ml.Skipped) != 0 {
				t.Fatalf("%d CSCAs, skipped %+v", len(ml.CSCAs), ml.Skipped)
			}
			// Another country's root does not verify it.
			other := issue(t, nil).trust.CSCA
			if _, err := pa.VerifyMasterListWith(b, []*x509.Certificate{other}, at); !errors.Is(err, pa.ErrMasterList) {
				t.Fatalf("foreign root: %v", err)
			}
		})
	}
}

func TestCountryBinding(t *testing.T) {
	good := issue(t, nil)
	if r := pa.VerifyWith(good.sod(), good.dgs(), good.trust.StoreAt(now), pa.Options{At: now}); !r.Passed {
		t.Fatalf("good: %v", r.Err())
	}
	wrong := issue(t, func(o *issuer.Options) { o.WrongCountry = true })
	r := pa.VerifyWith(wrong.sod(), wrong.dgs(), wrong.trust.StoreAt(now), pa.Options{At: now})
	if r.Passed || !codesAre(r.Codes(), pa.CodeCountryMismatch) {
		t.Fatalf("wrong country: %v", r.Codes())
	}
	// SOD only: the certificates agree with each other, DG1 is not given.
	if r := pa.VerifyWith(wrong.sod(), nil, wrong.trust.StoreAt(now), pa.Options{At: now, SODOnly: true}); !r.Passed {
		t.Fatalf("sod only: %v", r.Err())
	}
	for state, want := range map[string]string{"D": "DE", "DEU": "DE", "GBD": "GB", "NLD": "NL", "EUE": "EU", "HKG": "HK", "RKS": "XK", "XOM": ""} {
		got, _ := pa.CertificateCountry(state)
		if got != want {
			t.Errorf("%s: %q, want %q", state, got, want)
		}
	}
	if !slices.Contains(pa.CertificateCountries("MAC"), "CN") {
		t.Error("MAC under CN")
	}
}

func codesAre(codes []string, want ...string) bool { return slices.Equal(codes, want) }

func TestMasterListSignerRights(t *testing.T) {
	d := issue(t, func(o *issuer.Options) { o.MasterList = issuer.MasterListDSSigned })
	store := pa.NewTrustStore(d.trust.Anchors...)
	var me *pa.MasterListError
	if _, err := store.LoadMasterList("rogue.ml", d.trust.MasterList, now); !errors.As(err, &me) || me.Code != pa.CodeMasterListSignerUnauthorized {
		t.Fatalf("DS-signed master list: %v", err)
	}
	if len(store.Certificates()) != 1 {
		t.Fatal("the rogue CSCA was added")
	}
	r := pa.VerifyWith(d.sod(), d.dgs(), store, pa.Options{At: now})
	if r.Passed || !r.HasCode(pa.CodeMasterListSignerUnauthorized) || !r.HasCode(pa.CodeCSCAUnknown) {
		t.Fatalf("codes %v", r.Codes())
	}
}

func TestBrainpoolPKI(t *testing.T) {
	d := issue(t, withAlg(issuer.SigECDSABrainpool))
	if _, err := x509.ParseCertificate(d.trust.CSCA.Raw); err == nil {
		t.Fatal("crypto/x509 parses the brainpool CSCA")
	}
	dir := t.TempDir()
	if err := d.trust.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	store, err := pa.LoadTrustStoreAt(dir, now)
	if err != nil || len(store.Problems()) != 0 || len(store.CRLs()) != 1 {
		t.Fatalf("load: %v %v", err, store.Problems())
	}
	r := pa.VerifyWith(d.sod(), d.dgs(), store, pa.Options{At: now})
	if !r.Passed || r.Verifier != "builtin" || r.Revocation.DS != pa.StatusGood {
		t.Fatalf("brainpool: %v %s", r.Err(), r.Verifier)
	}
	// A master list of brainpool CSCAs, signed by a brainpool signer.
	ml := issue(t, func(o *issuer.Options) {
		o.SignatureAlg, o.MasterList = issuer.SigECDSABrainpool, issuer.MasterListGood
	})
	s := pa.NewTrustStore(ml.trust.Anchors...)
	if n, err := s.LoadMasterList("bp.ml", ml.trust.MasterList, now); err != nil || n != 1 {
		t.Fatalf("brainpool master list: %d %v", n, err)
	}
}

// toBER re-encodes EF.SOD the way streaming CMS encoders do: the
// ContentInfo, its [0] and the SignedData with indefinite lengths, the
// eContent as a constructed OCTET STRING of two segments.
func toBER(t testing.TB, sod []byte) []byte {
	t.Helper()
	ci, _ := tlv.Unwrap(sod, lds.TagSOD)
	ciParts, _ := tlv.ParseAll(mustUnwrap(t, ci, 0x30))
	sd := mustUnwrap(t, ciParts[1].Value, 0x30)
	var parts [][]byte
	for rest := sd; len(rest) > 0; {
		o, next, err := tlv.Read(rest)
		if err != nil {
			t.Fatal(err)
		}
		raw := rest[:len(rest)-len(next)]
		if o.Tag == 0x30 && len(parts) == 2 { // encapContentInfo
			ec, _ := tlv.ParseAll(o.Value)
			content := mustUnwrap(t, ec[1].Value, 0x04)
			half := len(content) / 2
			oct := indef(0x24, tlv.Concat(tlv.Encode(0x04, content[:half]), tlv.Encode(0x04, content[half:])))
			raw = indef(0x30, tlv.Concat(tlv.Encode(0x06, ec[0].Value), indef(0xA0, oct)))
		}
		parts = append(parts, raw)
		rest = next
	}
	oid := tlv.Encode(0x06, ciParts[0].Value)
	return tlv.Encode(lds.TagSOD, indef(0x30, tlv.Concat(oid, indef(0xA0, indef(0x30, tlv.Concat(parts...))))))
}

func indef(tag byte, content []byte) []byte {
	return append(append([]byte{tag, 0x80}, content...), 0, 0)
}

func mustUnwrap(t testing.TB, b []byte, tag tlv.Tag) []byte {
	t.Helper()
	v, err := tlv.Unwrap(b, tag)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBERAndReorderedSigner(t *testing.T) {
	for _, alg := range []issuer.SignatureAlg{issuer.SigECDSAP256, issuer.SigRSAPSS} {
		d := issue(t, withAlg(alg))
		store := d.trust.StoreAt(now)
		b := toBER(t, d.sod())
		if _, err := tlv.Unwrap(b, lds.TagSOD); err != nil {
			t.Fatal(err)
		}
		r := pa.VerifyWith(b, d.dgs(), store, pa.Options{At: now})
		if !r.Passed || !r.SOD.BER {
			t.Fatalf("%s BER: %v", alg, r.Err())
		}
		// The signerInfo's issuer with its RDNs reversed: same length,
		// not covered by the signature.
		var seq pkix.RDNSequence
		if _, err := asn1.Unmarshal(d.trust.DS.RawIssuer, &seq); err != nil {
			t.Fatal(err)
		}
		slices.Reverse(seq)
		rev, _ := asn1.Marshal(seq)
		sod := append([]byte(nil), d.sod()...)
		i := bytes.LastIndex(sod, d.trust.DS.RawIssuer)
		if i < 0 || len(rev) != len(d.trust.DS.RawIssuer) || bytes.Equal(rev, d.trust.DS.RawIssuer) {
			t.Fatal("cannot reorder the issuer")
		}
		copy(sod[i:], rev)
		if r := pa.VerifyWith(sod, d.dgs(), store, pa.Options{At: now}); !r.Passed {
			t.Fatalf("%s reordered issuer: %v", alg, r.Err())
		}
	}
}

func TestProfiles(t *testing.T) {
	d := issue(t, nil)
	for _, tc := range []struct {
		name string
		mod  func(*issuer.Options)
		code string
	}{
		{"DS without keyUsage", func(o *issuer.Options) { o.DSNoKeyUsage = true }, pa.CodeDSKeyUsage},
		{"DS is a CA", func(o *issuer.Options) { o.DSIsCA = true }, pa.CodeDSIsCA},
	} {
		bad := issue(t, tc.mod)
		if r := pa.VerifyWith(bad.sod(), bad.dgs(), bad.trust.StoreAt(now), pa.Options{At: now}); r.Passed || !codesAre(r.Codes(), tc.code) {
			t.Errorf("%s: %v", tc.name, r.Codes())
		}
	}

	// Trust directory: only CA certificates with keyCertSign are anchors.
	dir := t.TempDir()
	if err := d.trust.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ds.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.trust.DS.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := pa.LoadTrustStoreAt(dir, now)
	if err != nil || len(s.Certificates()) != 1 || len(s.NotAnchors()) != 1 || len(s.Problems()) != 0 {
		t.Fatalf("load: %v, %d anchors, not anchors %v, problems %v", err, len(s.Certificates()), s.NotAnchors(), s.Problems())
	}
}

func TestCRLDefaults(t *testing.T) {
	d := issue(t, func(o *issuer.Options) { o.NoCRL = true })
	// No home country: warn. Home country UTO (or UT): decline.
	if r := pa.VerifyWith(d.sod(), d.dgs(), d.trust.StoreAt(now), pa.Options{At: now}); !r.Passed {
		t.Fatalf("foreign, no CRL: %v", r.Err())
	}
	for _, home := range []string{"UTO", "UT"} {
		r := pa.VerifyWith(d.sod(), d.dgs(), d.trust.StoreAt(now), pa.Options{At: now, HomeCountry: home})
		if r.Passed || !codesAre(r.Codes(), pa.CodeCRLMissing) {
			t.Fatalf("home %s, no CRL: %v", home, r.Codes())
		}
		st := d.trust.StoreAt(now)
		st.SetHomeCountry(home)
		if r := pa.VerifyWith(d.sod(), d.dgs(), st, pa.Options{At: now, MissingCRL: pa.CRLWarn}); !r.Passed {
			t.Fatalf("home %s, warn: %v", home, r.Err())
		}
	}
	// A CRL without nextUpdate is fresh for CRLMaxAge after thisUpdate.
	crl, err := issuer.NewCRL(d.trust.CSCA, d.trust.CSCAKey, issuer.CRLOptions{ThisUpdate: now.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := pa.ParseCRL(crl)
	if err != nil || !parsed.NextUpdate.IsZero() {
		t.Fatalf("CRL: %v %v", err, parsed.NextUpdate)
	}
	st := pa.NewTrustStore(d.trust.Anchors...)
	if err := st.AddCRL(parsed); err != nil {
		t.Fatal(err)
	}
	if r := pa.VerifyWith(d.sod(), d.dgs(), st, pa.Options{At: now}); !r.Passed {
		t.Fatalf("fresh CRL without nextUpdate: %v", r.Err())
	}
	late := now.Add(pa.DefaultCRLMaxAge)
	if r := pa.VerifyWith(d.sod(), d.dgs(), st, pa.Options{At: late}); !codesAre(r.Codes(), pa.CodeCRLStale) {
		t.Fatalf("old CRL without nextUpdate: %v", r.Codes())
	}
	if r := pa.VerifyWith(d.sod(), d.dgs(), st, pa.Options{At: now.Add(48 * time.Hour), CRLMaxAge: 24 * time.Hour}); !codesAre(r.Codes(), pa.CodeCRLStale) {
		t.Fatalf("configured age: %v", r.Codes())
	}
}

// withSKISigner rewrites the SOD's signerInfo to name its signer by
// subjectKeyIdentifier (RFC 5652 §5.3: version 3, sid [0]); the
// signature covers the signed attributes only, so it stays valid.
func withSKISigner(t *testing.T, sod, ski []byte) []byte {
	t.Helper()
	ci := mustUnwrap(t, sod, lds.TagSOD)
	ciParts, _ := tlv.ParseAll(mustUnwrap(t, ci, 0x30))
	sdParts, err := tlv.ParseAll(mustUnwrap(t, ciParts[1].Value, 0x30))
	if err != nil {
		t.Fatal(err)
	}
	last := len(sdParts) - 1
	sis, _ := tlv.ParseAll(sdParts[last].Value)
	si, _ := tlv.ParseAll(sis[0].Value)
	si[0] = tlv.Object{Tag: 0x02, Value: []byte{3}}
	si[1] = tlv.Object{Tag: 0x80, Value: ski}
	var siEnc, sdEnc [][]byte
	for _, o := range si {
		siEnc = append(siEnc, tlv.Encode(o.Tag, o.Value))
	}
	sdParts[last] = tlv.Object{Tag: 0x31, Value: tlv.Encode(0x30, tlv.Concat(siEnc...))}
	for _, o := range sdParts {
		sdEnc = append(sdEnc, tlv.Encode(o.Tag, o.Value))
	}
	sd := tlv.Encode(0xA0, tlv.Encode(0x30, tlv.Concat(sdEnc...)))
	return tlv.Encode(lds.TagSOD, tlv.Encode(0x30, tlv.Concat(tlv.Encode(0x06, ciParts[0].Value), sd)))
}

func TestSubjectKeyIdentifierSigner(t *testing.T) {
	d := issue(t, withAlg(issuer.SigECDSABrainpool))
	if len(d.trust.DS.SubjectKeyId) == 0 {
		t.Fatal("DS without subjectKeyIdentifier")
	}
	sod := withSKISigner(t, d.sod(), d.trust.DS.SubjectKeyId)
	r := pa.VerifyWith(sod, d.dgs(), d.trust.StoreAt(now), pa.Options{At: now})
	if !r.Passed || r.SOD.Signers[0].SubjectKeyID == nil {
		t.Fatalf("SKI signer: %v", r.Err())
	}
	other := append([]byte(nil), d.trust.DS.SubjectKeyId...)
	other[0] ^= 1
	if r := pa.VerifyWith(withSKISigner(t, d.sod(), other), d.dgs(), d.trust.StoreAt(now), pa.Options{At: now}); !r.HasCode(pa.CodeDSMissing) {
		t.Fatalf("unknown SKI: %v", r.Codes())
	}
}

// Organisations as issuing states (9303-3 §5): the EU and the UN bind to
// their own certificate countries only; the other organisation codes and
// the nationality-only codes bind to nothing (fail closed), each with a
// reason that says why; no organisation borrows a state's PKI, and no
// state's document passes under an organisation's.
func TestOrganisationIssuers(t *testing.T) {
	for _, tc := range []struct {
		state, certC string
		pass         bool
		reason       string
	}{
		{"EUE", "EU", true, ""},
		{"UNO", "UN", true, ""},
		{"UNA", "UN", true, ""},
		{"UNK", "UN", true, ""},
		{"UNO", "US", false, "UN"},
		{"XOM", "XO", false, "Sovereign Military Order of Malta"},
		{"XOM", "IT", false, "organisation code"},
		{"XPO", "FR", false, "INTERPOL"},
		{"XCC", "XC", false, "CARICOM"},
		{"XXA", "DE", false, "nationality code"},
		{"QQQ", "QQ", false, "not a 9303-3"},
		// A state's document signed under an organisation's PKI.
		{"DEU", "UN", false, "DE"},
		{"NLD", "EU", false, "NL"},
	} {
		d := issue(t, func(o *issuer.Options) { o.IssuingState, o.CountryCodeCerts = tc.state, tc.certC })
		r := pa.VerifyWith(d.sod(), d.dgs(), d.trust.StoreAt(now), pa.Options{At: now})
		if r.Passed != tc.pass {
			t.Errorf("%s under C=%s: passed %v (%v), want %v", tc.state, tc.certC, r.Passed, r.Codes(), tc.pass)
			continue
		}
		if tc.pass {
			continue
		}
		var reason string
		for _, c := range r.Failures() {
			if c.Name == pa.CheckCountry {
				reason = c.Reason
			}
		}
		if !codesAre(r.Codes(), pa.CodeCountryMismatch) || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s under C=%s: codes %v, reason %q, want country_mismatch saying %q", tc.state, tc.certC, r.Codes(), reason, tc.reason)
		}
	}
	for _, code := range []string{"XOM", "XPO", "XCC", "XCE", "XEC", "XBA", "XIM", "XCO", "XES", "XDC", "XXA", "XXB", "XXC", "XXX"} {
		if c := pa.CertificateCountries(code); c != nil {
			t.Errorf("%s binds to %v", code, c)
		}
	}
}
