package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/session"
	"kiosk/firmware/update"
)

// Firmware updates (README, "Firmware updates"; docs/mqtt.md, "Firmware
// update"): the update_firmware job downloads, verifies and installs a RAUC
// bundle into the inactive slot and leaves the job in progress; this
// kioskd, or the one of whichever slot boots next, finishes it: the new
// slot's kioskd commits when it is ready and healthy within
// update.commit_within, the old slot's reports the rollback.

// ota is the daemon's update state.
type ota struct {
	u      *update.Updater
	window update.Window
	// enabled: a keyring is configured or an update is pending, so the
	// boot is judged and the booted slot marked good.
	enabled bool
	// ready is closed once kioskd has sent READY=1.
	ready     chan struct{}
	readyOnce sync.Once
	// reboot asks runUpdate for a reboot at the next quiet moment.
	reboot chan struct{}
	// installing: from a verified bundle until its install ends, no new
	// session starts (sessionReady says "updating").
	installing atomic.Bool

	mu      sync.Mutex
	version string // running firmware version ("" unknown)
	booted  string // booted slot's bootname
	state   string // what the last boot check found
}

// buildUpdate prepares the updater and, when an update is pending from the
// previous boot, takes its job over before the job runner starts (offers
// of it are then ignored: this process reports its outcome).
func (d *Daemon) buildUpdate() error {
	c := d.cfg.Update
	w, err := update.ParseWindow(c.RebootWindow)
	if err != nil {
		return err
	}
	vf := c.VersionFile
	if vf == "" {
		if exe, err := os.Executable(); err == nil {
			vf = filepath.Join(filepath.Dir(exe), "..", "lib", "kioskd", "firmware-version")
		}
	}
	u, err := update.New(update.Options{
		Dir: filepath.Join(d.cfg.Tx.StateDir, "update"), Keyring: c.Keyring, MaxSize: c.MaxBundleSize,
		Rauc: update.Rauc{Conf: c.RaucConf}, VersionFile: vf, Logger: d.log.With("component", "update"),
	})
	if err != nil {
		return err
	}
	o := &ota{u: u, window: w, ready: make(chan struct{}), reboot: make(chan struct{}, 1), state: "idle"}
	o.version, _ = u.RunningVersion()
	p, err := u.LoadPending()
	if err != nil {
		d.log.Error("firmware update record unusable", "err", err)
	}
	o.enabled = c.Keyring != "" || p != nil
	if p != nil && d.jobs != nil {
		if err := d.jobs.Continue(p.JobID); err != nil {
			d.log.Warn("firmware update: its job is not continued", "job", p.JobID, "err", err)
		}
	}
	d.ota = o
	return nil
}

// updateFirmwareJob is the update_firmware handler: download, verify,
// wait for the session to end, install, then leave the job in progress
// until the new slot has proved itself (or was rolled back).
func (d *Daemon) updateFirmwareJob(ctx context.Context, j jobwire.Job) (jobs.Outcome, error) {
	o := d.ota
	doc, err := update.ParseDoc(j.Doc, d.cfg.Update.MaxBundleSize)
	if err != nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
	}
	progress := func(p update.Progress) { jobs.Progress(ctx, p) }
	b, err := o.u.Prepare(ctx, doc, progress)
	if err != nil {
		return jobs.Outcome{}, refusal(err)
	}
	// The install runs while no session does: none may start from here
	// (the till hears "updating", the screen shows maintenance), and one
	// already running ends first.
	o.installing.Store(true)
	defer o.installing.Store(false)
	if !d.idle() {
		progress(update.Progress{Phase: "waiting_idle", Version: b.Info.Version})
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for !d.idle() {
			select {
			case <-ctx.Done():
				return jobs.Outcome{}, ctx.Err()
			case <-t.C:
			}
		}
	}
	if _, err := o.u.Install(ctx, j.ID, b, progress); err != nil {
		return jobs.Outcome{}, refusal(err)
	}
	o.setState("installed " + b.Info.Version + ", reboot pending")
	select {
	case o.reboot <- struct{}{}:
	default:
	}
	return jobs.Outcome{Pending: true}, nil
}

// refusal turns an update.Refusal (nothing installed) into a rejection.
func refusal(err error) error {
	var r *update.Refusal
	if errors.As(err, &r) {
		return jobs.Reject(r.Reason, "%s", r.Detail)
	}
	return err
}

func (d *Daemon) idle() bool {
	return d.session == nil || d.session.Status().State == session.Idle
}

func (o *ota) setState(s string) {
	o.mu.Lock()
	o.state = s
	o.mu.Unlock()
}

// runUpdate judges the boot once kioskd is ready, then reboots into an
// installed update at the next quiet moment.
func (d *Daemon) runUpdate(ctx context.Context) error {
	o := d.ota
	select {
	case <-o.ready:
	case <-ctx.Done():
		return nil
	}
	if o.enabled {
		d.judgeBoot(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.reboot:
			if err := d.rebootQuietly(ctx); err != nil {
				return nil // stopping
			}
		}
	}
}

