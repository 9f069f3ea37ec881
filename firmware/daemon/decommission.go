package daemon

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"kiosk/firmware/event"
	"kiosk/firmware/retire"
	"kiosk/firmware/txreport"
)

// decommission takes the kiosk out of service for good (package
// retire); with force the wipe happens even if the outbox could not be
// drained in wait (reports still queued are lost: staff decide).
func (d *Daemon) decommission(ctx context.Context, wait time.Duration, force bool) error {
	if d.tx == nil {
		return errors.New("no transaction stack")
	}
	d.bus.Publish(event.Event{Source: "decommission", Kind: "staff.action", Data: staffAction{Action: "maintenance", On: true}})
	clear(d.tx.salt)
	d.setKey(nil)
	k := retire.Kiosk{
		Commit: d.tx.flow.Commit, Outbox: d.tx.outbox, Event: d.event(txreport.EventDecommission), Signer: d.tx.signer,
		Keys: d.keys, Latch: d.latchFile(),
		Files:      []string{d.cfg.Tx.DocSaltFile, d.cfg.Tx.DeviceCert, d.cfg.Hub.CertFile, d.cfg.Hub.AuthCert},
		CloseState: d.tx.close,
	}
	for _, name := range []string{"outbox.db", "offline.db", "payments.db", "audit.log"} {
		k.State = append(k.State, filepath.Join(d.cfg.Tx.StateDir, name))
	}
	err := retire.Decommission(ctx, k, wait, force)
	if err != nil {
		return err
	}
	d.decommissioned.Store(true)
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
	u.d.recordStaff(r.Context(), u.who(r), "decommission", map[bool]string{true: "forced", false: ""}[req.Force])
	if err := u.d.decommission(r.Context(), 30*time.Second, req.Force); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"state": "decommissioned"})
}
