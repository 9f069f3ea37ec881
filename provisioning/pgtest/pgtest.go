// Package pgtest starts a real PostgreSQL server for tests and tools: initdb into a
// temporary directory and `postgres` on a free loopback port, as a child
// process that dies with the test. PostgreSQL refuses to run as root, and
// CI runs as root, so as root the server runs as the unprivileged user
// nobody (with its credentials); otherwise as the current user.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian's postgresql-15 puts its server binaries.
const BinDir = "/usr/lib/postgresql/15/bin"

// Server is one running PostgreSQL.
type Server struct {
	dir, data, sock string
	port            int
	log             string
	mu              sync.Mutex
	cmd             *exec.Cmd
	done            chan struct{}
	dbs             int
}

// Start initialises a cluster and starts it for a test, which stops it
// and removes its files. It skips only under testing.Short and fails if
// PostgreSQL is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("pgtest: needs a real PostgreSQL; skipped under -short")
	}
	s, err := Launch()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Launch initialises a cluster in a new temporary directory and starts it
// (for programs such as the fleet simulator; tests use Start). Close stops
// it and removes the directory.
func Launch() (*Server, error) {
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s missing (%v); run `make deps` (Debian package postgresql-15)", b, err)
		}
	}
	// Not t.TempDir(): its parents are private to root, and the server
	// may run as nobody.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, data: filepath.Join(dir, "data"), sock: dir, log: filepath.Join(dir, "postgres.log")}
	if err := s.chown(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	out, err := s.command(filepath.Join(BinDir, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := s.start(); err != nil {
		err = fmt.Errorf("%v\n--- postgres log ---\n%s", err, s.Log())
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() {
	s.Stop()
	_ = os.RemoveAll(s.dir)
}

// nobody:nogroup on Debian.
const nobody, nogroup = 65534, 65534

// asRoot: PostgreSQL will not run as root.
func asRoot() bool { return os.Geteuid() == 0 }

func (s *Server) chown(dir string) error {
	if !asRoot() {
		return nil
	}
	return os.Chown(dir, nobody, nogroup)
}

// command runs name as nobody when root, so that the pid is postgres's
// own (a wrapper like runuser would stand between the signal and it).
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if asRoot() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nogroup}
		cmd.Env = append(os.Environ(), "HOME="+s.dir)
	}
	return cmd
}

func (s *Server) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	return s.launch(port)
}

// launch runs postgres on port and waits until it accepts connections.
func (s *Server) launch(port int) error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := s.command(filepath.Join(BinDir, "postgres"), "-D", s.data, "-p", strconv.Itoa(port), "-k", s.sock,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.port = cmd, done, port
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.dsn("postgres"))
		if err == nil {
			_ = c.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-done:
			return errors.New("postgres exited during start-up")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("postgres not accepting connections after 30s")
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, err := s.CreateDatabase(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// CreateDatabase creates an empty database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("t%d", s.dbs)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.dsn(name), nil
}

// TerminateConnections ends every client backend of database db (as a
// network cut or an administrator would), returning how many.
func (s *Server) TerminateConnections(ctx context.Context, db string) (int, error) {
	c, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var n int
	err = c.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend') x`, db).Scan(&n)
	return n, err
}

// Kill stops the server with SIGKILL (a crash): the postmaster, then its
// backends (each is a session leader of its own, so a signal to the
// postmaster's group misses them, and a backend that has not noticed its
// postmaster's death still answers). Restart brings it back on the same
// port and data: committed transactions survive.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	var backends []int
	if cmd != nil && cmd.Process != nil {
		backends = children(cmd.Process.Pid)
	}
	s.signal(syscall.SIGKILL) // first, so it starts no new child
	for _, pid := range backends {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// Until they are gone they hold the shared memory, and a restart would
	// refuse to start ("pre-existing shared memory block").
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		alive := false
		for _, pid := range backends {
			if state, _, ok := procStat(pid); ok && state != "Z" {
				alive = true
			}
		}
		if !alive {
			return
		}
	}
}

// children lists the processes whose parent is pid (from /proc).
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// procStat reads a process's state letter and parent from
// /proc/PID/stat; ok is false once it is gone.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// Restart starts a stopped or killed server again on the same port.
func (s *Server) Restart() error {
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	return s.launch(port)
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Stop shuts the server down (fast shutdown).
func (s *Server) Stop() { s.signal(syscall.SIGINT) }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Log returns the server log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
