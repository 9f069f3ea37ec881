package pa_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/pa"
	"kiosk/internal/testmedia"
)

// realStore trusts every CSCA of the German and Dutch master lists, each
// list verified against its root.
func realStore(t *testing.T) *pa.TrustStore {
	t.Helper()
	dir := testmedia.TrustData(t)
	s := pa.NewTrustStore()
	for ml, root := range map[string]string{"DE_ML_2026-05-28-08-28-45.ml": "DE_ROOT_CA_CSCA07.cer", "NL_ML_2026-07-22.ml": "NL_ROOT_CA.cer"} {
		b, err := os.ReadFile(filepath.Join(dir, ml))
		if err != nil {
			t.Fatal(err)
		}
		rb, err := os.ReadFile(filepath.Join(dir, root))
		if err != nil {
			t.Fatal(err)
		}
		r, err := cert.Parse(rb)
		if err != nil {
			t.Fatal(err)
		}
		l, err := pa.VerifyMasterListWith(b, []*x509.Certificate{r}, time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range l.CSCAs {
			s.Add(c)
		}
	}
	return s
}

// Real SODs (testdata/sod/README.md) verify as of their signing, SOD
// only (the data groups are not public), against the real master lists.
func TestRealSODs(t *testing.T) {
	store := realStore(t)
	for _, tc := range []struct {
		file      string
		ber       bool
		reordered bool // signerInfo issuer bytes differ from the certificate's
		x509Fails bool // crypto/x509 cannot read the document signer
	}{
		{"at.sod", false, false, true},
		{"nz.sod", true, false, false},
		{"my.sod", false, true, false},
		{"ru.sod", false, false, true},
		{"uk.sod", false, false, true},
		{"sg.sod", false, false, false},
		{"cn.sod", false, false, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			sod, err := os.ReadFile(filepath.Join("testdata", "sod", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			at, _, err := pa.SigningTime(sod)
			if err != nil {
				t.Fatal(err)
			}
			r := pa.VerifyWith(sod, nil, store, pa.Options{At: at, SODOnly: true})
			if !r.Passed {
				t.Fatalf("%v", r.Err())
			}
			if r.SOD.BER != tc.ber {
				t.Errorf("BER %v", r.SOD.BER)
			}
			if got := !bytes.Equal(r.DS.RawIssuer, r.SOD.Signers[0].IssuerRaw); got != tc.reordered {
				t.Errorf("reordered issuer %v", got)
			}
			if _, err := x509.ParseCertificate(r.DS.Raw); (err != nil) != tc.x509Fails {
				t.Errorf("crypto/x509 on the DS: %v", err)
			}
			// Without the data groups and without --sod-only nothing passes.
			if r := pa.VerifyWith(sod, nil, store, pa.Options{At: at}); r.Passed {
				t.Error("passed without data groups")
			}
			// Decades later the certificates have expired.
			if r := pa.VerifyWith(sod, nil, store, pa.Options{At: at.AddDate(40, 0, 0), SODOnly: true}); r.Passed || !r.HasCode(pa.CodeDSExpired) {
				t.Errorf("expired: %v", r.Codes())
			}
		})
	}
}
