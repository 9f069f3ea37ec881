package ctl

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fleet bundle make: the inline document for a small bundle, a reference
// (URL, exact size, SHA-256 of the written file) for a published one, and
// a bundle over the job document's 48 KiB refused inline.
func TestFleetBundleMake(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "trust")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"csca.pem": "-----BEGIN CERTIFICATE-----\n", "csca.crl": "crl", "hub-auth.pem": "hub"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"fleet", "bundle", "make"}, args...), nil, &out, &errb, "test")
		return code, out.String() + errb.String()
	}
	code, out := run("--version", "3", src)
	var doc struct {
		Version int               `json:"version"`
		Files   map[string][]byte `json:"files"`
	}
	if code != ExitOK || json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &doc) != nil || doc.Version != 3 || string(doc.Files["csca.crl"]) != "crl" || len(doc.Files) != 3 {
		t.Fatalf("inline: %d %s", code, out)
	}
	pub := filepath.Join(dir, "bundle.json")
	code, out = run("--version", "4", "--url", "https://trust.bank.example/b4.json", "--out", pub, src)
	var ref struct {
		Version int    `json:"version"`
		URL     string `json:"url"`
		Size    int    `json:"size"`
		SHA256  string `json:"sha256"`
	}
	body, err := os.ReadFile(pub)
	sum := sha256.Sum256(body)
	if code != ExitOK || err != nil || json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ref) != nil ||
		ref.Version != 4 || ref.Size != len(body) || ref.SHA256 != hex.EncodeToString(sum[:]) || ref.URL != "https://trust.bank.example/b4.json" {
		t.Fatalf("reference: %d %s %+v", code, out, ref)
	}
	if err := os.WriteFile(filepath.Join(src, "masterlist.ml"), bytes.Repeat([]byte{0x30}, 60<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := run("--version", "5", src); code != ExitFail || !strings.Contains(out, "over the job document's 48 KiB") {
		t.Fatalf("large inline bundle: %d %s", code, out)
	}
	if code, _ := run("--version", "5", "--url", "https://x/y"); code != ExitUsage {
		t.Fatalf("--url without --out: %d", code)
	}
}
