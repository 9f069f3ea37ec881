package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// supervisor runs kioskd and starts it again whenever it dies, as systemd
// does with Restart=always (RestartSec 300 ms here).
type supervisor struct {
	bin, conf, logPath string
	log                *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	gen     int           // starts so far
	stopped bool
	wg      sync.WaitGroup
}

func newSupervisor(bin, conf, logPath string, log *slog.Logger) *supervisor {
	return &supervisor{bin: bin, conf: conf, logPath: logPath, log: log}
}

// start launches kioskd and keeps it running until stop.
func (s *supervisor) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.launchLocked()
}

func (s *supervisor) launchLocked() error {
	out, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "--config", s.conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start kioskd: %w", err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	s.gen++
	s.wg.Go(func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
		time.Sleep(300 * time.Millisecond)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped || s.cmd != cmd {
			return
		}
		// Exit 2 is a configuration kioskd refuses: starting it again
		// would not help (systemd's RestartPreventExitStatus=2).
		if cmd.ProcessState.ExitCode() == 2 {
			s.log.Error("kioskd refused its configuration; not restarted", "log", s.logPath)
			return
		}
		s.log.Info("kioskd exited; starting it again", "state", cmd.ProcessState.String())
		if err := s.launchLocked(); err != nil {
			s.log.Error("restart kioskd", "err", err)
		}
	})
	return nil
}

// generation counts the starts: a payment that sees it change was cut
// short by a restart.
func (s *supervisor) generation() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// kill SIGKILLs the running kioskd; false when none was running.
func (s *supervisor) kill() bool {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return false
	}
	<-exited
	return true
}

// stop ends supervision and kioskd (SIGTERM, SIGKILL after 10 s).
func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopped = true
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s.wg.Wait()
}
