// Package devicekey holds the kiosk's device key: generated on the
// device, never exported. Two backends behind one interface: a TPM 2.0
// (the key is created and used inside it, tpm.go) and a
// PKCS #8 file of mode 0600 for kiosks without one.
package devicekey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Kinds reported as health's key_storage.
const (
	KindFile = "file"
	KindTPM  = "tpm"
)

// ErrNoKey is returned by Load when no key exists (never enrolled, or
// wiped).
var ErrNoKey = errors.New("devicekey: no device key")

// Store keeps one device key.
type Store interface {
	// Create makes a new ECDSA P-256 key, replacing any old one.
	Create(ctx context.Context) (crypto.Signer, error)
	// Load returns the key (ErrNoKey if there is none).
	Load(ctx context.Context) (crypto.Signer, error)
	// Wipe destroys the key; afterwards Load returns ErrNoKey.
	Wipe(ctx context.Context) error
	// Kind is KindFile or KindTPM.
	Kind() string
}

// File keeps the key in a PEM file of mode 0600 (owned by the service
// user that creates it).
type File struct {
	Path string
}

var _ Store = (*File)(nil)

// Kind implements Store.
func (f *File) Kind() string { return KindFile }

// Create implements Store: the new key is written to a temporary file of
// mode 0600 in the same directory, synced and renamed over the old one.
func (f *File) Create(ctx context.Context) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devicekey: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devicekey: %w", err)
	}
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devicekey: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".device-key-*")
	if err != nil {
		return nil, fmt.Errorf("devicekey: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("devicekey: %w", err)
	}
	_, err = tmp.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("devicekey: write %s: %w", f.Path, err)
	}
	return key, nil
}

// CreatePending makes a new key beside the current one (Path + ".new",
// mode 0600) for a renewal: commit puts it in place of the old key,
// discard removes it. Until commit the old key stays.
func (f *File) CreatePending(ctx context.Context) (key crypto.Signer, commit, discard func() error, err error) {
	p := &File{Path: f.Path + ".new"}
	k, err := p.Create(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	commit = func() error {
		if err := os.Rename(p.Path, f.Path); err != nil {
			return fmt.Errorf("devicekey: %w", err)
		}
		return nil
	}
	return k, commit, func() error { return p.Wipe(context.Background()) }, nil
}

// Load implements Store. A key file readable by others is refused.
func (f *File) Load(ctx context.Context) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := os.Stat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, f.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("devicekey: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("devicekey: %s has mode %04o: must be 0600", f.Path, st.Mode().Perm())
	}
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("devicekey: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("devicekey: %s: no PEM block", f.Path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devicekey: %s: %w", f.Path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("devicekey: %s: not an ECDSA P-256 key", f.Path)
	}
	return ek, nil
}

// Wipe implements Store: the file and a renewal's pending key beside it
// (Path + ".new") are overwritten with zeros, synced and removed, so a
// renewal answered after a tamper has no key to commit. (On flash with
// wear levelling an overwrite is not a guarantee; that is what the TPM
// backend is for.)
func (f *File) Wipe(ctx context.Context) error {
	return errors.Join(wipeFile(f.Path+".new"), wipeFile(f.Path))
}

func wipeFile(path string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("devicekey: wipe: %w", err)
	}
	st, err := fh.Stat()
	if err == nil {
		_, err = fh.WriteAt(make([]byte, st.Size()), 0)
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("devicekey: wipe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("devicekey: wipe: %w", err)
	}
	return nil
}
