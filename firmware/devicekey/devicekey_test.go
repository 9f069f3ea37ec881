package devicekey

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFile(t *testing.T) {
	ctx := context.Background()
	f := &File{Path: filepath.Join(t.TempDir(), "id", "device.key")}
	if _, err := f.Load(ctx); !errors.Is(err, ErrNoKey) {
		t.Fatalf("load before create: %v", err)
	}
	k, err := f.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st, err)
	}
	k2, err := f.Load(ctx)
	if err != nil || !k2.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("load: %v", err)
	}
	if f.Kind() != KindFile {
		t.Fatal(f.Kind())
	}
	// A key others can read is refused.
	if err := os.Chmod(f.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Load(ctx); err == nil {
		t.Fatal("loaded a world-readable key")
	}
	if err := os.Chmod(f.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file after wipe: %v", err)
	}
	if _, err := f.Load(ctx); !errors.Is(err, ErrNoKey) {
		t.Fatalf("load after wipe: %v", err)
	}
	if err := f.Wipe(ctx); err != nil {
		t.Fatalf("second wipe: %v", err)
	}
	// Nothing but the key was left in the directory (no temporary files).
	ents, _ := os.ReadDir(filepath.Dir(f.Path))
	if len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}
