package devicekey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"kiosk/firmware/devicekey/swtpmtest"
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

// The key is created inside swtpm, signs verifiably, survives a TPM
// restart (a power cycle) at its persistent handle, and is gone after a
// wipe: the handle no longer exists.
func TestTPM(t *testing.T) {
	ctx := context.Background()
	sw := swtpmtest.Start(t)
	open := func() *TPM {
		t.Helper()
		tp, err := OpenTPM("unix:" + sw.Socket)
		if err != nil {
			t.Fatal(err)
		}
		return tp
	}
	tp := open()
	if _, err := tp.Load(ctx); !errors.Is(err, ErrNoKey) {
		t.Fatalf("load from an empty TPM: %v", err)
	}
	k, err := tp.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Kind() != KindTPM {
		t.Fatal(tp.Kind())
	}
	digest := sha256.Sum256([]byte("report"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*ecdsa.PublicKey)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("TPM signature does not verify")
	}
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA384); err == nil {
		t.Fatal("signed with another hash")
	}
	tp.Close()

	sw.Restart()
	tp = open()
	defer tp.Close()
	k2, err := tp.Load(ctx)
	if err != nil {
		t.Fatalf("key after restart: %v", err)
	}
	if !k2.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("another key after restart")
	}
	// A second Create replaces the key.
	k3, err := tp.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k3.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("Create kept the old key")
	}
	if err := tp.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := tp.Exists(); ok || err != nil {
		t.Fatalf("handle after wipe: exists %v, %v", ok, err)
	}
	if _, err := k3.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
		t.Fatal("a wiped key still signs")
	}
	if err := tp.Wipe(ctx); err != nil {
		t.Fatalf("second wipe: %v", err)
	}
}

// A renewal in the TPM: the new key signs before and after it replaces
// the old one; the old one is gone; a discarded renewal leaves the old.
func TestTPMRenewal(t *testing.T) {
	ctx := context.Background()
	sw := swtpmtest.Start(t)
	tp, err := OpenTPM("unix:" + sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	old, err := tp.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	verify := func(k crypto.Signer) {
		t.Helper()
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
			t.Fatalf("sign: %v", err)
		}
	}
	// Discarded: the old key stays.
	_, _, discard, err := tp.CreatePending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := discard(); err != nil {
		t.Fatal(err)
	}
	if k, err := tp.Load(ctx); err != nil || !k.Public().(*ecdsa.PublicKey).Equal(old.Public()) {
		t.Fatalf("after discard: %v", err)
	}
	nk, commit, _, err := tp.CreatePending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verify(nk)
	verify(old) // both exist until the switch
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	verify(nk)
	// The old key no longer exists: nothing verifies under it any more.
	if sig, err := old.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil && ecdsa.VerifyASN1(old.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("the old key still signs")
	}
	k, err := tp.Load(ctx)
	if err != nil || !k.Public().(*ecdsa.PublicKey).Equal(nk.Public()) {
		t.Fatalf("after commit: %v", err)
	}
	if rp, err := tp.readPublicAt(tp.pendingHandle()); err == nil || rp != nil {
		t.Fatal("the pending handle is still occupied")
	}
}

// A wipe during a renewal also destroys the pending key, so the renewal's
// commit has nothing to put back.
func TestFileWipeTakesPending(t *testing.T) {
	ctx := context.Background()
	f := &File{Path: filepath.Join(t.TempDir(), "device.key")}
	if _, err := f.Create(ctx); err != nil {
		t.Fatal(err)
	}
	_, commit, _, err := f.CreatePending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Path + ".new"); !os.IsNotExist(err) {
		t.Fatalf("pending key after the wipe: %v", err)
	}
	if err := commit(); err == nil {
		t.Fatal("a renewal committed after the wipe")
	}
	if _, err := f.Load(ctx); !errors.Is(err, ErrNoKey) {
		t.Fatalf("a key after the wipe: %v", err)
	}
}

// A commit that failed after the old key was evicted (here: evicted by
// hand) leaves the new key at the pending handle only; the renewal's
// discard must not destroy it.
func TestTPMDiscardKeepsOnlyKey(t *testing.T) {
	ctx := context.Background()
	sw := swtpmtest.Start(t)
	tp, err := OpenTPM("unix:" + sw.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if _, err := tp.Create(ctx); err != nil {
		t.Fatal(err)
	}
	nk, _, discard, err := tp.CreatePending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp.mu.Lock()
	err = tp.evictAt(tp.Handle)
	tp.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := discard(); err != nil {
		t.Fatal(err)
	}
	k, err := tp.Load(ctx)
	if err != nil || !k.Public().(*ecdsa.PublicKey).Equal(nk.Public()) {
		t.Fatalf("the only key was discarded: %v", err)
	}
}
