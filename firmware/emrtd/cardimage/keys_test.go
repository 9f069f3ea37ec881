package cardimage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

const testKeyPEM = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"

func TestKeysSaveLoad(t *testing.T) {
	dir := t.TempDir()
	im := testImage()
	im.CAKey, im.AAKey = []byte(testKeyPEM), []byte(testKeyPEM)
	im.Meta.AAHash = "SHA-256"
	if err := im.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil || !bytes.Equal(got.CAKey, im.CAKey) || !bytes.Equal(got.AAKey, im.AAKey) || got.Meta.AAHash != "SHA-256" {
		t.Fatalf("load: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, KeysDirName, CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v", err)
	}
	// Dropping the AA key removes its file.
	im.AAKey = nil
	if err := im.Save(dir); err != nil {
		t.Fatal(err)
	}
	if got, err = Load(dir); err != nil || got.AAKey != nil || got.CAKey == nil {
		t.Fatalf("after dropping AA: %v", err)
	}
	// Strict: stray files, oversize keys, non-PEM keys, unknown hashes.
	for name, damage := range map[string]func(){
		"stray file": func() { _ = os.WriteFile(filepath.Join(dir, KeysDirName, "x.pem"), []byte(testKeyPEM), 0o600) },
		"oversize": func() {
			_ = os.WriteFile(filepath.Join(dir, KeysDirName, CAKeyFile), make([]byte, MaxKeySize+1), 0o600)
		},
		"not PEM": func() { _ = os.WriteFile(filepath.Join(dir, KeysDirName, CAKeyFile), []byte("hello"), 0o600) },
	} {
		if err := im.Save(dir); err != nil {
			t.Fatal(err)
		}
		damage()
		if _, err := Load(dir); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		_ = os.Remove(filepath.Join(dir, KeysDirName, "x.pem"))
	}
	im.Meta.AAHash = "MD5"
	if err := im.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("aa_hash MD5: %v", err)
	}
}
