package daemon

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiosk/firmware/audit"
	"kiosk/firmware/devicekey"
	"kiosk/firmware/hub"
	"kiosk/firmware/tamperlatch"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
)

// The tamper latch (issue 14): opening the enclosure latches the kiosk
// out of service on disk, queues a signed alarm in the outbox, then wipes
// the device key, the document salt and the session; only a kiosk
// enrolled again may be put back in service by staff, and that reset is
// reported through the outbox too.

func (d *Daemon) latchFile() tamperlatch.File {
	return tamperlatch.File{Path: filepath.Join(d.cfg.Tx.StateDir, "tamper.json")}
}

// latched reads the persisted latch; an unreadable latch counts as
// latched (fail closed).
func (d *Daemon) latched() tamperlatch.State {
	s, err := d.latchFile().Load()
	if err != nil {
		d.log.Error("tamper latch unreadable: staying out of service", "err", err)
	}
	return s
}

// onTamper runs when the enclosure opens. The order survives a power cut
// at any step: the latch is on disk first, the alarm is signed while the
// key exists, the wipe comes last and is redone at the next start if it
// was not recorded.
func (d *Daemon) onTamper(ctx context.Context) {
	f := d.latchFile()
	st := d.latched()
	if st.Latched && st.Wiped {
		return
	}
	if !st.Latched || st.Since.IsZero() {
		st = tamperlatch.State{Latched: true, Since: time.Now().UTC()}
		if err := f.Save(st); err != nil {
			d.log.Error("tamper latch not saved", "err", err)
		}
	}
	if !st.AlarmQueued && d.tx != nil {
		if err := d.tx.flow.Commit(ctx, d.event(txreport.EventTamperAlarm)); err != nil {
			d.log.Error("tamper alarm not queued (key already gone?)", "err", err)
		} else {
			st.AlarmQueued = true
			_ = f.Save(st)
		}
	}
	// Each step is recorded as it succeeds: a step that failed is
	// retried at the next start, one that succeeded never runs again (the
	// key staff enrolled since must survive).
	var errs []error
	if !st.KeyWiped {
		if d.keyCreatedSince(st.Since) {
			d.log.Warn("tamper: the device key was made after the latch (enrolled again): not wiped again")
			st.KeyWiped = true
		} else if err := d.wipeKey(ctx); err != nil {
			errs = append(errs, err)
		} else {
			st.KeyWiped = true
		}
		if err := f.Save(st); err != nil {
			d.log.Error("tamper latch not saved", "err", err)
		}
	}
	if !st.SaltWiped {
		if err := d.wipeSalt(); err != nil {
			errs = append(errs, err)
		} else {
			st.SaltWiped = true
		}
		if err := f.Save(st); err != nil {
			d.log.Error("tamper latch not saved", "err", err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.log.Error("tamper wipe incomplete: the failed step will be retried at the next start", "err", err)
		return
	}
	st.Wiped = true
	if err := f.Save(st); err != nil {
		d.log.Error("tamper latch not saved", "err", err)
	}
	d.log.Warn("tamper: device key, document salt and session wiped; enroll the kiosk again, then reset")
}

// event is a signed event report for the outbox.
func (d *Daemon) event(name string) *txreport.Report {
	now := txreport.Timestamp(time.Now())
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &txreport.Report{V: txreport.Version, TxID: fmt.Sprintf("ev-%s-%x", name, id), Terminal: d.cfg.Device.ID,
		Merchant: d.cfg.Tx.Merchant, Kind: txreport.KindEvent, Service: name, Started: now, Decided: now,
		Auth: txreport.Auth{Mode: txreport.AuthNone}}
}

// wipeKey withdraws the device key from the signer and destroys it (TPM:
// evicted; file: overwritten and removed). The session was already
// aborted by going out of service.
func (d *Daemon) wipeKey(ctx context.Context) error {
	// Under keyMu so a renewal finishing now cannot put its key back
	// between the two (see the renewer's OnRenewed).
	d.keyMu.Lock()
	if d.tx != nil {
		d.tx.signer.Withdraw()
	}
	d.deviceKey = nil
	d.keyMu.Unlock()
	d.storeMu.Lock()
	defer d.storeMu.Unlock()
	var err error
	if d.keys != nil {
		err = d.keys.Wipe(ctx)
	}
	// Let go of the TPM so it can be enrolled again (a software TPM
	// serves one connection at a time); reopened at the reset.
	if d.tpm != nil {
		d.tpm.Close()
		d.tpm, d.keys = nil, nil
	}
	return err
}

// wipeSalt clears the document salt in memory and on disk.
func (d *Daemon) wipeSalt() error {
	if d.tx != nil {
		d.tx.clearSalt()
	}
	return tamperlatch.Wipe(d.cfg.Tx.DocSaltFile)
}

// keyCreatedSince says a key file was written after the latch closed: the
// kiosk was enrolled again after a wipe whose record was lost. (A TPM key
// carries no creation time here; there the step record alone decides.)
func (d *Daemon) keyCreatedSince(since time.Time) bool {
	fk, ok := d.keyStore().(*devicekey.File)
	if !ok || since.IsZero() {
		return false
	}
	fi, err := os.Stat(fk.Path)
	return err == nil && fi.ModTime().After(since)
}

// simEphemeral: simulation that never had an enrolled key.
func (d *Daemon) simEphemeral() bool {
	return d.cfg.Device.Mode == "simulation" && d.tx != nil && d.tx.ephemeral
}

// tamperResetBlocked says why staff may not reset the latch yet.
func (d *Daemon) tamperResetBlocked(ctx context.Context) error {
	if d.decommissioned.Load() {
		return errors.New("decommissioned: enroll the kiosk again, restore its salt and restart kioskd")
	}
	st := d.latched()
	if !st.KeyGone() && !st.SaltWiped {
		return nil
	}
	keys, err := d.openKeyStore()
	if err != nil {
		return err
	}
	if _, err := keys.Load(ctx); errors.Is(err, devicekey.ErrNoKey) {
		if d.simEphemeral() {
			return nil // simulation without enrollment: a new development key
		}
		return errors.New("the device key was wiped: enroll the kiosk again (kioskctl provision enroll), then reset")
	} else if err != nil {
		return err
	}
	if d.cfg.Device.Mode != "simulation" {
		if b, err := os.ReadFile(d.cfg.Tx.DocSaltFile); err != nil || len(strings.TrimSpace(string(b))) < 16 {
			return fmt.Errorf("the document salt was wiped: restore %s, then reset", d.cfg.Tx.DocSaltFile)
		}
	}
	return nil
}

// completeTamperReset puts the new key to work, restores the salt and
// reports the reset; the caller then clears the controller's latch.
func (d *Daemon) completeTamperReset(ctx context.Context) error {
	if err := d.tamperResetBlocked(ctx); err != nil {
		return err
	}
	st := d.latched()
	if st.KeyGone() && d.tx != nil {
		var (
			key  crypto.Signer
			cert *x509.Certificate
		)
		keys, err := d.openKeyStore()
		if err != nil {
			return err
		}
		k, err := keys.Load(ctx)
		switch {
		case errors.Is(err, devicekey.ErrNoKey) && d.simEphemeral():
			d.log.Warn("simulation: a new ephemeral development key after the tamper reset")
			ek, c, err := devkey.Generate(d.cfg.Device.ID, 365*24*time.Hour)
			if err != nil {
				return err
			}
			key, cert = ek, c
		case err != nil:
			return err
		default:
			d.setKey(k)
			fresh, err := d.deviceSigner()
			if err != nil {
				return fmt.Errorf("new device certificate: %w", err)
			}
			key, cert = k, fresh.Certificate()
		}
		if err := d.tx.signer.Restore(key, cert); err != nil {
			return err
		}
		// The embedded hub (simulation) learns the new certificate as a
		// bank hub does at enrollment.
		if d.tx.hubKeys != nil {
			if err := d.tx.hubKeys.Add(cert); err != nil {
				return err
			}
		}
		if b, err := os.ReadFile(d.cfg.Tx.DocSaltFile); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
			d.tx.setSalt([]byte(strings.TrimSpace(string(b))))
		} else {
			salt := make([]byte, 32) // simulation: a new random salt
			_, _ = rand.Read(salt)
			d.tx.setSalt(salt)
		}
	}
	if d.tx != nil {
		if err := d.tx.flow.Commit(ctx, d.event(txreport.EventTamperReset)); err != nil {
			return fmt.Errorf("tamper reset not recorded: %w", err)
		}
	}
	if err := d.latchFile().Save(tamperlatch.State{}); err != nil {
		return err
	}
	d.log.Info("tamper latch reset by staff")
	return nil
}

// clientCertificate is the hub link's TLS client certificate: the device
// certificate chain with the current device key, read at every connection
// so a re-enrolled or renewed kiosk reconnects with its new one.
func (d *Daemon) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	key := d.key()
	if key == nil {
		return nil, devicekey.ErrNoKey
	}
	c, err := hub.TLSConfigSigner("", d.cfg.Hub.CertFile, key)
	if err != nil {
		return nil, err
	}
	return &c.Certificates[0], nil
}

