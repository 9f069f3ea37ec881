package daemon

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiosk/internal/testmedia"
)

// The real kioskd binary under a fake systemd: READY=1, watchdog pings
// and STOPPING=1 arrive on NOTIFY_SOCKET, logs are JSON under the journal,
// SIGTERM stops it cleanly, and a broken config exits 2.
func TestBinaryUnderSystemd(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	dir := t.TempDir()
	bin := filepath.Join(dir, "kioskd")
	if out, err := exec.Command("go", "build", "-o", bin, "kiosk/firmware/cmd/kioskd").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "kioskd.toml")
	if err := os.WriteFile(cfg, []byte(simConfig(t, video)), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()

	cmd := exec.Command(bin, "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000", "JOURNAL_STREAM=8:1234")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	wait := func(state string) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, state) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s from kioskd; stderr:\n%s", state, stderr.String())
			}
		}
	}
	wait("READY=1")
	wait("WATCHDOG=1")
	// systemctl reload: SIGHUP re-reads the trust store and says so.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("RELOADING=1")
	wait("READY=1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wait("STOPPING=1")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kioskd exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kioskd did not exit within 10 s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"trust store reloaded"`) {
		t.Errorf("no reload logged after SIGHUP:\n%s", stderr.String())
	}
	first := strings.SplitN(stderr.String(), "\n", 2)[0]
	if !strings.HasPrefix(first, "{") {
		t.Fatalf("log under systemd is not JSON: %q", first)
	}

	// Broken configuration: exit 2 with the key named.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[cardreader]\nbackend = \"magic\"\n"), 0o600)
	out, err := exec.Command(bin, "--config", bad).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "cardreader.backend") {
		t.Fatalf("bad config: %v %s", err, out)
	}
	// A busy status page port is a runtime failure: exit 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := strings.Replace(simConfig(t, video), `listen = "127.0.0.1:0"`, fmt.Sprintf("listen = %q", ln.Addr().String()), 1)
	os.WriteFile(cfg, []byte(busy), 0o600)
	out, err = exec.Command(bin, "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("busy port: %v %s", err, out)
	}
}
