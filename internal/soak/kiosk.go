package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"kiosk/provisioning/devkey"
	"kiosk/provisioning/issuer"
)

const device = "kiosk-soak-01"

// kiosk is the files and the process of the kiosk under soak.
type kiosk struct {
	dir, conf, tokenFile       string
	httpAddr, ecrAddr, embAddr string
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

// prepare writes the device key, the virtual eID and kioskd's config.
func prepare(dir string, o options) (*kiosk, error) {
	k := &kiosk{dir: dir, conf: filepath.Join(dir, "kioskd.toml"), tokenFile: filepath.Join(dir, "ecr-token")}
	dk, err := devkey.Create(filepath.Join(dir, "device"), filepath.Join(dir, "devices"), device)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	photo, err := os.ReadFile(filepath.Join(o.media, "franck_01829.jpg"))
	if err != nil {
		return nil, err
	}
	img, trust, err := issuer.Issue(issuer.Options{
		DocNumber: "S01X00K47", Surname: "MUSTERMANN", Given: "ERIKA", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468", Photo: photo,
		ChipAuth: &issuer.CAParams{}, ActiveAuth: issuer.AAECDSAP256,
	})
	if err != nil {
		return nil, fmt.Errorf("issue the card: %w", err)
	}
	if err := img.Save(filepath.Join(dir, "card")); err != nil {
		return nil, err
	}
	if err := trust.WriteDir(filepath.Join(dir, "card", "trust")); err != nil {
		return nil, err
	}
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	saltFile := filepath.Join(dir, "doc-salt")
	if err := os.WriteFile(saltFile, []byte(base64.StdEncoding.EncodeToString(salt)), 0o600); err != nil {
		return nil, err
	}
	for _, a := range []*string{&k.httpAddr, &k.ecrAddr, &k.embAddr} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
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
`, device, k.httpAddr, filepath.Join(o.media, "franck.mp4"), o.faceCue, o.smileCue, o.cueLength, k.embAddr,
		filepath.Join(dir, "card", "trust"), filepath.Join(dir, "card"), o.models, k.ecrAddr, k.tokenFile,
		filepath.Join(dir, "state"), dk.Key, dk.Cert, saltFile)
	return k, os.WriteFile(k.conf, []byte(conf), 0o600)
}

// start runs kioskd; its log goes to kioskd.log in the working directory.
func (k *kiosk) start(bin string) error {
	out, err := os.OpenFile(filepath.Join(k.dir, "kioskd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--config", k.conf)
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

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
