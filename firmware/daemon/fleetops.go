package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiosk/firmware/diagnostics"
	"kiosk/firmware/event"
	"kiosk/firmware/feedback"
	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
)

// The fleet's operations on one kiosk (docs/mqtt.md, "Jobs"): collect
// logs and diagnostics, rotate the device certificate now, and take the
// kiosk out of service and back.

func (d *Daemon) opsJobHandlers() map[string]jobs.Handler {
	return map[string]jobs.Handler{
		jobwire.KindCollectLogs: d.collectLogsJob,
		jobwire.KindRotateCert:  d.rotateCertJob,
		jobwire.KindServiceOff:  d.serviceJob(true),
		jobwire.KindServiceOn:   d.serviceJob(false),
	}
}

// collect_logs bounds. The result travels in the job status (at most
// jobwire.MaxDoc of JSON text inside a sealed status of at most
// jobwire.MaxSealed), so everything is sized to fit there with the
// escaping the sealed body adds.
const (
	defaultLogLines = 200
	maxLogLines     = 2000
	// logBytes bounds the lines; resultBudget the whole result's JSON
	// text as it is escaped inside the sealed body.
	logBytes     = 16 << 10
	resultBudget = 44 << 10
)

// logsDoc is a collect_logs document.
type logsDoc struct {
	Lines       int   `json:"lines"`
	Diagnostics *bool `json:"diagnostics"`
}

func parseLogsDoc(s string) (logsDoc, error) {
	doc := logsDoc{Lines: defaultLogLines}
	if strings.TrimSpace(s) == "" {
		return doc, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return logsDoc{}, fmt.Errorf(`the document must be {"lines":N,"diagnostics":true|false} (%v)`, err)
	}
	if doc.Lines < 0 || doc.Lines > maxLogLines {
		return logsDoc{}, fmt.Errorf("lines %d (0..%d)", doc.Lines, maxLogLines)
	}
	return doc, nil
}

