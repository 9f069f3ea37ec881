// Package mqtttest runs a real mosquitto broker on a free loopback port for
// tests.
package mqtttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Broker is one mosquitto process.
type Broker struct {
	Port int
	// Listener holds extra mosquitto settings for the listener (TLS files,
	// require_certificate ...), one per line.
	Listener string
	// ProvisionPort is StartMosquittoTLS's provisioning listener (0: none).
	ProvisionPort int
	// Global holds settings that must come before every listener
	// (per_listener_settings), one per line.
	Global string
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	t      testing.TB // nil for a Launch-ed broker
}

// URL is the client address of the broker.
func (b *Broker) URL() string { return "tcp://127.0.0.1:" + strconv.Itoa(b.Port) }

// StartMosquitto starts mosquitto on a free loopback port and stops it when
// the test ends. It skips only under -short; a missing mosquitto fails.
func StartMosquitto(t testing.TB) *Broker {
	t.Helper()
	return StartMosquittoWith(t, "")
}

// StartMosquittoWith is StartMosquitto with extra listener settings.
func StartMosquittoWith(t testing.TB, listener string) *Broker {
	t.Helper()
	return startMosquitto(t, "", listener)
}

func startMosquitto(t testing.TB, global, listener string) *Broker {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping test that needs a mosquitto broker")
	}
	b, err := LaunchWith(t.TempDir(), global, listener)
	if err != nil {
		t.Fatal(err)
	}
	b.t = t
	t.Cleanup(b.Stop)
	return b
}

// Launch starts mosquitto on a free loopback port with its files in dir,
// for programs (the chaos and fleet runs); the caller stops it. listener
// holds extra settings, one per line.
func Launch(dir, listener string) (*Broker, error) { return LaunchWith(dir, "", listener) }

// LaunchWith is Launch with global settings that precede the listeners.
func LaunchWith(dir, global, listener string) (*Broker, error) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/mosquitto"); err2 != nil {
			return nil, fmt.Errorf("mosquitto not installed (%v): run `make deps`", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := &Broker{Port: port, Listener: listener, Global: global, dir: dir}
	return b, b.Restart()
}

// Start (re)starts the broker of a test on its port.
func (b *Broker) Start() {
	b.t.Helper()
	if err := b.Restart(); err != nil {
		b.t.Fatal(err)
	}
}

// Restart (re)starts the broker on its port.
func (b *Broker) Restart() error {
	conf := filepath.Join(b.dir, "mosquitto.conf")
	// persistence lets tests check persistent sessions across restarts.
	// set_tcp_nodelay: without it Nagle's algorithm and delayed ACKs add
	// about 40 ms to every request/response round trip.
	cfg := fmt.Sprintf("%s\nlistener %d 127.0.0.1\n%s\nallow_anonymous true\nset_tcp_nodelay true\npersistence true\npersistence_location %s/\nlog_dest stderr\nlog_type error\nlog_type warning\n", b.Global, b.Port, b.Listener, b.dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return err
	}
	bin := "mosquitto"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	cmd := exec.Command(bin, "-c", conf)
	log, err := os.OpenFile(filepath.Join(b.dir, "mosquitto.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start mosquitto: %w", err)
	}
	log.Close()
	b.cmd = cmd
	b.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(b.done)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(b.Port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-b.done:
			out, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
			return fmt.Errorf("mosquitto exited at start: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquitto not listening on %d after 5s", b.Port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop terminates the broker (idempotent).
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

// Kill ends the broker with SIGKILL, as a crash would.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL) }

func (b *Broker) signal(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}
