package tamperlatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLatch(t *testing.T) {
	f := File{Path: filepath.Join(t.TempDir(), "tamper.json")}
	s, err := f.Load()
	if err != nil || s.Latched {
		t.Fatalf("fresh latch: %+v %v", s, err)
	}
	since := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	if err := f.Save(State{Latched: true, Since: since, Wiped: true}); err != nil {
		t.Fatal(err)
	}
	// Another process (a restart) reads it back.
	s, err = File{Path: f.Path}.Load()
	if err != nil || !s.Latched || !s.Wiped || !s.Since.Equal(since) {
		t.Fatalf("reloaded: %+v %v", s, err)
	}
	// A corrupt latch fails closed.
	if err := os.WriteFile(f.Path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := f.Load(); err == nil || !s.Latched {
		t.Fatalf("corrupt latch: %+v %v", s, err)
	}
	salt := filepath.Join(t.TempDir(), "salt")
	if err := os.WriteFile(salt, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Wipe(salt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(salt); !os.IsNotExist(err) {
		t.Fatalf("salt after wipe: %v", err)
	}
	if err := Wipe(salt); err != nil {
		t.Fatalf("wiping a missing file: %v", err)
	}
}
