package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	for i, a := range []string{"login", "maintenance_on", "tamper_reset", "maintenance_off"} {
		e, err := l.Append("anna", a, "", now.Add(time.Duration(i)*time.Second))
		if err != nil || e.Seq != uint64(i+1) {
			t.Fatalf("append %s: %+v %v", a, e, err)
		}
	}
	if _, err := l.Append("anna", "Not A Code", "", now); err == nil {
		t.Fatal("a bad action code")
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	entries, err := Read(path)
	if err != nil || len(entries) != 4 || Verify(entries) != nil {
		t.Fatalf("read back: %d %v %v", len(entries), err, Verify(entries))
	}
	// Reopened, the log continues the chain.
	l2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := l2.Append("ben", "login", "", now); err != nil || e.Seq != 5 {
		t.Fatalf("continued: %+v %v", e, err)
	}
	entries, _ = Read(path)
	if err := Verify(entries); err != nil {
		t.Fatal(err)
	}

	// A removed entry, an altered one, a reordered pair: all detected.
	removed := append(append([]Entry{}, entries[:1]...), entries[2:]...)
	altered := append([]Entry{}, entries...)
	altered[1].Staff = "mallory"
	swapped := append([]Entry{}, entries...)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	for name, c := range map[string][]Entry{"removed": removed, "altered": altered, "swapped": swapped} {
		if err := Verify(c); !errors.Is(err, ErrBroken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An edited file is reported at open, and the log still appends.
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if err := os.WriteFile(path, []byte(strings.Join(append(lines[:1], lines[2:]...), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l3, err := Open(path)
	if !errors.Is(err, ErrBroken) || l3 == nil {
		t.Fatalf("open of an edited log: %v", err)
	}
}
