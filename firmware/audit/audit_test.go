package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// The hub's view: copies in delivery order, with redeliveries, gaps,
// pruned beginnings, and a kiosk that truncated and rewrote its log.
func TestVerifyHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var all []Entry
	for i := range 6 {
		e, err := l.Append("anna", "login", "", now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	// The kiosk drops its last three entries and writes others instead.
	lines, _ := os.ReadFile(path)
	kept := strings.SplitAfterN(string(lines), "\n", 4)[:3]
	if err := os.WriteFile(path, []byte(strings.Join(kept, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var rewritten []Entry
	for i := range 3 {
		e, err := l2.Append("mallory", "maintenance_on", "", now.Add(time.Duration(10+i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		rewritten = append(rewritten, e)
	}
	altered := all[3]
	altered.Staff = "mallory"

	cases := []struct {
		name        string
		held        []Entry
		first, last uint64
		missing     int
		breaks      bool
	}{
		{"in order", all, 1, 6, 0, false},
		{"out of order with redeliveries", []Entry{all[2], all[0], all[5], all[1], all[2], all[4], all[3], all[0]}, 1, 6, 0, false},
		{"beginning pruned", all[3:], 4, 6, 0, false},
		{"not delivered yet", []Entry{all[0], all[1], all[4], all[5]}, 1, 6, 2, false},
		{"altered", []Entry{all[0], all[1], all[2], altered, all[4], all[5]}, 1, 6, 0, true},
		// Delivered before the rewrite, and the rewritten ones after.
		{"rewritten tail, both delivered", append(append([]Entry{}, all...), rewritten...), 1, 6, 0, true},
		// Only the rewritten ones ever left: still chained to entry 3,
		// so the hub cannot tell (it never saw the removed ones).
		{"rewritten before delivery", append(append([]Entry{}, all[:3]...), rewritten...), 1, 6, 0, false},
		{"nothing", nil, 0, 0, 0, false},
	}
	for _, c := range cases {
		h := VerifyHeld(c.held)
		if h.First != c.first || h.Last != c.last || len(h.Missing) != c.missing || (len(h.Breaks) > 0) != c.breaks {
			t.Errorf("%s: %+v", c.name, h)
		}
		if h.Intact() != (c.missing == 0 && !c.breaks) {
			t.Errorf("%s: intact %v", c.name, h.Intact())
		}
	}
	// A forged huge sequence number does not make a huge list.
	far := all[0]
	far.Seq = 1 << 40
	if h := VerifyHeld([]Entry{all[0], far}); len(h.Missing) != maxMissing {
		t.Errorf("missing list %d long: %+v", len(h.Missing), h.Breaks)
	}
}

// After a decommission the log starts over: the hub holds two chains,
// each intact, not one broken one.
func TestEpochs(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var held []Entry
	for epoch := range 2 {
		l, err := Open(filepath.Join(dir, fmt.Sprintf("audit-%d.log", epoch)))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			e, err := l.Append("anna", "login", "", now.Add(time.Duration(epoch*100+i)*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, e)
		}
	}
	slices.Reverse(held)
	groups := Epochs(held)
	if len(groups) != 2 {
		t.Fatalf("%d groups", len(groups))
	}
	for i, g := range groups {
		if h := VerifyHeld(g); !h.Intact() || h.First != 1 || h.Last != 3 {
			t.Errorf("chain %d: %+v", i, h)
		}
	}
	// The first chain's start pruned: its rest is a group of its own.
	if g := Epochs(held[:5]); len(g) != 2 || len(g[0]) != 2 || len(g[1]) != 3 {
		t.Errorf("pruned start: %v", g)
	}
}
