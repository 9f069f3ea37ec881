package diagnostics

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestSample(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "outbox.db")
	if err := os.WriteFile(db, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := Sample(db, filepath.Join(dir, "missing.db"))
	if err != nil {
		t.Fatal(err)
	}
	if before.RSSBytes <= 0 || before.HWMBytes < before.RSSBytes || before.RSSAnonBytes <= 0 || before.RSSFileBytes <= 0 ||
		before.RSSAnonBytes+before.RSSFileBytes > before.RSSBytes || before.HeapObjectsBytes <= 0 ||
		before.HeapTotalBytes < before.HeapObjectsBytes || before.Goroutines < 1 || before.Threads < 1 || before.OpenFiles < 3 {
		t.Fatalf("implausible counters %+v", before)
	}
	if before.Files["outbox.db"] != 4096 || len(before.Files) != 1 {
		t.Errorf("files %v, want outbox.db 4096 only", before.Files)
	}
	f, err := os.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, err := Sample()
	if err != nil {
		t.Fatal(err)
	}
	if after.OpenFiles != before.OpenFiles+1 {
		t.Errorf("open files %d after opening one, %d before", after.OpenFiles, before.OpenFiles)
	}
}

// The archive holds the counters and two profiles, never the contents of
// memory: a secret kept live on the heap during collection is nowhere in it.
func TestCollect(t *testing.T) {
	secret := []byte(strings.Repeat("PIN2468-MRZ<<ERIKA<<", 1000))
	zb, err := Collect(context.Background(), Options{Device: "kiosk-t", Version: "v1", Extra: map[string]any{"health": map[string]string{"status": "ok"}}})
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(secret)
	files := unzip(t, zb)
	for _, want := range []string{"counters.json", "health.json", "heap.pb.gz", "goroutine.pb.gz", "README.txt"} {
		if _, ok := files[want]; !ok {
			t.Errorf("archive lacks %s (has %v)", want, keys(files))
		}
	}
	var doc struct {
		Device   string
		Counters Counters
	}
	if err := json.Unmarshal(files["counters.json"], &doc); err != nil || doc.Device != "kiosk-t" || doc.Counters.RSSBytes <= 0 {
		t.Errorf("counters.json %s: %v", files["counters.json"], err)
	}
	for name, b := range files {
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if bytes.Contains(b, []byte("PIN2468")) || bytes.Contains(b, []byte("ERIKA")) {
			t.Errorf("%s holds heap contents", name)
		}
	}
}

func TestCollectBounded(t *testing.T) {
	const bound = 2200 // the counters fit, the profiles do not both
	zb, err := Collect(context.Background(), Options{MaxBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	if len(zb) > bound {
		t.Fatalf("%d bytes over the %d-byte bound", len(zb), bound)
	}
	files := unzip(t, zb)
	if _, ok := files["counters.json"]; !ok {
		t.Fatal("no counters.json")
	}
	left := 0
	for _, p := range []string{"heap.pb.gz", "goroutine.pb.gz"} {
		if _, ok := files[p]; !ok {
			left++
			if !strings.Contains(string(files["README.txt"]), "Left out") || !strings.Contains(string(files["README.txt"]), p) {
				t.Errorf("README does not name %s as left out: %s", p, files["README.txt"])
			}
		}
	}
	if left == 0 {
		t.Errorf("both profiles in a %d-byte archive", bound)
	}
	if _, err := Collect(context.Background(), Options{MaxBytes: 100}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("100-byte bound: %v, want ErrTooLarge", err)
	}
}

func unzip(t *testing.T, zb []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = b
	}
	return out
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
