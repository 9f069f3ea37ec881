// Package tamperlatch keeps the enclosure-tamper latch on disk, so that
// a restart or a power cut does not put an opened kiosk back in service.
// The file is replaced atomically and synced (file and directory) before
// Save returns.
package tamperlatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// State is the latch.
type State struct {
	Latched bool      `json:"latched"`
	Since   time.Time `json:"since,omitzero"`
	// Wiped: the device key, the document salt and session data were
	// destroyed; the kiosk must be enrolled again before a reset.
	Wiped bool `json:"wiped"`
	// KeyWiped and SaltWiped record the wipe's steps one by one, so a
	// step that failed is retried at the next start without redoing the
	// ones that succeeded (a key enrolled since must not be wiped again).
	KeyWiped  bool `json:"key_wiped,omitempty"`
	SaltWiped bool `json:"salt_wiped,omitempty"`
	// AlarmQueued: the signed alarm is in the outbox (made before the
	// key was wiped).
	AlarmQueued bool `json:"alarm_queued"`
	// Decommissioned: taken out of service for good (keys, salt and
	// state wiped); only a new enrollment brings it back.
	Decommissioned bool `json:"decommissioned,omitempty"`
}

// KeyGone says the device key was destroyed by this latch (the whole
// wipe, or its key step): the kiosk must be enrolled again.
func (s State) KeyGone() bool { return s.Wiped || s.KeyWiped }

// File is a latch file.
type File struct {
	Path string
}

// Load reads the latch; a missing file is an open (unlatched) latch. A
// file that cannot be read or parsed is an error: the caller must treat
// the kiosk as latched (fail closed).
func (f File) Load() (State, error) {
	var s State
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return State{Latched: true}, fmt.Errorf("tamper latch: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return State{Latched: true}, fmt.Errorf("tamper latch %s: %w", f.Path, err)
	}
	return s, nil
}

// Save writes s durably.
func (f File) Save(s State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, ".tamper-*")
	if err != nil {
		return fmt.Errorf("tamper latch: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.Path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("tamper latch: save: %w", err)
	}
	return nil
}

// syncDir makes a rename durable across a power cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Wipe overwrites a file with zeros, syncs and removes it (a missing
// file is fine): for secrets such as the document salt.
func Wipe(path string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wipe %s: %w", path, err)
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
	if err == nil {
		err = os.Remove(path)
	}
	if err != nil {
		return fmt.Errorf("wipe %s: %w", path, err)
	}
	return nil
}

// CanWipe says whether this process could wipe path: write the file
// (when it exists) and remove it from its directory. access(2) also
// reports a read-only mount (EROFS), such as /etc under systemd's
// ProtectSystem=strict, which file modes alone do not show.
func CanWipe(path string) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: a tamper could not wipe it", path)
	}
	if err := syscall.Access(path, 2 /* W_OK */); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is not writable by this process, so a tamper could not wipe it: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := syscall.Access(dir, 2|1 /* W_OK|X_OK */); err != nil {
		return fmt.Errorf("directory %s is not writable by this process, so a tamper could not remove %s: %w", dir, filepath.Base(path), err)
	}
	return nil
}
