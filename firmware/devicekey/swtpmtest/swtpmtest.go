// Package swtpmtest runs a real software TPM 2.0 (swtpm) for tests: a
// process serving raw TPM commands on a Unix socket in a temporary
// directory, its state in that directory, so a restart keeps what the TPM
// holds (persistent handles), as a power cycle would.
package swtpmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TPM is one swtpm process.
type TPM struct {
	Socket string // raw TPM command socket
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	t      testing.TB
}

// Start starts swtpm and stops it when the test ends. It skips only under
// -short; a missing swtpm fails (make deps installs it).
func Start(t testing.TB) *TPM {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping test that needs swtpm")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := &TPM{Socket: filepath.Join(dir, "tpm.sock"), dir: dir, t: t}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Launch starts swtpm with its files in dir for programs (the demo); the
// caller stops it.
func Launch(dir string) (*TPM, error) {
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return nil, err
	}
	p := &TPM{Socket: filepath.Join(dir, "tpm.sock"), dir: dir}
	return p, p.start()
}

func (p *TPM) start() error {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return fmt.Errorf("swtpm not installed (%v): run `make deps`", err)
	}
	_ = os.Remove(p.Socket)
	ctrl := filepath.Join(p.dir, "ctrl.sock")
	_ = os.Remove(ctrl)
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", "type=unixio,path="+p.Socket,
		"--ctrl", "type=unixio,path="+ctrl,
		"--tpmstate", "dir="+filepath.Join(p.dir, "state"),
		"--flags", "not-need-init,startup-clear")
	log, err := os.OpenFile(filepath.Join(p.dir, "swtpm.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	log.Close()
	if err != nil {
		return fmt.Errorf("start swtpm: %w", err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(p.Socket); err == nil {
			return nil
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(filepath.Join(p.dir, "swtpm.log"))
			return fmt.Errorf("swtpm exited at start: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("swtpm socket %s not there after 10 s", p.Socket)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops swtpm (SIGTERM, so it saves its state) and starts it
// again on the same state: a reboot.
func (p *TPM) Restart() {
	p.t.Helper()
	p.Stop()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

// Stop ends swtpm (idempotent).
func (p *TPM) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}
