package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"kiosk/firmware/enroll"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/event"
	"kiosk/firmware/feedback"
	"kiosk/firmware/hub"
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
	if st := d.latched(); st.KeyGone() && !force {
		// No key to sign the decommission event with: the hub must be told
		// by staff.
		return fmt.Errorf("the device key was wiped (tamper): revoke this kiosk at the hub (kioskctl provision revoke --device %s), then decommission with force", d.cfg.Device.ID)
	}
	// Out of service while the outbox drains; the key and salt stay until
	// it drained (the link needs the key to deliver), and a decommission
	// that fails puts the kiosk back as it was.
	inMaintenance := false
	if u := d.findUI(); u != nil {
		u.mu.Lock()
		inMaintenance = u.service.OutOfService && u.service.Reason == feedback.ReasonMaintenance
		u.mu.Unlock()
	}
	d.bus.Publish(event.Event{Source: "decommission", Kind: "staff.action", Data: staffAction{Action: "maintenance", On: true}})
	wiping := false
	k := retire.Kiosk{
		OnWipe: func() {
			wiping = true
			d.tx.clearSalt()
			d.setKey(nil)
		},
		Commit: d.tx.flow.Commit, Outbox: d.tx.outbox, Event: d.event(txreport.EventDecommission), Signer: d.tx.signer,
		Keys: d.keyStore(), Latch: d.latchFile(),
		Files:      []string{d.cfg.Tx.DocSaltFile, d.cfg.Tx.DeviceCert, d.cfg.Hub.CertFile, d.cfg.Hub.AuthCert, d.cfg.Hub.OperationsCert},
		CloseState: d.tx.close,
	}
	for _, name := range []string{"outbox.db", "offline.db", "payments.db", "audit.log"} {
		k.State = append(k.State, filepath.Join(d.cfg.Tx.StateDir, name))
	}
	err := retire.Decommission(ctx, k, wait, force)
	if err != nil && !wiping {
		if !inMaintenance {
			d.bus.Publish(event.Event{Source: "decommission", Kind: "staff.action", Data: staffAction{Action: "maintenance", On: false}})
		}
		return err
	}
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

// enrollRequest is POST /api/staff/enroll: enroll this kiosk again (after
// a tamper wipe) with a token from the bank, through the hub's
// provisioning listener.
type enrollRequest struct {
	Hub   string `json:"hub"`
	Token string `json:"token"`
	// Force enrolls a kiosk whose device key still works (a replacement
	// certificate); without it only a wiped kiosk is enrolled.
	Force bool `json:"force,omitempty"`
}

func (u *uiState) enroll(w http.ResponseWriter, r *http.Request) {
	var req enrollRequest
	if !decodeControl(w, r, &req) {
		return
	}
	id, err := u.d.enrollAgain(r.Context(), req.Hub, req.Token, req.Force)
	req.Token = ""
	if err != nil {
		var re *enroll.RejectedError
		status := http.StatusBadGateway
		if errors.As(err, &re) || errors.Is(err, errEnrollInput) {
			status = http.StatusConflict
		}
		writeError(w, status, err.Error())
		return
	}
	u.d.recordStaff(r.Context(), u.who(r), "enroll", id.Serial)
	writeJSON(w, http.StatusOK, id)
}

var errEnrollInput = errors.New("enroll")

// enrollAgain runs enrollment by claim from the running kiosk. The new
// key goes where the configured key storage keeps it and the identity
// beside transactions.device_cert; it takes effect at the tamper reset
// (or a restart).
func (d *Daemon) enrollAgain(ctx context.Context, broker, token string, force bool) (enroll.Identity, error) {
	if d.decommissioned.Load() {
		return enroll.Identity{}, fmt.Errorf("%w: decommissioned: enroll with kioskctl and restart", errEnrollInput)
	}
	if !force && d.key() != nil && !d.latched().KeyGone() {
		return enroll.Identity{}, fmt.Errorf("%w: this kiosk has a working device key: enrolling replaces it (send force to do so anyway)", errEnrollInput)
	}
	u, err := url.Parse(broker)
	if err != nil || (u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtts" && u.Scheme != "wss") {
		return enroll.Identity{}, fmt.Errorf("%w: hub %q: the token must travel over TLS (ssl://, tls://, mqtts:// or wss://)", errEnrollInput, broker)
	}
	if _, dev, err := enrollwire.ParseToken(token); err != nil {
		return enroll.Identity{}, fmt.Errorf("%w: %v", errEnrollInput, err)
	} else if dev != d.cfg.Device.ID {
		return enroll.Identity{}, fmt.Errorf("%w: the token is for %q, this kiosk is %q", errEnrollInput, dev, d.cfg.Device.ID)
	}
	if filepath.Base(d.cfg.Tx.DeviceCert) != enroll.FileChain {
		return enroll.Identity{}, fmt.Errorf("%w: transactions.device_cert must be <identity dir>/%s", errEnrollInput, enroll.FileChain)
	}
	keys, err := d.openKeyStore()
	if err != nil {
		return enroll.Identity{}, err
	}
	tlsCfg, err := hub.TLSConfig(d.cfg.Hub.CAFile, "", "")
	if err != nil {
		return enroll.Identity{}, err
	}
	return enroll.Enroll(ctx, enroll.Options{Broker: broker, TLS: tlsCfg, Token: token, Dir: filepath.Dir(d.cfg.Tx.DeviceCert),
		Keys: keys, Prefix: d.cfg.Hub.TopicPrefix, Wait: 20 * time.Second, Logger: d.log.With("component", "enroll")})
}
