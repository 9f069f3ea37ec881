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

// A salt the process cannot wipe is reported. (Tests run as root, for
// whom access(2) fails only on a read-only mount such as /etc under
// ProtectSystem=strict; here the cases root cannot wipe either.)
func TestCanWipe(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "doc-salt")
	if err := os.WriteFile(ok, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CanWipe(ok); err != nil {
		t.Fatalf("writable salt refused: %v", err)
	}
	if err := CanWipe(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("missing salt in a writable directory refused: %v", err)
	}
	if err := CanWipe(dir); err == nil {
		t.Fatal("a directory reported wipeable")
	}
	if err := CanWipe(filepath.Join(ok, "doc-salt")); err == nil {
		t.Fatal("a path under a regular file reported wipeable")
	}
}
