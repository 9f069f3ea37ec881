package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Refusal reasons (the job's status reason code): nothing was installed.
const (
	ReasonNoKeyring    = "unsupported"      // no update.keyring: updates are off
	ReasonNoVersion    = "unsupported"      // the running system has no firmware version
	ReasonBadSignature = "bundle_signature" // rauc refused the bundle's signature (jobwire.ReasonBundleSignature)
	ReasonDowngrade    = "downgrade"        // not newer than the running firmware
	ReasonIncompatible = "incompatible"     // another product's bundle
)

// Refusal is a bundle refused before install; the running slot and the
// inactive slot are untouched.
type Refusal struct {
	Reason string
	Detail string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Detail }

// Options configure an Updater.
type Options struct {
	// Dir holds downloads and the pending-update record
	// (<transactions.state_dir>/update): on the data partition, shared by
	// both slots.
	Dir string
	// Keyring is the release CA (PEM) bundles must chain to; "" refuses
	// every update.
	Keyring string
	// MaxSize bounds a bundle (update.max_bundle_size).
	MaxSize int64
	Rauc    Rauc
	// VersionFile holds the running firmware's version, written into each
	// root file system image by `make bundle`.
	VersionFile string
	HTTP        *http.Client
	Logger      *slog.Logger
	Now         func() time.Time
}

// Updater downloads, verifies and installs bundles and keeps the
// pending-update record across the reboot.
type Updater struct {
	o   Options
	log *slog.Logger
}

// New checks o and creates the directory.
func New(o Options) (*Updater, error) {
	if o.Dir == "" {
		return nil, errors.New("update: a directory is required")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 0, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 30 * time.Second}}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Updater{o: o, log: log}, nil
}

// Progress is one step of an update, reported in the job's in_progress
// status.
type Progress struct {
	Phase   string `json:"phase"` // downloading, verifying, waiting_idle, installing, installed
	Percent int    `json:"percent,omitempty"`
	Version string `json:"version,omitempty"`
}

// RunningVersion is the booted firmware's version.
func (u *Updater) RunningVersion() (string, error) {
	if u.o.VersionFile == "" {
		return "", &Refusal{ReasonNoVersion, "no firmware version file: this kioskd was not installed from a firmware image"}
	}
	b, err := os.ReadFile(u.o.VersionFile)
	if err != nil {
		return "", &Refusal{ReasonNoVersion, fmt.Sprintf("firmware version unknown: %v", err)}
	}
	v := strings.TrimSpace(string(b))
	if _, _, err := parseVersion(v); err != nil {
		return "", &Refusal{ReasonNoVersion, err.Error()}
	}
	return v, nil
}

// Bundle is a downloaded bundle whose signature, compatible and version
// were checked.
type Bundle struct {
	Path string
	Info BundleInfo
	From string // the running version it replaces
}

// Prepare downloads d (resuming an earlier partial download) and checks it
// with `rauc info` against the keyring: signature, compatible string and,
// unless the job allows it, that the version is newer than the running one.
func (u *Updater) Prepare(ctx context.Context, d Doc, progress func(Progress)) (Bundle, error) {
	if u.o.Keyring == "" {
		return Bundle{}, &Refusal{ReasonNoKeyring, "no update.keyring configured: firmware updates are off on this kiosk"}
	}
	from, err := u.RunningVersion()
	if err != nil {
		return Bundle{}, err
	}
	last := -1
	path, err := Fetch(ctx, u.o.HTTP, d, u.o.Dir, func(have, total int64) {
		// Whole tens only: at most 11 statuses for a download.
		if p := int(have * 100 / total); p/10 != last/10 || last < 0 {
			last = p
			progress(Progress{Phase: "downloading", Percent: p / 10 * 10})
		}
	})
	if err != nil {
		return Bundle{}, err
	}
	progress(Progress{Phase: "verifying"})
	info, err := u.o.Rauc.Info(ctx, path, u.o.Keyring)
	if err != nil {
		if errors.Is(err, ErrSignature) {
			u.discard(path)
			return Bundle{}, &Refusal{ReasonBadSignature, err.Error()}
		}
		return Bundle{}, err
	}
	st, err := u.o.Rauc.Status(ctx)
	if err != nil {
		return Bundle{}, err
	}
	if info.Compatible != st.Compatible {
		u.discard(path)
		return Bundle{}, &Refusal{ReasonIncompatible, fmt.Sprintf("bundle for %q, this system is %q", info.Compatible, st.Compatible)}
	}
	c, err := CompareVersions(info.Version, from)
	if err != nil {
		u.discard(path)
		return Bundle{}, &Refusal{ReasonDowngrade, err.Error()}
	}
	if c <= 0 && !d.AllowDowngrade {
		u.discard(path)
		return Bundle{}, &Refusal{ReasonDowngrade, fmt.Sprintf("bundle version %s is not newer than the running %s (the job may set allow_downgrade)", info.Version, from)}
	}
	return Bundle{Path: path, Info: info, From: from}, nil
}

