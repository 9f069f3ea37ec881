package pa_test

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/emrtd/pa"
	"kiosk/provisioning/issuer"
)

func TestRevocation(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mod    func(*issuer.Options)
		opts   pa.Options
		codes  []string
		ds     string
		warned string
	}{
		{"fresh CRL", nil, pa.Options{}, nil, pa.StatusGood, ""},
		{"DS revoked", func(o *issuer.Options) { o.RevokeDS = true }, pa.Options{}, []string{pa.CodeDSRevoked}, pa.StatusRevoked, ""},
		{"DS revoked in a stale CRL", func(o *issuer.Options) { o.RevokeDS = true; o.StaleCRL = true },
			pa.Options{StaleCRL: pa.CRLWarn}, []string{pa.CodeDSRevoked}, pa.StatusRevoked, ""},
		{"CSCA revoked", func(o *issuer.Options) { o.RevokeCSCA = true }, pa.Options{}, []string{pa.CodeCSCARevoked}, pa.StatusGood, ""},
		{"stale", func(o *issuer.Options) { o.StaleCRL = true }, pa.Options{}, []string{pa.CodeCRLStale}, pa.StatusGood, ""},
		{"stale, warn", func(o *issuer.Options) { o.StaleCRL = true }, pa.Options{StaleCRL: pa.CRLWarn}, nil, pa.StatusGood, pa.CodeCRLStale},
		{"missing", func(o *issuer.Options) { o.NoCRL = true }, pa.Options{}, nil, pa.StatusUnknown, pa.CodeCRLMissing},
		{"missing, decline", func(o *issuer.Options) { o.NoCRL = true }, pa.Options{MissingCRL: pa.CRLDecline},
			[]string{pa.CodeCRLMissing}, pa.StatusUnknown, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := issue(t, tt.mod)
			opts := tt.opts
			opts.At = now
			r := pa.VerifyWith(d.sod(), d.dgs(), d.trust.StoreAt(now), opts)
			if got := r.Codes(); !equalStrings(got, tt.codes) || r.Passed != (tt.codes == nil) {
				t.Fatalf("codes %v passed %v, want %v", got, r.Passed, tt.codes)
			}
			if r.Revocation == nil || r.Revocation.DS != tt.ds {
				t.Fatalf("revocation %+v", r.Revocation)
			}
			warned := ""
			for _, c := range r.Checks {
				if c.Warn {
					warned = c.Code
				}
			}
			if warned != tt.warned {
				t.Fatalf("warning %q, want %q", warned, tt.warned)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A CRL is only taken from the CSCA it names: a forged one (another key,
// same name) is refused, and so is one whose issuer is not trusted.
func TestAddCRLChecksTheSignature(t *testing.T) {
	d := issue(t, nil)
	other := issue(t, nil) // same CSCA name, another key
	forged, err := issuer.NewCRL(other.trust.CSCA, other.trust.CSCAKey, issuer.CRLOptions{
		ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour), Revoked: []*big.Int{d.trust.DS.SerialNumber}})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := pa.ParseCRL(forged)
	if err != nil {
		t.Fatal(err)
	}
	store := d.trust.Store()
	if err := store.AddCRL(crl); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged CRL accepted: %v", err)
	}
	if err := pa.NewTrustStore().AddCRL(crl); err == nil {
		t.Fatal("CRL of an untrusted issuer accepted")
	}
	if len(store.CRLs()) != 0 {
		t.Fatal("refused CRL kept")
	}
	// The trust directory loader keeps its problems.
	dir := t.TempDir()
	if err := d.trust.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "forged.crl"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.crl"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := pa.LoadTrustStoreAt(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.CRLs()) != 1 || len(s.Problems()) != 2 {
		t.Fatalf("CRLs %d problems %v", len(s.CRLs()), s.Problems())
	}
}

func TestMasterList(t *testing.T) {
	d := issue(t, func(o *issuer.Options) { o.MasterList = issuer.MasterListGood })
	home := d.trust.Anchors[0]
	store := pa.NewTrustStore(home)
	n, err := store.LoadMasterList("ml", d.trust.MasterList, now)
	if err != nil || n != 1 {
		t.Fatalf("good master list: %d %v", n, err)
	}
	if r := pa.VerifyWith(d.sod(), d.dgs(), store, pa.Options{At: now}); !r.Passed {
		t.Fatalf("document under a master list CSCA: %v", r.Codes())
	}
	// Without the home CSCA the signer is untrusted; nothing is added.
	empty := pa.NewTrustStore()
	var me *pa.MasterListError
	if _, err := empty.LoadMasterList("ml", d.trust.MasterList, now); !errors.Is(err, pa.ErrMasterList) ||
		!errors.As(err, &me) || len(empty.Certificates()) != 0 {
		t.Fatalf("untrusted signer: %v", err)
	}
	if rj := empty.RejectedMasterLists(); len(rj) != 1 || rj[0].Code != pa.CodeMasterListSigner {
		t.Fatalf("rejected %+v", rj)
	}
	// A bad signature: rejected with its reason, adds nothing; the
	// document then names the master list.
	bad := issue(t, func(o *issuer.Options) { o.MasterList = issuer.MasterListBadSignature })
	bs := pa.NewTrustStore(bad.trust.Anchors...)
	if _, err := bs.LoadMasterList("bad.ml", bad.trust.MasterList, now); !errors.As(err, &me) || me.Code != pa.CodeMasterListSignature {
		t.Fatalf("bad signature: %v", err)
	}
	if len(bs.Certificates()) != 1 {
		t.Fatal("a rejected master list added certificates")
	}
	r := pa.VerifyWith(bad.sod(), bad.dgs(), bs, pa.Options{At: now})
	if r.Passed || !r.HasCode(pa.CodeMasterListSignature) || !r.HasCode(pa.CodeCSCAUnknown) {
		t.Fatalf("codes %v", r.Codes())
	}
	// Expired signer.
	if _, err := pa.NewTrustStore(home).LoadMasterList("ml", d.trust.MasterList, now.AddDate(5, 0, 0)); !errors.As(err, &me) {
		t.Fatalf("expired signer: %v", err)
	}
	// Another content type (an SOD is SignedData too) is malformed.
	if _, _, _, err := pa.ParseMasterList(d.sod()[4:]); !errors.As(err, &me) || me.Code != pa.CodeMasterListMalformed {
		t.Fatalf("SOD as master list: %v", err)
	}
}

func FuzzParseMasterList(f *testing.F) {
	d := issue(f, func(o *issuer.Options) { o.MasterList = issuer.MasterListGood })
	f.Add(d.trust.MasterList)
	f.Add(d.sod())
	f.Add([]byte{0x30, 0x80})
	store := pa.NewTrustStore(d.trust.Anchors...)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, ml, _, err := pa.ParseMasterList(b)
		if err == nil && ml == nil {
			t.Fatal("nil list without error")
		}
		s := pa.NewTrustStore(store.Certificates()...)
		n, err := s.LoadMasterList("fuzz", b, now)
		if err != nil && n != 0 {
			t.Fatal("a rejected list added certificates")
		}
	})
}

