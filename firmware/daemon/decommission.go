package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"kiosk/firmware/event"
	"kiosk/firmware/tamperlatch"
	"kiosk/firmware/txreport"
)

// decommission takes the kiosk out of service for good (issue 14): a
// signed decommission event goes through the outbox, the outbox is
// drained (the hub revokes the kiosk's certificates before it
// acknowledges that event), then the device key, the document salt, the
// identity files and the transaction state are wiped. With force the wipe
// happens even if the outbox could not be drained in wait (reports still
// queued are lost: staff decide).
func (d *Daemon) decommission(ctx context.Context, wait time.Duration, force bool) error {
	if d.tx == nil {
		return errors.New("no transaction stack")
	}
	d.bus.Publish(event.Event{Source: "decommission", Kind: "staff.action", Data: staffAction{Action: "maintenance", On: true}})
	if err := d.tx.flow.Commit(ctx, d.event(txreport.EventDecommission)); err != nil && !force {
		return fmt.Errorf("decommission event not queued: %w", err)
	}
	deadline := time.Now().Add(wait)
	for d.tx.outbox.Stats().Depth > 0 {
		if time.Now().After(deadline) {
			if !force {
				return fmt.Errorf("the outbox still holds %d reports for the hub: try again when the hub is reachable (or force)", d.tx.outbox.Stats().Depth)
			}
			d.log.Warn("decommission forced with reports still queued", "reports", d.tx.outbox.Stats().Depth)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	st := tamperlatch.State{Latched: true, Since: time.Now().UTC(), Decommissioned: true}
	if err := d.latchFile().Save(st); err != nil {
		return err
	}
	errs := []error{d.wipeSecrets(ctx)}
	// Identity files (the certificate chain and what enrollment gave).
	for _, f := range []string{d.cfg.Tx.DeviceCert, d.cfg.Hub.CertFile, d.cfg.Hub.AuthCert} {
		if f != "" {
			errs = append(errs, tamperlatch.Wipe(f))
		}
	}
	// Transaction state: closed, then overwritten and removed. The kiosk
	// stays out of service (the latch) until it is enrolled and set up
	// again, and restarted.
	d.tx.close()
	for _, name := range []string{"outbox.db", "offline.db", "payments.db"} {
		errs = append(errs, tamperlatch.Wipe(filepath.Join(d.cfg.Tx.StateDir, name)))
	}
	st.Wiped = true
	errs = append(errs, d.latchFile().Save(st))
	d.decommissioned.Store(true)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("decommission wipe: %w", err)
	}
	d.log.Warn("decommissioned: certificates revoked at the hub, keys, salt, identity and state wiped")
	return nil
}

// decommissionHandler is POST /api/staff/decommission {"force":false}.
func (u *uiState) decommission(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Force bool `json:"force"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	u.d.log.Info("staff action", "action", "decommission", "force", req.Force)
	if err := u.d.decommission(r.Context(), 30*time.Second, req.Force); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"state": "decommissioned"})
}
