package jobs

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// The record of executed jobs is bounded without forgetting an unexpired
// id: at the bound new ids are refused; expired ids are dropped; it
// survives reopening.
func TestRecordBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	r, err := openRecord(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := r.Begin("a", entry{Hash: "h", Expires: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Begin("b", entry{Hash: "h", Expires: now.Add(time.Minute)}, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Begin("c", entry{Hash: "h", Expires: now.Add(time.Hour)}, now); !errors.Is(err, ErrRecordFull) {
		t.Fatalf("third unexpired id: %v", err)
	}
	if err := r.Finish("a", []byte("final")); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = openRecord(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if e, ok, err := r.Lookup("a"); err != nil || !ok || string(e.Final) != "final" {
		t.Fatalf("after reopening: %+v %v %v", e, ok, err)
	}
	// Once b's job has expired its id goes, and c fits.
	later := now.Add(2 * time.Minute)
	if err := r.Begin("c", entry{Hash: "h", Expires: later.Add(time.Hour)}, later); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := r.Lookup("b"); ok {
		t.Fatal("an expired id was kept")
	}
}
