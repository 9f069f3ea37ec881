package rauctest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Machine boots the System again and again as a kiosk would: the boot
// loader picks a slot from the backend's state, rauc service starts as on
// that slot, the slot is mounted read-only as the root file system, and
// the program found in it (usr/bin/kioskd) runs as systemd's Type=notify
// unit would (NOTIFY_SOCKET). A boot ends when the program asks for a
// reboot (RebootRequest), exits, or sends no READY=1 within StartTimeout
// (the unit's start timeout: the machine resets); then the next boot.
type Machine struct {
	Sys *System
	// Args are the program's arguments; Env is added to its environment
	// (the system's D-Bus address is added too).
	Args []string
	Env  []string
	// StartTimeout bounds the wait for READY=1.
	StartTimeout time.Duration
	// RebootRequest is the file the program's reboot command creates.
	RebootRequest string
	// Output receives the program's output (nil: discarded).
	Output *os.File

	mu    sync.Mutex
	boots []Boot
}

// Boot is one boot of the machine.
type Boot struct {
	Slot  string
	Ready bool   // READY=1 arrived
	End   string // "reboot", "exit: …", "no READY=1 within …", "stopped"
}

// Boots returns the boots so far (the one running last).
func (m *Machine) Boots() []Boot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Boot(nil), m.boots...)
}

// WaitBoots waits until cond holds for the boots so far.
func (m *Machine) WaitBoots(ctx context.Context, cond func([]Boot) bool) error {
	for {
		if cond(m.Boots()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("machine: %w (boots so far %+v)", ctx.Err(), m.Boots())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *Machine) record(f func(b *Boot)) {
	m.mu.Lock()
	f(&m.boots[len(m.boots)-1])
	m.mu.Unlock()
}

// Run boots until ctx ends; it stops the program and unmounts the slot.
func (m *Machine) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := m.bootOnce(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func (m *Machine) bootOnce(ctx context.Context) error {
	slot, err := m.Sys.NextBoot()
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.boots = append(m.boots, Boot{Slot: slot})
	m.mu.Unlock()
	if err := m.Sys.StartService(ctx, slot); err != nil {
		return fmt.Errorf("machine: boot %s: %w", slot, err)
	}
	root, err := m.Sys.Mount(ctx, slot)
	if err != nil {
		return fmt.Errorf("machine: boot %s: %w", slot, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Sys.Unmount(uctx); err != nil {
			fmt.Fprintln(os.Stderr, "machine: unmount:", err)
		}
	}()
	sock := filepath.Join(m.Sys.Dir, "notify.sock")
	_ = os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = os.Remove(m.RebootRequest)
	cmd := exec.Command(filepath.Join(root, "usr", "bin", "kioskd"), m.Args...)
	cmd.Dir = root // "/": relative paths in the configuration name the slot's files
	cmd.Env = append(append(os.Environ(), m.Sys.Env()...), m.Env...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	if m.Output != nil {
		cmd.Stdout, cmd.Stderr = m.Output, m.Output
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		m.record(func(b *Boot) { b.End = "exec: " + err.Error() })
		return nil
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains("\n"+string(buf[:n])+"\n", "\nREADY=1\n") {
				close(ready)
				return
			}
		}
	}()
	timeout := time.NewTimer(m.StartTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := ""
	for end == "" {
		select {
		case <-ctx.Done():
			end = "stopped"
		case err := <-exited:
			m.record(func(b *Boot) { b.End = fmt.Sprintf("exit: %v", err) })
			return nil
		case <-ready:
			ready = nil
			timeout.Stop()
			m.record(func(b *Boot) { b.Ready = true })
		case <-timeout.C:
			end = fmt.Sprintf("no READY=1 within %s", m.StartTimeout)
		case <-tick.C:
			if _, err := os.Stat(m.RebootRequest); err == nil {
				end = "reboot"
			}
		}
	}
	// Shutdown: SIGTERM to the unit's process group, SIGKILL after 15 s.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	m.record(func(b *Boot) { b.End = end })
	return nil
}
