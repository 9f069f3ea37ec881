package daemon

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"kiosk/firmware/config"
	"kiosk/firmware/devicekey"
	"kiosk/firmware/txreport"
)

// openKeys opens the device key store and loads the key if one exists
// (a kiosk that is not enrolled yet has none).
func (d *Daemon) openKeys() error {
	cfg := d.cfg.Tx
	switch cfg.KeyStorage {
	case "tpm":
		t, err := devicekey.OpenTPM(cfg.TPMDevice)
		if err != nil {
			return &config.Error{Key: "transactions.tpm_device", Msg: err.Error()}
		}
		d.tpm, d.keys = t, t
	default:
		d.keys = &devicekey.File{Path: cfg.DeviceKey}
	}
	k, err := d.keys.Load(context.Background())
	switch {
	case err == nil:
		d.deviceKey = k
	case errors.Is(err, devicekey.ErrNoKey):
		d.log.Warn("no device key: this kiosk is not enrolled (kioskctl provision enroll)", "key_storage", d.keys.Kind())
	default:
		key := "transactions.device_key"
		if cfg.KeyStorage == "tpm" {
			key = "transactions.tpm_device"
		}
		return &config.Error{Key: key, Msg: err.Error()}
	}
	return nil
}

// deviceSigner pairs the loaded device key with its certificate (the
// first of the chain file).
func (d *Daemon) deviceSigner() (*txreport.Signer, error) {
	if d.deviceKey == nil {
		return nil, fmt.Errorf("%w (key_storage %s)", devicekey.ErrNoKey, d.keys.Kind())
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
		return txreport.NewSigner(d.deviceKey, c)
	}
}