// Install writes b into the inactive slot with `rauc install` and records
// the pending update before returning: the kioskd that boots next reads it.
// The caller has made sure no session runs.
func (u *Updater) Install(ctx context.Context, jobID string, b Bundle, progress func(Progress)) (Pending, error) {
	before, err := u.o.Rauc.Status(ctx)
	if err != nil {
		return Pending{}, err
	}
	progress(Progress{Phase: "installing", Version: b.Info.Version})
	if err := u.o.Rauc.Install(ctx, b.Path); err != nil {
		if errors.Is(err, ErrSignature) {
			u.discard(b.Path)
			return Pending{}, &Refusal{ReasonBadSignature, err.Error()}
		}
		return Pending{}, err
	}
	after, err := u.o.Rauc.Status(ctx)
	if err != nil {
		return Pending{}, err
	}
	target, ok := after.Slot(after.Primary)
	if !ok || target.Bootname == "" || target.Bootname == before.Booted {
		return Pending{}, fmt.Errorf("update: after install the primary slot is %q, not the other slot than the booted %q", after.Primary, before.Booted)
	}
	p := Pending{JobID: jobID, From: b.From, FromSlot: before.Booted, Version: b.Info.Version, Slot: target.Bootname, Installed: u.o.Now().UTC()}
	if err := u.writePending(p); err != nil {
		return Pending{}, err
	}
	u.discard(b.Path)
	progress(Progress{Phase: "installed", Version: b.Info.Version})
	u.log.Info("firmware installed; reboot pending", "version", p.Version, "slot", p.Slot)
	return p, nil
}

// Pending is the record of an installed update waiting for its outcome:
// kept on the data partition, read by the kioskd of whichever slot boots.
type Pending struct {
	JobID     string    `json:"job_id"`
	From      string    `json:"from"`      // version running at install
	FromSlot  string    `json:"from_slot"` // its slot's bootname
	Version   string    `json:"version"`   // the installed bundle's
	Slot      string    `json:"slot"`      // bootname of the slot it went to
	Installed time.Time `json:"installed"`
	// Reason is set by the new slot's kioskd when it gives up on itself
	// (not healthy in time) before marking its slot bad.
	Reason string `json:"reason,omitempty"`
}

func (u *Updater) pendingPath() string { return filepath.Join(u.o.Dir, "pending.json") }

// LoadPending returns the pending update, if any.
func (u *Updater) LoadPending() (*Pending, error) {
	b, err := os.ReadFile(u.pendingPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("update: pending record: %w", err)
	}
	var p Pending
	if err := json.Unmarshal(b, &p); err != nil || p.JobID == "" || p.Slot == "" {
		return nil, fmt.Errorf("update: pending record %s unusable: %v", u.pendingPath(), err)
	}
	return &p, nil
}

// writePending replaces the record atomically (write, fsync, rename,
// fsync the directory): a power cut leaves the old record or the new one.
func (u *Updater) writePending(p Pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := u.pendingPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("update: pending record: %w", err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("update: pending record: %w", err)
	}
	if err := os.Rename(tmp, u.pendingPath()); err != nil {
		return fmt.Errorf("update: pending record: %w", err)
	}
	return syncDir(u.o.Dir)
}

// ClearPending removes the record once the job's outcome is reported.
func (u *Updater) ClearPending() error {
	if err := os.Remove(u.pendingPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("update: pending record: %w", err)
	}
	return syncDir(u.o.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (u *Updater) discard(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		u.log.Warn("update: bundle not removed", "path", path, "err", err)
	}
}

// BootKind is what the boot after an install turned out to be.
type BootKind int

const (
	// BootNormal: no update pending.
	BootNormal BootKind = iota
	// BootTrial: the new slot booted; it must prove itself healthy.
	BootTrial
	// BootNotRebooted: installed, the old slot still runs and the new one
	// is primary: the reboot is still to come.
	BootNotRebooted
	// BootRolledBack: the old slot runs again and the new one is no longer
	// primary (attempts ran out, or it marked itself bad).
	BootRolledBack
)

// Boot is the state after a (re)start.
type Boot struct {
	Kind    BootKind
	Pending *Pending
	Booted  string // bootname
}

// CheckBoot compares the pending record with the boot loader's state.
func (u *Updater) CheckBoot(ctx context.Context) (Boot, error) {
	p, err := u.LoadPending()
	if err != nil {
		return Boot{}, err
	}
	st, err := u.o.Rauc.Status(ctx)
	if err != nil {
		return Boot{Pending: p}, err
	}
	b := Boot{Pending: p, Booted: st.Booted}
	switch {
	case p == nil:
		b.Kind = BootNormal
	case st.Booted == p.Slot:
		b.Kind = BootTrial
	default:
		prim, _ := st.Slot(st.Primary)
		target, _ := st.Slot(p.Slot)
		if prim.Bootname == p.Slot && target.BootStatus != "bad" {
			b.Kind = BootNotRebooted
		} else {
			b.Kind = BootRolledBack
		}
	}
	return b, nil
}

// MarkGood marks the booted slot good (the boot loader resets its
// attempts).
func (u *Updater) MarkGood(ctx context.Context) error { return u.o.Rauc.Mark(ctx, "good") }

// GiveUp records why the booted trial slot failed and marks it bad: the
// next boot falls back to the old slot, whose kioskd reports the reason.
func (u *Updater) GiveUp(ctx context.Context, p Pending, reason string) error {
	p.Reason = reason
	if err := u.writePending(p); err != nil {
		return err
	}
	return u.o.Rauc.Mark(ctx, "bad")
}
