package ctl

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/emrtd/lds"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/issuer"
)

func runCtl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb, "test")
	return code, out.String(), errb.String()
}

// The real master lists import with nothing skipped, and real SODs
// verify against the result as of their signing (SOD only).
func TestEIDTrustImportVerifyReal(t *testing.T) {
	data := testmedia.TrustData(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		ml, root, want string
	}{
		{"DE_ML_2026-05-28-08-28-45.ml", "DE_ROOT_CA_CSCA07.cer", "imported 588, skipped 0"},
		{"NL_ML_2026-07-22.ml", "NL_ROOT_CA.cer", "imported 411, skipped 0"},
	} {
		code, out, errs := runCtl("eid", "trust", "import", "--master-list", filepath.Join(data, tc.ml),
			"--root", filepath.Join(data, tc.root), "--out", dir, "--at", "2026-09-01T00:00:00Z")
		if code != 0 || !strings.Contains(out, tc.want+"\n") {
			t.Fatalf("import %s: %d %s %s", tc.ml, code, out, errs)
		}
	}
	// The wrong root: exit 1 with the reason.
	code, out, _ := runCtl("eid", "trust", "import", "--master-list", filepath.Join(data, "NL_ML_2026-07-22.ml"),
		"--root", filepath.Join(data, "DE_ROOT_CA_CSCA07.cer"), "--out", t.TempDir(), "--json")
	var res struct {
		Verified bool   `json:"verified"`
		Code     string `json:"code"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Verified || res.Code != "master_list_signer_untrusted" {
		t.Fatalf("wrong root: %d %s", code, out)
	}
	for _, f := range []string{"at.sod", "nz.sod", "my.sod", "ru.sod", "uk.sod", "sg.sod", "cn.sod"} {
		sod := filepath.Join("..", "..", "firmware", "emrtd", "pa", "testdata", "sod", f)
		code, out, errs := runCtl("eid", "verify", "--sod", sod, "--trust", dir, "--sod-only", "--at", "signing", "--json")
		var r struct {
			Verified bool     `json:"verified"`
			Failures []string `json:"failures"`
			AtSource string   `json:"at_source"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !r.Verified || len(r.Failures) != 0 || r.AtSource == "" {
			t.Fatalf("verify %s: %d %s %s", f, code, out, errs)
		}
	}
}

func TestEIDVerifyFiles(t *testing.T) {
	var photo bytes.Buffer
	if err := jpeg.Encode(&photo, image.NewGray(image.Rect(0, 0, 32, 40)), nil); err != nil {
		t.Fatal(err)
	}
	im, trust, err := issuer.Issue(issuer.Options{DocNumber: "L898902C3", Surname: "ERIKSSON", Given: "ANNA", Nationality: "UTO",
		Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456", Photo: photo.Bytes(), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := trust.WriteDir(filepath.Join(dir, "trust")); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sod, dg1, dg2 := write("sod", im.Files[lds.FIDSOD]), write("dg1", im.Files[0x0101]), write("dg2", im.Files[0x0102])
	tr := filepath.Join(dir, "trust")
	if code, out, errs := runCtl("eid", "verify", "--sod", sod, "--dg", "1="+dg1, "--dg", "2="+dg2, "--trust", tr); code != 0 || !strings.HasPrefix(out, "VERIFIED") {
		t.Fatalf("good: %d %s %s", code, out, errs)
	}
	bad := append([]byte(nil), im.Files[0x0102]...)
	bad[len(bad)-10] ^= 1
	if code, out, _ := runCtl("eid", "verify", "--sod", sod, "--dg", "1="+dg1, "--dg", "2="+write("bad", bad), "--trust", tr); code != 1 || !strings.Contains(out, "dg_hash_mismatch") {
		t.Fatalf("altered DG2: %d %s", code, out)
	}
	for name, args := range map[string][]string{
		"no dg":     {"--sod", sod, "--trust", tr},
		"bad --at":  {"--sod", sod, "--trust", tr, "--sod-only", "--at", "yesterday"},
		"bad --dg":  {"--sod", sod, "--trust", tr, "--dg", "x"},
		"no trust":  {"--sod", sod, "--sod-only"},
		"no dir":    {"--sod", sod, "--trust", filepath.Join(dir, "nope"), "--sod-only"},
		"no sod":    {"--sod", filepath.Join(dir, "nope"), "--trust", tr, "--sod-only"},
		"bad flag":  {"--bogus"},
		"extra arg": {"--sod", sod, "--trust", tr, "--sod-only", "x"},
	} {
		if code, _, _ := runCtl(append([]string{"eid", "verify"}, args...)...); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
	if code, _, _ := runCtl("eid", "trust", "import", "--out", dir); code != 2 {
		t.Error("import usage")
	}
}

// A master list with an unreadable entry imports the rest and names the
// skip; one signed by a document signer does not import (exit 1).
func TestEIDTrustImportIssued(t *testing.T) {
	var photo bytes.Buffer
	if err := jpeg.Encode(&photo, image.NewGray(image.Rect(0, 0, 32, 40)), nil); err != nil {
		t.Fatal(err)
	}
	opts := issuer.Options{DocNumber: "L898902C3", Surname: "ERIKSSON", Given: "ANNA", Nationality: "UTO",
		Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456", Photo: photo.Bytes(), Now: time.Now()}
	_, tr, err := issuer.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	signer, key, err := issuer.NewMasterListSigner(tr.CSCA, tr.CSCAKey, issuer.SigECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	junk := &x509.Certificate{Raw: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}
	ml, err := issuer.NewMasterList(signer, key, issuer.SigECDSAP256, []*x509.Certificate{tr.CSCA, junk}, time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	mlPath := filepath.Join(dir, "list.ml")
	rootPath := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(mlPath, ml, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tr.CSCA.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "trust")
	code, stdout, errs := runCtl("eid", "trust", "import", "--master-list", mlPath, "--root", rootPath, "--out", out)
	if code != 0 || !strings.Contains(stdout, "imported 1, skipped 1\n") || !strings.Contains(stdout, "skipped entry") {
		t.Fatalf("import: %d %s %s", code, stdout, errs)
	}
	if files, _ := filepath.Glob(filepath.Join(out, "csca-UT-*.pem")); len(files) != 1 {
		t.Fatalf("files %v", files)
	}

	_, rogue, err := issuer.Issue(func() issuer.Options { o := opts; o.MasterList = issuer.MasterListDSSigned; return o }())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mlPath, rogue.MasterList, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rogue.Anchors[0].Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCtl("eid", "trust", "import", "--master-list", mlPath, "--root", rootPath, "--out", t.TempDir())
	if code != 1 || !strings.Contains(stdout, "master_list_signer_unauthorized") || !strings.Contains(stdout, "imported 0, skipped 0") {
		t.Fatalf("DS-signed list: %d %s", code, stdout)
	}
}