// judgeBoot acts on what the boot after an install turned out to be.
func (d *Daemon) judgeBoot(ctx context.Context) {
	o := d.ota
	b, err := o.u.CheckBoot(ctx)
	if err != nil {
		d.log.Error("firmware: boot state unknown", "err", err)
		o.setState("unknown: " + err.Error())
		return
	}
	o.mu.Lock()
	o.booted = b.Booted
	o.mu.Unlock()
	p := b.Pending
	switch b.Kind {
	case update.BootNormal:
		// Every healthy boot is marked good, or the boot loader would count
		// it against the slot's attempts.
		if err := o.u.MarkGood(ctx); err != nil {
			d.log.Warn("firmware: booted slot not marked good", "err", err)
		}
		o.setState("running")
	case update.BootNotRebooted:
		o.setState("installed " + p.Version + ", reboot pending")
		select {
		case o.reboot <- struct{}{}:
		default:
		}
	case update.BootTrial:
		o.setState("trial of " + p.Version)
		reason := d.waitHealthy(ctx, d.cfg.Update.CommitWithin)
		if ctx.Err() != nil {
			return // stopped before the verdict: the next start judges again
		}
		if reason != "" {
			d.log.Error("firmware: the new slot is not healthy; back to the old one", "version", p.Version, "reason", reason)
			if err := o.u.GiveUp(ctx, *p, reason); err != nil {
				d.log.Error("firmware: slot not marked bad", "err", err)
			}
			o.setState("giving up on " + p.Version + ": " + reason)
			if err := d.rebootNow(ctx); err != nil {
				d.log.Error("firmware: reboot failed", "err", err)
			}
			return
		}
		if err := o.u.MarkGood(ctx); err != nil {
			// Not committed: the boot loader falls back after its attempts.
			d.log.Error("firmware: slot not marked good", "err", err)
			o.setState("commit failed: " + err.Error())
			return
		}
		d.completeUpdate(ctx, p, jobwire.StatusSucceeded, "", map[string]string{"version": p.Version, "from": p.From, "slot": p.Slot})
		o.setState("running")
		d.log.Info("firmware: update committed", "version", p.Version, "slot", p.Slot)
	case update.BootRolledBack:
		why := p.Reason
		if why == "" {
			why = "it did not become ready and healthy before its boot attempts ran out"
		}
		reason := fmt.Sprintf("%s: firmware %s in slot %s was rolled back (%s); slot %s runs %s", jobwire.ReasonRolledBack, p.Version, p.Slot, why, b.Booted, o.version)
		if err := o.u.MarkGood(ctx); err != nil {
			d.log.Warn("firmware: booted slot not marked good", "err", err)
		}
		d.completeUpdate(ctx, p, jobwire.StatusFailed, reason, nil)
		o.setState("running; " + p.Version + " rolled back")
		d.log.Warn("firmware: update rolled back", "version", p.Version, "slot", p.Slot, "reason", why)
	}
}

// completeUpdate reports the job and then forgets the pending update (in
// that order: a crash between them reports again, never loses it).
func (d *Daemon) completeUpdate(ctx context.Context, p *update.Pending, status, reason string, result any) {
	if d.jobs != nil {
		if err := d.jobs.Complete(ctx, p.JobID, status, reason, result); err != nil {
			d.log.Warn("firmware: job outcome not reported", "job", p.JobID, "err", err)
		}
	}
	if err := d.ota.u.ClearPending(); err != nil {
		d.log.Error("firmware: pending record not cleared", "err", err)
	}
}

// waitHealthy waits until health is ok; it returns why not after limit.
func (d *Daemon) waitHealthy(ctx context.Context, limit time.Duration) string {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		h := d.Health()
		if h.Status == "ok" {
			return ""
		}
		select {
		case <-ctx.Done():
			return "stopped"
		case <-deadline.C:
			for name, c := range h.Components {
				if c.State != "ok" && c.State != "disabled" {
					return fmt.Sprintf("health not ok within %s: %s %s %s", limit, name, c.State, c.Detail)
				}
			}
			return fmt.Sprintf("health not ok within %s", limit)
		case <-t.C:
		}
	}
}

// rebootQuietly waits for the maintenance window and for no session, then
// reboots. It returns an error only when ctx ends.
func (d *Daemon) rebootQuietly(ctx context.Context) error {
	o := d.ota
	for {
		wait := o.window.Wait(time.Now())
		if wait == 0 && d.idle() {
			break
		}
		if wait == 0 {
			wait = 500 * time.Millisecond
		}
		d.log.Info("firmware: reboot waits", "window", o.window.String(), "for", wait.Round(time.Second))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(wait, time.Minute)):
		}
	}
	if err := d.rebootNow(ctx); err != nil {
		d.log.Error("firmware: reboot failed", "err", err)
	}
	return nil
}

func (d *Daemon) rebootNow(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d.log.Info("firmware: rebooting")
	return d.reboot(ctx)
}

// firmwareComponent is health's view of the firmware.
func (d *Daemon) firmwareComponent() Component {
	o := d.ota
	o.mu.Lock()
	defer o.mu.Unlock()
	info := map[string]string{"version": o.version, "slot": o.booted, "update": o.state}
	if !o.enabled {
		return Component{State: "disabled", Detail: "no update.keyring: firmware updates are refused", Info: info}
	}
	return Component{State: "ok", Info: info}
}

// runReboot runs update.reboot_command.
func runReboot(ctx context.Context, argv []string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %w: %s", argv, err, out)
	}
	return nil
}