func FuzzCRL(f *testing.F) {
	d := issue(f, func(o *issuer.Options) { o.RevokeDS = true })
	f.Add(d.trust.CRL)
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		crl, err := pa.ParseCRL(b)
		if err != nil {
			return
		}
		store := d.trust.Store()
		if store.AddCRL(crl) == nil {
			// Only a CRL signed by the CSCA gets in; then verification
			// must still run to a verdict.
			if err := crl.CheckSignatureFrom(d.trust.CSCA); err != nil {
				t.Fatalf("unsigned CRL accepted: %v", err)
			}
			r := pa.VerifyWith(d.sod(), d.dgs(), store, pa.Options{At: now})
			if r.Revocation == nil {
				t.Fatal("no revocation status")
			}
		}
	})
}

// An older CRL left beside a newer one of the same CSCA decides nothing:
// CurrentCRLs names the newest, which the check uses.
func TestCurrentCRLs(t *testing.T) {
	d := issue(t, nil)
	store := d.trust.Store()
	var newest []byte
	for i, age := range []time.Duration{72 * time.Hour, time.Hour, 24 * time.Hour} {
		der, err := issuer.NewCRL(d.trust.CSCA, d.trust.CSCAKey, issuer.CRLOptions{
			ThisUpdate: now.Add(-age), NextUpdate: now.Add(-age + 48*time.Hour), Number: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		crl, err := pa.ParseCRL(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.AddCRL(crl); err != nil {
			t.Fatal(err)
		}
		if age == time.Hour {
			newest = der
		}
	}
	cur := store.CurrentCRLs()
	if len(store.CRLs()) != 3 || len(cur) != 1 || string(cur[0].Raw) != string(newest) {
		t.Fatalf("%d CRLs, current %d (want the one issued an hour ago)", len(store.CRLs()), len(cur))
	}
	// The 72-hour-old CRL is past its next update, the current one is not.
	r := pa.VerifyWith(d.sod(), d.dgs(), store, pa.Options{At: now})
	if !r.Passed || r.Revocation == nil || r.Revocation.CRLFresh == nil || !*r.Revocation.CRLFresh {
		t.Fatalf("checked against a stale CRL: %v %+v", r.Codes(), r.Revocation)
	}
}

// FuzzCRLContents reaches what FuzzCRL's mutated bytes cannot: CRLs the
// CSCA really signed, with fuzzed revoked serials and update times. The
// verdict must follow the CRL: the document signer is revoked exactly when
// its serial is listed (from thisUpdate on), and a stale CRL declines.
func FuzzCRLContents(f *testing.F) {
	d := issue(f, nil)
	f.Add(true, int64(-3600), uint32(48), []byte{1, 2, 3})
	f.Add(false, int64(-100000), uint32(1), []byte{})
	f.Add(true, int64(3600), uint32(2), []byte{0xff, 0})
	f.Fuzz(func(t *testing.T, revokeDS bool, thisOffset int64, lifeHours uint32, serials []byte) {
		this := now.Add(time.Duration(thisOffset%(400*24*3600)) * time.Second).Truncate(time.Second)
		next := this.Add(time.Duration(1+lifeHours%2000) * time.Hour)
		var revoked []*big.Int
		for i := 0; i+2 <= len(serials) && len(revoked) < 64; i += 2 {
			sn := new(big.Int).SetBytes(serials[i : i+2])
			if sn.Sign() > 0 && sn.Cmp(d.trust.DS.SerialNumber) != 0 {
				revoked = append(revoked, sn)
			}
		}
		if revokeDS {
			revoked = append(revoked, d.trust.DS.SerialNumber)
		}
		der, err := issuer.NewCRL(d.trust.CSCA, d.trust.CSCAKey, issuer.CRLOptions{ThisUpdate: this, NextUpdate: next, Revoked: revoked})
		if err != nil {
			t.Skip(err) // a CRL x509 will not create is not one a CSCA issues
		}
		crl, err := pa.ParseCRL(der)
		if err != nil {
			t.Fatalf("CSCA-signed CRL does not parse: %v", err)
		}
		store := d.trust.Store()
		if err := store.AddCRL(crl); err != nil {
			t.Fatalf("CSCA-signed CRL refused: %v", err)
		}
		r := pa.VerifyWith(d.sod(), d.dgs(), store, pa.Options{At: now})
		if r.Revocation == nil {
			t.Fatal("no revocation status")
		}
		wantRevoked := revokeDS && !this.After(now)
		if (r.Revocation.DS == pa.StatusRevoked) != wantRevoked {
			t.Fatalf("DS %s, want revoked %v (listed %v, thisUpdate %v)", r.Revocation.DS, wantRevoked, revokeDS, this)
		}
		if wantRevoked && r.Passed {
			t.Fatal("a revoked document signer passed")
		}
		if !wantRevoked && now.After(next) && !slices.Contains(r.Codes(), pa.CodeCRLStale) {
			t.Fatalf("stale CRL (next update %v) without crl_stale: %v", next, r.Codes())
		}
	})
}
