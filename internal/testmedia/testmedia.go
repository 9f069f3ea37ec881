// Package testmedia locates the real face photos and videos that tests use.
// They are fetched by `make testdata` (testdata/fetch.sh) and never committed.
package testmedia

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the folder holding the fetched media: $KIOSK_TESTDATA/media,
// or .cache/testdata/media under the module root.
func Dir() (string, error) {
	if d := os.Getenv("KIOSK_TESTDATA"); d != "" {
		return filepath.Join(d, "media"), nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, ".cache", "testdata", "media"), nil
		}
		if filepath.Dir(d) == d {
			return filepath.Join(wd, ".cache", "testdata", "media"), nil
		}
	}
}

// Path returns the path of a media file, skipping under -short and failing
// the test (never skipping silently) when the file has not been fetched.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("-short: skipping test that needs test media %s", name)
	}
	dir, err := Dir()
	if err != nil {
		tb.Fatalf("locate test media: %v", err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("test media %s missing (%v): run `make testdata`", name, err)
	}
	return p
}
