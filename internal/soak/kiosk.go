package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"kiosk/internal/simkiosk"
)

const device = "kiosk-soak-01"

// kiosk is the files and the process of the kiosk under soak.
type kiosk struct {
	*simkiosk.Kiosk
	cmd    *exec.Cmd
	exited chan struct{}
}

// prepare writes the device key, the virtual eID and kioskd's config.
func prepare(dir string, o options) (*kiosk, error) {
	sk, err := simkiosk.Prepare(dir, device, "S01X00K47", o.media)
	if err != nil {
		return nil, err
	}
	k := &kiosk{Kiosk: sk}
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	saltFile := filepath.Join(dir, "doc-salt")
	if err := os.WriteFile(saltFile, []byte(base64.StdEncoding.EncodeToString(salt)), 0o600); err != nil {
		return nil, err
	}
	// Simulation with the embedded broker and hub, as `make run`; the
	// camera's cues skip the wait for the looping video's smile.
	conf := fmt.Sprintf(`[device]
id = %q
mode = "simulation"
[log]
format = "text"
level = "info"
[http]
listen = %q
[camera]
backend = "sim"
path = %q
sim_cues = { face = %q, smile = %q }
sim_cue_length = %q
[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[hub]
brokers = []
telemetry_every = "10s"
[hub.embedded]
listen = %q
[eid]
trust_dir = %q
sim_card = %q
[face]
models_dir = %q
smile_timeout = "20s"
[policy]
face_timeout = "60s"
result_display = "100ms"
[ecr]
listen = %q
token_file = %q
[transactions]
state_dir = %q
merchant = "SOAK-SHOP"
device_key = %q
device_cert = %q
doc_salt_file = %q
floor_limit_minor = 5000
offline_cap_minor = 1000000
embedded_hub = true
[shutdown]
timeout = "10s"
`, device, k.HTTPAddr, filepath.Join(o.media, "franck.mp4"), o.faceCue, o.smileCue, o.cueLength, k.EmbAddr,
		k.TrustDir, k.CardDir, o.models, k.ECRAddr, k.TokenFile,
		filepath.Join(dir, "state"), k.DeviceKey, k.DeviceCert, saltFile)
	return k, os.WriteFile(k.Conf, []byte(conf), 0o600)
}

// start runs kioskd; its log goes to kioskd.log in the working directory.
func (k *kiosk) start(bin string) error {
	out, err := os.OpenFile(filepath.Join(k.Dir, "kioskd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--config", k.Conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The allocator setting of systemd/kioskd.service, so the soak
	// measures kioskd as it runs on a kiosk.
	cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=2")
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start kioskd: %w", err)
	}
	k.cmd, k.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(k.exited) }() // ends with kioskd; stop waits for it
	return nil
}

func (k *kiosk) gone() error {
	if !k.alive() {
		return errors.New("kioskd exited")
	}
	return nil
}

func (k *kiosk) alive() bool {
	select {
	case <-k.exited:
		return false
	default:
		return true
	}
}

// stop ends kioskd (SIGTERM, SIGKILL after 15 s) and reports whether it
// stopped cleanly.
func (k *kiosk) stop() error {
	if k.cmd == nil {
		return nil
	}
	if k.alive() {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-k.exited:
	case <-time.After(15 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
		return fmt.Errorf("kioskd did not stop within 15 s of SIGTERM")
	}
	if code := k.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("kioskd exited %d", code)
	}
	return nil
}
