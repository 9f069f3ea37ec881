package daemon

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"kiosk/firmware/config"
	"kiosk/firmware/devicekey"
	"kiosk/firmware/enroll"
	"kiosk/firmware/txreport"
)

func (d *Daemon) key() crypto.Signer {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	return d.deviceKey
}

func (d *Daemon) setKey(k crypto.Signer) {
	d.keyMu.Lock()
	d.deviceKey = k
	d.keyMu.Unlock()
}

// openKeyStore opens the device key store (the TPM connection, or names
// the key file).
// openKeyStore opens it if it is not open (after a tamper wipe let go
// of the TPM) and returns it.
func (d *Daemon) openKeyStore() (devicekey.Store, error) {
	d.storeMu.Lock()
	defer d.storeMu.Unlock()
	if d.keys != nil {
		return d.keys, nil
	}
	cfg := d.cfg.Tx
	switch cfg.KeyStorage {
	case "tpm":
		t, err := devicekey.OpenTPM(cfg.TPMDevice)
		if err != nil {
			return nil, &config.Error{Key: "transactions.tpm_device", Msg: err.Error()}
		}
		d.tpm, d.keys = t, t
	default:
		d.keys = &devicekey.File{Path: cfg.DeviceKey}
	}
	return d.keys, nil
}

// keyStore is the open key store, nil when closed (after a tamper wipe).
func (d *Daemon) keyStore() devicekey.Store {
	d.storeMu.Lock()
	defer d.storeMu.Unlock()
	return d.keys
}

// pendingKeys gives the renewer the key store current at each renewal
// (the tamper reset may have reopened it), never a stale TPM handle.
type pendingKeys struct{ d *Daemon }

func (p pendingKeys) CreatePending(ctx context.Context) (crypto.Signer, func() error, func() error, error) {
	pk, ok := p.d.keyStore().(enroll.PendingKeys)
	if !ok {
		return nil, nil, nil, errors.New("no key store open (wiped by the tamper latch?)")
	}
	return pk.CreatePending(ctx)
}

// openKeys opens the device key store and loads the key if one exists
// (a kiosk that is not enrolled yet has none).
func (d *Daemon) openKeys() error {
	keys, err := d.openKeyStore()
	if err != nil {
		return err
	}
	k, err := keys.Load(context.Background())
	switch {
	case err == nil:
		d.setKey(k)
	case errors.Is(err, devicekey.ErrNoKey):
		d.log.Warn("no device key: this kiosk is not enrolled (kioskctl provision enroll)", "key_storage", keys.Kind())
	default:
		key := "transactions.device_key"
		if d.cfg.Tx.KeyStorage == "tpm" {
			key = "transactions.tpm_device"
		}
		return &config.Error{Key: key, Msg: err.Error()}
	}
	return nil
}

// deviceSigner pairs the loaded device key with its certificate (the
// first of the chain file).
func (d *Daemon) deviceSigner() (*txreport.Signer, error) {
	key := d.key()
	if key == nil {
		return nil, fmt.Errorf("%w (key_storage %s)", devicekey.ErrNoKey, d.cfg.Tx.KeyStorage)
	}
	b, err := os.ReadFile(d.cfg.Tx.DeviceCert)
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return nil, fmt.Errorf("device certificate %s: no PEM certificate", d.cfg.Tx.DeviceCert)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("device certificate %s: %w", d.cfg.Tx.DeviceCert, err)
		}
		return txreport.NewSigner(key, c)
	}
}
