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
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "testdata", "media"), nil
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

// Models returns the face models directory ($KIOSK_MODELS, or .cache/models
// under the module root), skipping under -short and failing when the
// models have not been fetched.
func Models(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: skipping test that needs the face models")
	}
	dir := os.Getenv("KIOSK_MODELS")
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, ".cache", "models")
	}
	if _, err := os.Stat(filepath.Join(dir, "fr_detect.onnx")); err != nil {
		tb.Fatalf("face models missing in %s (%v): run `make models`", dir, err)
	}
	return dir
}

// ModuleRoot returns the nearest directory at or above the working
// directory that holds go.mod, or the working directory when none does.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return wd, nil
		}
	}
}

// TrustData returns the directory of the real national master lists and
// their roots (see ../shared/data/trust/README.md): $KIOSK_SHARED/data/trust,
// else <module root>/../shared/data/trust. It skips the test, naming the
// paths it tried, when neither exists (the data is not in the repository).
func TrustData(tb testing.TB) string {
	tb.Helper()
	var tried []string
	if d := os.Getenv("KIOSK_SHARED"); d != "" {
		tried = append(tried, filepath.Join(d, "data", "trust"))
	}
	if root, err := ModuleRoot(); err == nil {
		tried = append(tried, filepath.Join(root, "..", "shared", "data", "trust"))
	}
	for _, d := range tried {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	tb.Skipf("real trust data not found (tried %v): set KIOSK_SHARED to the directory holding data/trust", tried)
	return ""
}