// escapedLen is the length of s as a string inside the canonical sealed
// body (only " and \ are escaped there).
func escapedLen(s string) int {
	return len(s) + strings.Count(s, `"`) + strings.Count(s, `\`) + 2
}

func (d *Daemon) collectLogsJob(ctx context.Context, j jobwire.Job) (jobs.Outcome, error) {
	doc, err := parseLogsDoc(j.Doc)
	if err != nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
	}
	res := jobwire.LogsResult{Device: d.cfg.Device.ID, Since: d.started.UTC(), Lines: []string{}}
	if doc.Lines > 0 {
		res.Lines, res.Omitted = d.logs.Tail(doc.Lines, logBytes)
	}
	if res.Lines == nil {
		res.Lines = []string{}
	}
	encoded := func() (int, error) {
		b, err := json.Marshal(res)
		if err != nil {
			return 0, err
		}
		return escapedLen(string(b)), nil
	}
	if doc.Diagnostics == nil || *doc.Diagnostics {
		n, err := encoded()
		if err != nil {
			return jobs.Outcome{}, err
		}
		// What is left of the budget, less base64's growth and the
		// note's room.
		zipBudget := (resultBudget - n - 512) * 3 / 4
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		zb, err := diagnostics.Collect(cctx, diagnostics.Options{
			Device: d.cfg.Device.ID, Version: d.opts.Version, StateFiles: d.stateFiles(),
			Extra: map[string]any{"health": d.Health()}, MaxBytes: max(zipBudget, 1),
		})
		cancel()
		switch {
		case errors.Is(err, diagnostics.ErrTooLarge):
			res.DiagnosticsNote = fmt.Sprintf("the diagnostics did not fit in the %d bytes left in the job result: collect them at the kiosk (staff screen)", zipBudget)
		case err != nil:
			res.DiagnosticsNote = "diagnostics: " + err.Error()
		default:
			res.Diagnostics = base64.StdEncoding.EncodeToString(zb)
			res.DiagnosticsNote = fmt.Sprintf("zip of %d bytes bounded to %d: profiles that did not fit are named in its README.txt; the full archive comes from the staff screen", len(zb), zipBudget)
		}
	}
	// Lines with many quotes grow when escaped: drop the oldest until the
	// whole fits.
	for {
		n, err := encoded()
		if err != nil {
			return jobs.Outcome{}, err
		}
		if n <= resultBudget || len(res.Lines) == 0 {
			break
		}
		drop := max(1, len(res.Lines)/8)
		res.Lines, res.Omitted = res.Lines[drop:], res.Omitted+drop
	}
	d.log.Info("logs collected for the fleet", "job", j.ID, "lines", len(res.Lines), "diagnostics_bytes", len(res.Diagnostics))
	return jobs.Outcome{Result: res}, nil
}

// rotateCertJob renews the device certificate now through the hub
// (enroll.Renewer, the same path as the renewal from 30 days before
// expiry); the request names the job, which lets the hub renew early.
func (d *Daemon) rotateCertJob(ctx context.Context, j jobwire.Job) (jobs.Outcome, error) {
	if d.tx == nil || d.tx.renewer == nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonUnsupported,
			"this kiosk has no certificate from the bank's device CA to renew (development key, or no hub brokers): enroll it")
	}
	old := d.tx.signer.Certificate()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := d.tx.renewer.RenewFor(rctx, j.ID); err != nil {
		return jobs.Outcome{}, fmt.Errorf("renew the device certificate (the old one stays in use): %w", err)
	}
	c := d.tx.signer.Certificate()
	return jobs.Outcome{Result: jobwire.CertResult{Serial: c.SerialNumber.Text(16), NotAfter: c.NotAfter.UTC(),
		PreviousSerial: old.SerialNumber.Text(16), PreviousNotAfter: old.NotAfter.UTC()}}, nil
}

// serviceFile persists the fleet's out-of-service hold: unlike staff
// maintenance (temporary, gone at a restart), it holds until service_on.
const serviceFile = "service.json"

// ServiceHold is the persisted fleet hold.
type ServiceHold struct {
	OutOfService bool      `json:"out_of_service"`
	Job          string    `json:"job"`
	Since        time.Time `json:"since"`
}

// serviceHold reads the hold; an unreadable file holds (fail closed).
func (d *Daemon) serviceHold() (ServiceHold, error) {
	b, err := os.ReadFile(filepath.Join(d.cfg.Tx.StateDir, serviceFile))
	if errors.Is(err, os.ErrNotExist) {
		return ServiceHold{}, nil
	}
	var h ServiceHold
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		return ServiceHold{OutOfService: true}, fmt.Errorf("%s unreadable, the kiosk stays out of service: %w", serviceFile, err)
	}
	return h, nil
}

// serviceJob takes the kiosk out of service for the fleet (out) or puts
// it back: the hold is written first (atomically), then the feedback
// controller, the one writer of the service state, applies it.
func (d *Daemon) serviceJob(out bool) jobs.Handler {
	return func(ctx context.Context, j jobwire.Job) (jobs.Outcome, error) {
		if d.session == nil {
			return jobs.Outcome{}, jobs.Reject(jobwire.ReasonUnsupported, "this kiosk runs no sessions")
		}
		h := ServiceHold{OutOfService: out, Job: j.ID, Since: d.now().UTC()}
		b, err := json.Marshal(h)
		if err != nil {
			return jobs.Outcome{}, err
		}
		if err := os.MkdirAll(d.cfg.Tx.StateDir, 0o700); err != nil {
			return jobs.Outcome{}, err
		}
		if err := writeFileAtomic(d.cfg.Tx.StateDir, serviceFile, b); err != nil {
			return jobs.Outcome{}, fmt.Errorf("persist the service state (nothing changed): %w", err)
		}
		d.bus.Publish(event.Event{Source: "jobs", Kind: "fleet.service", Data: staffAction{Action: "service", On: out}})
		reason, err := d.awaitService(ctx, func(reason string) bool {
			return out && reason != "" || !out && reason != feedback.ReasonService
		})
		switch {
		case err != nil:
			return jobs.Outcome{}, fmt.Errorf("service state did not change (the hold is persisted and applies at the next start): %w", err)
		case !out && reason != "":
			return jobs.Outcome{}, fmt.Errorf("the fleet's hold is lifted, but the kiosk stays out of service: %s (staff at the kiosk, or maintenance_off)", reason)
		}
		return jobs.Outcome{Result: map[string]any{"out_of_service": reason, "fleet_hold": out}}, nil
	}
}
