package offline

import (
	"path/filepath"
	"testing"
)

func TestLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offline.db")
	lg, err := Open(path, Limits{Floor: 5000, Cap: 12000, Currency: "CHF"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		tx     string
		amount int64
		cur    string
		want   string // "" = approved
	}{
		{"a", 5000, "CHF", ""},
		{"b", 5001, "CHF", ReasonOverFloor},
		{"c", 100, "EUR", ReasonCurrency},
		{"d", 0, "CHF", ReasonInvalidAmnt},
		{"e", 5000, "CHF", ""},
		{"a", 5000, "CHF", ""}, // same tx again: not counted twice
		{"f", 2001, "CHF", ReasonCapReached},
		{"g", 2000, "CHF", ""},
		{"h", 1, "CHF", ReasonCapReached},
	}
	for i, s := range steps {
		// Check, asked first, foresees the verdict of a new transaction
		// (a repeat of an approved one is approved again regardless).
		if c := lg.Check(s.amount, s.cur); s.tx != "a" || i == 0 {
			if c != s.want {
				t.Fatalf("step %d %+v: Check says %q", i, s, c)
			}
		}
		d, err := lg.Approve(s.tx, s.amount, s.cur)
		if err != nil {
			t.Fatal(err)
		}
		if d.Approved != (s.want == "") || d.Reason != s.want {
			t.Fatalf("step %d %+v: got %+v", i, s, d)
		}
	}
	if st := lg.Status(); st.Exposure != 12000 || st.Count != 3 {
		t.Fatalf("status %+v", st)
	}
	lg.Close()

	// Persisted across restarts.
	lg, err = Open(path, Limits{Floor: 5000, Cap: 12000, Currency: "CHF"})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	if d, _ := lg.Approve("h", 1, "CHF"); d.Approved {
		t.Fatal("cap forgotten after reopen")
	}
	// The hub acknowledges "a": 5000 frees up.
	if err := lg.Settle("a"); err != nil {
		t.Fatal(err)
	}
	if err := lg.Settle("unknown"); err != nil {
		t.Fatalf("settle of an unknown id: %v", err)
	}
	if st := lg.Status(); st.Exposure != 7000 || st.Count != 2 {
		t.Fatalf("status after settles %+v", st)
	}
	if d, _ := lg.Approve("h", 5000, "CHF"); !d.Approved {
		t.Fatalf("after settle: %+v", d)
	}

	off, err := Open(filepath.Join(t.TempDir(), "x.db"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if d, _ := off.Approve("x", 1, "CHF"); d.Reason != ReasonDisabled {
		t.Fatalf("disabled: %+v", d)
	}
}
