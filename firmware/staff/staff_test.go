package staff

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staff")
	for _, bad := range []string{"12345", "1234567890123", "12a456", ""} {
		if err := Add(path, "anna", bad); !errors.Is(err, ErrBadPIN) {
			t.Errorf("PIN %q: %v", bad, err)
		}
	}
	if err := Add(path, "Anna", "123456"); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
	if err := Add(path, "anna", "246810"); err != nil {
		t.Fatal(err)
	}
	if err := Add(path, "ben", "246810"); err == nil {
		t.Fatal("a PIN taken by another account was accepted")
	}
	if err := Add(path, "anna", "135790"); err == nil {
		t.Fatal("a name twice")
	}
	if err := Add(path, "ben", "135790"); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "246810") || !strings.Contains(string(b), "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("file %s", b)
	}
	as, err := Load(path)
	if err != nil || len(as) != 2 {
		t.Fatalf("load: %v %v", as, err)
	}
	if a, ok := as.Match("135790"); !ok || a.Name != "ben" {
		t.Fatalf("match ben: %v %v", a, ok)
	}
	if _, ok := as.Match("000000"); ok {
		t.Fatal("wrong PIN matched")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("a world-readable account file loaded")
	}
	for _, bad := range []string{"anna $argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "anna", "anna $argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// The lockout grows with each failure and resets on success.
func TestLockoutGrows(t *testing.T) {
	var l Lockout
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var waits []time.Duration
	for range 8 {
		waits = append(waits, l.Fail(now))
	}
	want := []time.Duration{0, 0, 0, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if l.Locked(now) != 8*time.Minute || l.Locked(now.Add(8*time.Minute)) != 0 {
		t.Fatalf("locked %v", l.Locked(now))
	}
	for range 30 {
		l.Fail(now)
	}
	if l.Locked(now) != 24*time.Hour {
		t.Fatalf("cap: %v", l.Locked(now))
	}
	l.Succeed()
	if l.Locked(now) != 0 || l.Fail(now) != 0 {
		t.Fatal("success did not reset")
	}
}

// A persisted lockout survives a reopen (a restart); a damaged file
// counts as Free failures rather than a fresh start.
func TestLockoutPersisted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "staff-lockout.json")
	l, err := OpenLockout(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for range Free + 2 {
		l.Fail(now)
	}
	if l.SaveErr != nil {
		t.Fatal(l.SaveErr)
	}
	want := l.Locked(now)
	again, err := OpenLockout(path)
	if err != nil || again.Failures() != Free+2 || again.Locked(now) != want {
		t.Fatalf("reopened: failures %d locked %v (want %v) %v", again.Failures(), again.Locked(now), want, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lockout file: %v %v", st, err)
	}
	again.Succeed()
	if l3, _ := OpenLockout(path); l3.Failures() != 0 || l3.Locked(now) != 0 {
		t.Fatal("success not persisted")
	}
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	l4, err := OpenLockout(path)
	if err == nil || l4.Failures() != Free || l4.Fail(now) == 0 {
		t.Fatalf("damaged file: failures %d, %v", l4.Failures(), err)
	}
}
