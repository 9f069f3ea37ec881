// Package pcscdtest runs a private, real pcscd with vsmartcard's vpcd driver
// for tests (of this module's packages and of the daemon): cards written in
// Go (package vpcd) connect to it, and clients talk to it through
// libpcsclite exactly as in the field.
//
// Isolation. pcscd is a per-machine singleton: it keeps its socket and PID
// file in the fixed directory /run/pcscd and refuses to start while another
// instance runs. Each Server therefore runs pcscd in a private mount
// namespace (CLONE_NEWNS) in which a per-server directory is bind-mounted over
// /run/pcscd, so parallel test binaries and a system pcscd never see each
// other. pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME, but libpcsclite (the
// client) honours it, so the test process points its PC/SC clients at the
// server's socket through that variable. This needs root (or
// CAP_SYS_ADMIN), which the project's test and CI environments have.
//
// libpcsclite reads PCSCLITE_CSOCK_NAME once, at the first PC/SC call of the
// process, and caches it. Consequently: (1) Start must run before the test
// process makes any PC/SC call; (2) all Servers of one process share one
// socket path, so they are serialised by a process-wide lock: a second Start
// blocks until the first Server is stopped. Tests in different packages
// (different processes) run in parallel freely.
package pcscdtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebfe/scard"
)

// Paths of the Debian packages the harness needs (`make deps` installs them),
// and the reader naming: slot 2k and 2k+1 are "Kiosk VPCD 00 00" and
// "Kiosk VPCD 00 01" for k = 0, "Kiosk VPCD <k> 00 00/01" for k > 0.
const (
	VPCDDriver   = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	FriendlyName = "Kiosk VPCD"
	ipcDir       = "/run/pcscd"
)

var (
	// processLock serialises Servers within this process (see package doc).
	processLock = make(chan struct{}, 1)
	sockOnce    sync.Once
	sockDir     string
	sockErr     error
)

// socketDir returns the process-wide directory that is bind-mounted over
// /run/pcscd in each server's namespace, and sets PCSCLITE_CSOCK_NAME once.
func socketDir() (string, error) {
	sockOnce.Do(func() {
		sockDir = filepath.Join(os.TempDir(), fmt.Sprintf("pcscdtest-%d", os.Getpid()))
		sockErr = os.Setenv("PCSCLITE_CSOCK_NAME", filepath.Join(sockDir, "pcscd.comm"))
	})
	return sockDir, sockErr
}

// Server is one private pcscd with vpcd readers.
type Server struct {
	pcscd   string
	confDir string
	runDir  string
	logPath string
	ports   []int // one per slot
	readers []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	stopped bool
	locked  bool
}

// Start starts a pcscd with at least slots vpcd reader slots (rounded up to
// even: each vpcd config entry provides two slots), waits until all readers
// are listed, and registers t.Cleanup to stop it. It skips only under
// testing.Short and fails if pcscd or the vpcd driver is missing.
func Start(t testing.TB, slots int) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("pcscdtest: needs a real pcscd with the vpcd driver; skipped under -short")
	}
	if slots < 1 || slots > 16 {
		t.Fatalf("pcscdtest: %d slots requested, pcscd supports 1..16", slots)
	}
	pcscd, err := exec.LookPath("pcscd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pcscd"); serr != nil {
			t.Fatalf("pcscdtest: pcscd not found (%v); run `make deps` (Debian package pcscd)", err)
		}
		pcscd = "/usr/sbin/pcscd"
	}
	if _, err := os.Stat(VPCDDriver); err != nil {
		t.Fatalf("pcscdtest: vpcd driver missing (%v); run `make deps` (Debian package vsmartcard-vpcd)", err)
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Fatalf("pcscdtest: mount(8) not found (%v); run `make deps` (util-linux)", err)
	}
	dir, err := socketDir()
	if err != nil {
		t.Fatalf("pcscdtest: %v", err)
	}

	processLock <- struct{}{}
	s := &Server{pcscd: pcscd, runDir: dir, locked: true}
	t.Cleanup(s.Stop)

	work, err := os.MkdirTemp("", "pcscdtest-conf-")
	if err != nil {
		t.Fatalf("pcscdtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(work) })
	s.confDir = filepath.Join(work, "reader.conf.d")
	s.logPath = filepath.Join(work, "pcscd.log")

	entries := (slots + 1) / 2
	// Free ports can be taken by someone else before vpcd binds them: retry
	// with fresh ports if not every reader shows up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if err := s.configure(entries); err != nil {
			t.Fatalf("pcscdtest: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Logf("pcscdtest: pcscd pid %d, readers %q, vpcd ports %v", s.cmd.Process.Pid, s.readers, s.ports)
			return s
		}
		s.kill()
	}
	t.Fatalf("pcscdtest: pcscd did not come up: %v\n--- pcscd log ---\n%s", lastErr, s.Log())
	return nil
}