// recordStaff appends a staff action to the audit log and sends the
// entry to the hub through the outbox (signed, acknowledged). Failures
// are logged: the action itself has been authorised already.
func (d *Daemon) recordStaff(ctx context.Context, who, action, detail string) {
	if d.tx == nil || d.tx.audit == nil {
		return
	}
	e, err := d.tx.audit.Append(who, action, detail, time.Now())
	if err != nil {
		d.log.Error("staff audit entry not written", "action", action, "err", err)
		return
	}
	r := d.event(txreport.EventStaffAudit)
	if r.TxID, err = auditTxID(e); err != nil {
		d.log.Error("staff audit entry not queued for the hub", "seq", e.Seq, "err", err)
		return
	}
	r.Audit = &e
	if err := d.tx.flow.Commit(ctx, r); err != nil {
		d.log.Error("staff audit entry not queued for the hub", "seq", e.Seq, "err", err)
	}
}

// auditTxID names an audit entry's report by its sequence and its own
// hash: unique also after the log was reset (decommission), where the
// sequence and the previous hash start over and the hub's deduplication
// would drop the new entry as a resend of the old one.
func auditTxID(e audit.Entry) (string, error) {
	h, err := audit.Hash(e)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("audit-%d-%s", e.Seq, h[:16]), nil
}
