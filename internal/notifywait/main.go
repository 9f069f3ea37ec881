// Command notifywait starts a service the way systemd's Type=notify does,
// without systemd: it listens on a notification socket (sd_notify's
// datagram protocol), runs the command with NOTIFY_SOCKET pointing at it,
// and reports how long the command took to send READY=1. Then it sends
// SIGTERM and expects a clean exit. `make package-check` uses it to start
// the packaged kioskd in a clean root.
//
//	notifywait -socket /root/run/notify.sock -env-socket /run/notify.sock -- chroot … kioskd …
//
// It prints "ready in N ms" and exits 0, or says what went wrong and
// exits 1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func main() {
	sock := flag.String("socket", "", "path of the notification socket to create")
	envSock := flag.String("env-socket", "", "NOTIFY_SOCKET as the command sees it (default: -socket; differs under chroot)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up waiting for READY=1 after this long")
	stopTimeout := flag.Duration("stop-timeout", 20*time.Second, "wait this long for the exit after SIGTERM")
	flag.Parse()
	if *sock == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: notifywait -socket PATH [-env-socket PATH] -- command args…")
		os.Exit(2)
	}
	if *envSock == "" {
		*envSock = *sock
	}
	if err := run(*sock, *envSock, *timeout, *stopTimeout, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "notifywait:", err)
		os.Exit(1)
	}
}

func run(sock, envSock string, timeout, stopTimeout time.Duration, args []string) error {
	_ = os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	defer conn.Close()
	// The service may run as another user: it must be able to send.
	if err := os.Chmod(sock, 0o666); err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+envSock)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	ready := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if l == "READY=1" {
					ready <- time.Since(start)
					return
				}
			}
		}
	}()
	select {
	case d := <-ready:
		fmt.Printf("ready in %d ms\n", d.Milliseconds())
	case err := <-exited:
		return fmt.Errorf("exited before READY=1: %v", err)
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("no READY=1 within %s", timeout)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("after SIGTERM: %v (want a clean exit)", err)
		}
		if err != nil {
			return err
		}
		fmt.Println("stopped cleanly on SIGTERM")
		return nil
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("still running %s after SIGTERM", stopTimeout)
	}
}