// configure picks free port pairs and writes the reader configuration.
func (s *Server) configure(entries int) error {
	if err := os.MkdirAll(s.confDir, 0o755); err != nil {
		return err
	}
	var conf bytes.Buffer
	s.ports, s.readers = s.ports[:0], s.readers[:0]
	for i := 0; i < entries; i++ {
		p, err := freePortPair()
		if err != nil {
			return fmt.Errorf("find free ports: %w", err)
		}
		// One entry = two vpcd slots listening on p and p+1. pcscd 1.9.9
		// gives serial readers with equal FRIENDLYNAMEs equal names, so
		// entries after the first get a number.
		// The vpcd driver keeps its slots in global variables, and pcscd
		// loads a library path only once: a second entry with the same
		// LIBPATH silently breaks both (no card is ever polled). Each entry
		// after the first therefore gets its own copy of the library.
		name, lib := FriendlyName, VPCDDriver
		if i > 0 {
			name = fmt.Sprintf("%s %d", FriendlyName, i)
			lib = filepath.Join(filepath.Dir(s.confDir), fmt.Sprintf("libifdvpcd-%d.so", i))
			if err := copyFile(VPCDDriver, lib); err != nil {
				return fmt.Errorf("copy vpcd driver: %w", err)
			}
		}
		fmt.Fprintf(&conf, "FRIENDLYNAME \"%s\"\nDEVICENAME /dev/null:%d\nLIBPATH %s\nCHANNELID %d\n\n", name, p, lib, p)
		s.ports = append(s.ports, p, p+1)
		s.readers = append(s.readers, name+" 00 00", name+" 00 01")
	}
	return os.WriteFile(filepath.Join(s.confDir, "vpcd"), conf.Bytes(), 0o644)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		// vpcd binds 0.0.0.0:p+1 as well.
		l2, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p+1))
		_ = l.Close()
		if err != nil || p+1 > 65535 {
			continue
		}
		_ = l2.Close()
		return p, nil
	}
	return 0, errors.New("no free consecutive port pair")
}

// start launches pcscd in its own mount namespace and waits until it lists all readers.
func (s *Server) start() error {
	if err := os.MkdirAll(ipcDir, 0o755); err != nil { // mount point; pcscd itself would create it
		return fmt.Errorf("create %s: %w", ipcDir, err)
	}
	// A previous pcscd of this process may have left stale files after a kill.
	_ = os.RemoveAll(s.runDir)
	if err := os.MkdirAll(s.runDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-f", "-c", s.confDir}
	if os.Getenv("PCSCDTEST_DEBUG") != "" {
		args = append(args, "-d", "-a")
	}
	// Go makes the new namespace's mounts private (MS_REC|MS_PRIVATE) before
	// exec, so the bind mount never propagates to the host.
	script := `mount --bind "$0" ` + ipcDir + ` && exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, s.runDir, s.pcscd}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pcscd in a private mount namespace (needs root/CAP_SYS_ADMIN): %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.stopped = cmd, done, false
	s.mu.Unlock()
	return s.waitReady(done)
}

func (s *Server) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("pcscd exited during start-up")
		default:
		}
		if _, err := os.Stat(filepath.Join(s.runDir, "pcscd.comm")); err == nil {
			readers, err := listReaders()
			if err == nil && containsAll(readers, s.readers) {
				return nil
			}
			last = fmt.Errorf("readers %q (err %v), want %q", readers, err, s.readers)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 10s: %v", last)
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func listReaders() ([]string, error) {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return nil, err
	}
	defer ctx.Release()
	return ctx.ListReaders()
}

// VPCDAddr is the address a vpcd card dials for slot i.
func (s *Server) VPCDAddr(i int) string {
	return fmt.Sprintf("127.0.0.1:%d", s.ports[i])
}

// ReaderName is the PC/SC reader name of slot i.
func (s *Server) ReaderName(i int) string { return s.readers[i] }

// Slots is the number of vpcd slots.
func (s *Server) Slots() int { return len(s.ports) }

// SocketPath is the pcscd socket the process's PC/SC clients use.
func (s *Server) SocketPath() string { return filepath.Join(s.runDir, "pcscd.comm") }

// Log returns pcscd's output so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// kill stops pcscd with SIGTERM (pcscd cleans up in ~1.6 s), escalating to
// SIGKILL after 5 s, and waits for it to exit.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.stopped = nil, true
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop stops pcscd and releases the process-wide lock. It is idempotent.
func (s *Server) Stop() {
	s.kill()
	s.mu.Lock()
	locked := s.locked
	s.locked = false
	s.mu.Unlock()
	if locked {
		_ = os.RemoveAll(s.runDir)
		<-processLock
	}
}

// Restart stops pcscd and starts it again with the same readers and ports,
// as an operator or a crash+respawn would; PC/SC clients see the service go
// away and come back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	locked := s.locked
	s.mu.Unlock()
	if !locked {
		t.Fatal("pcscdtest: Restart after Stop")
	}
	s.kill()
	if err := s.start(); err != nil {
		t.Fatalf("pcscdtest: restart: %v\n--- pcscd log ---\n%s", err, s.Log())
	}
}

// Stopped reports whether pcscd is currently not running.
func (s *Server) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// String describes the server for test logs.
func (s *Server) String() string {
	return fmt.Sprintf("pcscd(%s, readers %s)", s.SocketPath(), strings.Join(s.readers, ", "))
}
