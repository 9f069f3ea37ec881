// Package retire decommissions a kiosk (issue 14): a signed decommission
// event goes through the acknowledged outbox, the outbox is drained (the
// hub revokes the kiosk's certificates before it acknowledges that event),
// then the device key, the document salt, the identity files and the
// transaction state are wiped and the latch records it, so the kiosk stays
// out of service until it is enrolled again.
package retire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kiosk/firmware/devicekey"
	"kiosk/firmware/outbox"
	"kiosk/firmware/tamperlatch"
	"kiosk/firmware/txreport"
)

// Kiosk is what decommissioning touches.
type Kiosk struct {
	// Commit signs a report with the device key and stores it in the
	// outbox (txflow.Flow.Commit).
	Commit func(context.Context, *txreport.Report) error
	Outbox *outbox.Outbox
	Event  *txreport.Report // the decommission event to commit
	Signer *txreport.Signer // withdrawn before the wipe
	Keys   devicekey.Store  // wiped (TPM evict / file overwrite and remove)
	Latch  tamperlatch.File
	// Secrets and identity files (salt, certificate chain, hub and broker
	// certificates): overwritten and removed.
	Files []string
	// CloseState closes the transaction stores; State lists their files,
	// overwritten and removed afterwards.
	CloseState func()
	State      []string
	// OnWipe runs once the outbox drained (or force), before anything is
	// wiped: the caller drops its in-memory secrets there. Until then a
	// failed decommission leaves the kiosk as it was.
	OnWipe func()
}

// Decommission runs the whole sequence. With force the wipe happens even
// if the outbox does not drain within wait (what is queued is lost).
func Decommission(ctx context.Context, k Kiosk, wait time.Duration, force bool) error {
	if err := k.Commit(ctx, k.Event); err != nil && !force {
		return fmt.Errorf("decommission event not queued: %w", err)
	}
	deadline := time.Now().Add(wait)
	for k.Outbox.Stats().Depth > 0 {
		if time.Now().After(deadline) {
			if !force {
				return fmt.Errorf("the outbox still holds %d reports for the hub: try again when the hub is reachable (or force)", k.Outbox.Stats().Depth)
			}
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	st := tamperlatch.State{Latched: true, Since: time.Now().UTC(), Decommissioned: true}
	if err := k.Latch.Save(st); err != nil {
		return err
	}
	if k.OnWipe != nil {
		k.OnWipe()
	}
	var errs []error
	if k.Signer != nil {
		k.Signer.Withdraw()
	}
	if k.Keys != nil {
		errs = append(errs, k.Keys.Wipe(ctx))
	}
	for _, f := range k.Files {
		if f != "" {
			errs = append(errs, tamperlatch.Wipe(f))
		}
	}
	if k.CloseState != nil {
		k.CloseState()
	}
	for _, f := range k.State {
		errs = append(errs, tamperlatch.Wipe(f))
	}
	st.Wiped = true
	errs = append(errs, k.Latch.Save(st))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("decommission wipe: %w", err)
	}
	return nil
}
