package devkey

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(dir, "", "kiosk-7")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.Key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	a, _ := os.ReadFile(f.Cert)
	b, _ := os.ReadFile(f.HubEntry)
	if len(a) == 0 || string(a) != string(b) {
		t.Fatal("hub entry differs from the certificate")
	}
	if _, err := Create(dir, "", "kiosk-7"); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, _, err := Generate("bad/id", time.Hour); err == nil {
		t.Fatal("accepted a device id with '/'")
	}
	_, c, err := Generate("kiosk-8", time.Hour)
	if err != nil || c.Subject.CommonName != "kiosk-8" {
		t.Fatalf("generate: %v %v", c, err)
	}
}
