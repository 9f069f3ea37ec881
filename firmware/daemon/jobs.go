package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"kiosk/firmware/config"
	"kiosk/firmware/event"
	"kiosk/firmware/feedback"
	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
)

// Fleet jobs (docs/mqtt.md, "Jobs") replace the unsigned ping, health and
// reload_trust commands of earlier versions: only a job sealed by the
// hub's operations key (hub.operations_cert) runs, once, before its
// expiry, on the kiosk it names, after the session under way.

// buildJobs makes the job runner, or none (with a warning) when no
// operations certificate is configured and none was made for the embedded
// hub: then no job is accepted at all.
func (d *Daemon) buildJobs(ops *txreport.Keyring) error {
	if d.hub == nil || d.tx == nil {
		return nil
	}
	if d.cfg.Hub.OperationsCert != "" {
		var err error
		if ops, err = txreport.LoadKeyringFile(d.cfg.Hub.OperationsCert); err != nil {
			return &config.Error{Key: "hub.operations_cert", Msg: err.Error()}
		}
	}
	if ops == nil {
		d.log.Warn("fleet jobs are refused: no hub.operations_cert (simulation)")
		return nil
	}
	handlers := d.jobHandlers()
	maps.Copy(handlers, d.opsJobHandlers()) // fleetops.go
	r, err := jobs.New(jobs.Options{
		Link: d.hub, Operations: ops, Signer: d.tx.signer, StateDir: d.cfg.Tx.StateDir,
		Handlers: handlers, // every kind jobwire knows is carried out
		// A firmware download resumes where a restart stopped it.
		Rerun: map[string]bool{jobwire.KindUpdateFirmware: true},
		Idle: func() bool {
			return d.session == nil || d.session.Status().State == session.Idle
		},
		OnStatus: func(st jobwire.Status) {
			d.bus.Publish(event.Event{Source: "jobs", Kind: "job." + st.Status, Data: map[string]string{"job": st.JobID, "reason": st.Reason}})
		},
		Logger: d.log.With("component", "jobs"),
	})
	if err != nil {
		return fmt.Errorf("fleet jobs: %w", err)
	}
	d.jobs = r
	return nil
}

func (d *Daemon) jobHandlers() map[string]jobs.Handler {
	return map[string]jobs.Handler{
		jobwire.KindPing: func(context.Context, jobwire.Job) (jobs.Outcome, error) {
			return jobs.Outcome{Result: map[string]string{"device": d.cfg.Device.ID, "version": d.opts.Version}}, nil
		},
		jobwire.KindHealth: func(context.Context, jobwire.Job) (jobs.Outcome, error) {
			return jobs.Outcome{Result: d.Health()}, nil
		},
		jobwire.KindReloadTrust: func(context.Context, jobwire.Job) (jobs.Outcome, error) {
			in, err := d.ReloadTrust()
			if err != nil {
				return jobs.Outcome{}, err
			}
			return jobs.Outcome{Result: in}, nil
		},
		jobwire.KindSetConfig:      d.setConfigJob,
		jobwire.KindUpdateFirmware: d.updateFirmwareJob,
		jobwire.KindTrustBundle:    d.trustBundleJob,
		jobwire.KindMaintenanceOn:  d.maintenanceJob(true),
		jobwire.KindMaintenanceOff: d.maintenanceJob(false),
		jobwire.KindReboot: func(context.Context, jobwire.Job) (jobs.Outcome, error) {
			// The reboot comes after the terminal status is recorded and
			// sent, so the kiosk does not run it again when it is back.
			return jobs.Outcome{After: func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := d.reboot(ctx); err != nil {
					d.log.Error("reboot job: reboot failed", "err", err)
				}
			}}, nil
		},
	}
}

// reboot restarts the machine with update.reboot_command (systemctl
// reboot; Options.Reboot in tests).
func (d *Daemon) reboot(ctx context.Context) error {
	if d.opts.Reboot != nil {
		return d.opts.Reboot(ctx)
	}
	return runReboot(ctx, d.cfg.Update.RebootCommand)
}

// maintenanceJob asks the feedback controller (the one writer of the
// service state) as the staff screen does, and waits to see it applied.
func (d *Daemon) maintenanceJob(on bool) jobs.Handler {
	return func(ctx context.Context, _ jobwire.Job) (jobs.Outcome, error) {
		if d.session == nil {
			return jobs.Outcome{}, jobs.Reject(jobwire.ReasonUnsupported, "this kiosk runs no sessions")
		}
		if !on && d.latched().Latched {
			return jobs.Outcome{}, errors.New("the tamper latch is set: staff must reset it at the kiosk")
		}
		d.bus.Publish(event.Event{Source: "jobs", Kind: "staff.action", Data: staffAction{Action: "maintenance", On: on}})
		reason, err := d.awaitService(ctx, func(reason string) bool {
			return on && reason != "" || !on && reason != feedback.ReasonMaintenance
		})
		if err != nil {
			return jobs.Outcome{}, fmt.Errorf("service state did not change: %w", err)
		}
		return jobs.Outcome{Result: map[string]string{"out_of_service": reason}}, nil
	}
}

// awaitService waits up to 10 s for the session's out-of-service reason
// ("" in service) to satisfy done, and returns it; the change itself
// travels on the event bus to the session.
func (d *Daemon) awaitService(ctx context.Context, done func(reason string) bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		reason := d.session.OutOfService()
		if done(reason) {
			return reason, nil
		}
		select {
		case <-ctx.Done():
			return reason, fmt.Errorf("still %q", reason)
		case <-t.C:
		}
	}
}
