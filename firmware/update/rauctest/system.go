package rauctest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kiosk/firmware/update"
)

// Attempts is how often the boot loader tries a slot that has not been
// marked good (U-Boot's BOOT_x_LEFT after set-primary or mark-good).
const Attempts = 3

// Options configure an A/B system.
type Options struct {
	Dir     string // working directory (slot images, bus, state)
	Keyring string // the release CA rauc service verifies bundles with
	// SlotSize of each slot in bytes (default 256 MiB; sparse files).
	SlotSize int64
	// Initial is the root file system image written to slot A.
	Initial string
	// Log receives rauc service's and dbus-daemon's output (nil: none).
	Log io.Writer
}

// System is an A/B RAUC system on two loop devices.
type System struct {
	Dir     string
	Conf    string            // rauc system.conf
	BusAddr string            // DBUS_SYSTEM_BUS_ADDRESS of the private bus
	Devices map[string]string // bootname → loop device
	state   string            // the boot loader backend's state file
	log     io.Writer
	bus     *exec.Cmd
	service *exec.Cmd
	mounted string
}

// backend is RAUC's custom boot loader backend (system.conf [handlers]
// bootloader-custom-backend): it keeps U-Boot's boot-count variables
// (BOOT_ORDER, BOOT_<slot>_LEFT) in a file instead of the U-Boot
// environment, with the same rules as RAUC's U-Boot integration:
// set-primary puts the slot first with full attempts, good restores the
// attempts, bad takes them all; the primary is the first slot of the order
// with attempts left.
const backend = `#!/bin/sh
set -eu
STATE=%q
. "$STATE"
save() {
	printf 'BOOT_ORDER="%%s"\nBOOT_A_LEFT=%%s\nBOOT_B_LEFT=%%s\n' "$BOOT_ORDER" "$BOOT_A_LEFT" "$BOOT_B_LEFT" > "$STATE.tmp"
	sync "$STATE.tmp" 2>/dev/null || true
	mv "$STATE.tmp" "$STATE"
}
left() { eval echo "\$BOOT_${1}_LEFT"; }
case "$1" in
get-primary)
	for s in $BOOT_ORDER; do
		if [ "$(left "$s")" -gt 0 ]; then echo "$s"; exit 0; fi
	done
	exit 1 ;;
set-primary)
	case "$2" in A) BOOT_ORDER="A B" ;; B) BOOT_ORDER="B A" ;; *) exit 1 ;; esac
	eval "BOOT_${2}_LEFT=%d"; save ;;
get-state)
	if [ "$(left "$2")" -gt 0 ]; then echo good; else echo bad; fi ;;
set-state)
	case "$2" in A|B) ;; *) exit 1 ;; esac
	if [ "$3" = good ]; then eval "BOOT_${2}_LEFT=%d"; else eval "BOOT_${2}_LEFT=0"; fi
	save ;;
*)
	echo "unknown command $1" >&2; exit 1 ;;
esac
`

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// Start creates the slots (A holding Initial, B empty), attaches them to
// loop devices, writes system.conf and the backend, and starts the bus.
// rauc service is started by Boot. On error everything is undone.
func Start(ctx context.Context, o Options) (s *System, err error) {
	if o.SlotSize == 0 {
		o.SlotSize = 256 << 20
	}
	s = &System{Dir: o.Dir, Devices: map[string]string{}, log: o.Log, state: filepath.Join(o.Dir, "boot-state")}
	if s.log == nil {
		s.log = io.Discard
	}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	for _, d := range []string{o.Dir, filepath.Join(o.Dir, "mnt")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, slot := range []string{"A", "B"} {
		img := filepath.Join(o.Dir, "slot-"+slot+".img")
		if slot == "A" {
			if err := copyFile(o.Initial, img); err != nil {
				return nil, err
			}
		} else if err := run(ctx, "mkfs.ext4", "-q", "-F", img, "16M"); err != nil {
			return nil, err
		}
		if err := os.Truncate(img, o.SlotSize); err != nil {
			return nil, err
		}
		dev, err := output(ctx, "losetup", "-f", "--show", img)
		if err != nil {
			return nil, err
		}
		s.Devices[slot] = strings.TrimSpace(dev)
	}
	if err := os.WriteFile(s.state, fmt.Appendf(nil, "BOOT_ORDER=\"A B\"\nBOOT_A_LEFT=%d\nBOOT_B_LEFT=0\n", Attempts), 0o644); err != nil {
		return nil, err
	}
	script := filepath.Join(o.Dir, "bootloader-backend.sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, backend, s.state, Attempts, Attempts), 0o755); err != nil {
		return nil, err
	}
	s.Conf = filepath.Join(o.Dir, "system.conf")
	conf := fmt.Sprintf(`[system]
compatible=%s
bootloader=custom
mountprefix=%s
statusfile=%s

[keyring]
path=%s

[handlers]
bootloader-custom-backend=%s

[slot.rootfs.0]
device=%s
type=ext4
bootname=A

[slot.rootfs.1]
device=%s
type=ext4
bootname=B
`, Compatible, filepath.Join(o.Dir, "mnt"), filepath.Join(o.Dir, "rauc.status"), o.Keyring, script, s.Devices["A"], s.Devices["B"])
	if err := os.WriteFile(s.Conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	sock := filepath.Join(o.Dir, "system_bus.sock")
	busConf := filepath.Join(o.Dir, "bus.conf")
	if err := os.WriteFile(busConf, fmt.Appendf(nil, busConfig, sock), 0o644); err != nil {
		return nil, err
	}
	s.BusAddr = "unix:path=" + sock
	s.bus = exec.Command("dbus-daemon", "--config-file="+busConf, "--nofork", "--nopidfile")
	s.bus.Stdout, s.bus.Stderr = s.log, s.log
	if err := s.bus.Start(); err != nil {
		return nil, fmt.Errorf("rauctest: dbus-daemon: %w", err)
	}
	if err := waitFor(ctx, 10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return nil, fmt.Errorf("rauctest: the bus socket did not appear: %w", err)
	}
	return s, nil
}

// Env is what a rauc client (kioskd) needs in its environment.
func (s *System) Env() []string { return []string{"DBUS_SYSTEM_BUS_ADDRESS=" + s.BusAddr} }

// Rauc is an update.Rauc client of this system.
func (s *System) Rauc() update.Rauc { return update.Rauc{Conf: s.Conf, Env: s.Env()} }

// StartService (re)starts rauc service as on a machine booted from slot
// booted (--override-boot-slot stands for the kernel command line's
// rauc.slot=), and waits until it answers.
func (s *System) StartService(ctx context.Context, booted string) error {
	s.StopService()
	cmd := exec.Command("rauc", "service", "--conf="+s.Conf, "--override-boot-slot="+booted)
	cmd.Env = append(os.Environ(), s.Env()...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rauctest: rauc service: %w", err)
	}
	s.service = cmd
	r := s.Rauc()
	return waitFor(ctx, 20*time.Second, func() bool { _, err := r.Status(ctx); return err == nil })
}

// StopService stops rauc service (SIGTERM, then SIGKILL), as a power cut
// or shutdown would.
func (s *System) StopService() { s.KillService(syscall.SIGTERM) }

// KillService stops rauc service with sig (SIGKILL: the install it runs
// is cut off like by a power loss). What a killed service leaves mounted
// or attached under the system's directory (the bundle) is released, as a
// reboot would.
func (s *System) KillService(sig syscall.Signal) {
	if s.service == nil {
		return
	}
	defer s.release()
	_ = s.service.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = s.service.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.service.Process.Kill()
		<-done
	}
	s.service = nil
}

// BootState is the backend's state: the boot order and attempts left.
type BootState struct {
	Order []string
	Left  map[string]int
}

// State reads the backend's state file.
func (s *System) State() (BootState, error) {
	b, err := os.ReadFile(s.state)
	if err != nil {
		return BootState{}, err
	}
	st := BootState{Left: map[string]int{}}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch {
		case k == "BOOT_ORDER":
			st.Order = strings.Fields(v)
		case strings.HasPrefix(k, "BOOT_") && strings.HasSuffix(k, "_LEFT"):
			n, err := strconv.Atoi(v)
			if err != nil {
				return BootState{}, fmt.Errorf("rauctest: %s=%q", k, v)
			}
			st.Left[strings.TrimSuffix(strings.TrimPrefix(k, "BOOT_"), "_LEFT")] = n
		}
	}
	if len(st.Order) != 2 {
		return BootState{}, fmt.Errorf("rauctest: boot state %q", b)
	}
	return st, nil
}

// NextBoot is the boot loader: the first slot of the order with attempts
// left is booted and one attempt taken (U-Boot's boot-count script).
func (s *System) NextBoot() (string, error) {
	st, err := s.State()
	if err != nil {
		return "", err
	}
	for _, slot := range st.Order {
		if st.Left[slot] > 0 {
			st.Left[slot]--
			out := fmt.Sprintf("BOOT_ORDER=\"%s\"\nBOOT_A_LEFT=%d\nBOOT_B_LEFT=%d\n", strings.Join(st.Order, " "), st.Left["A"], st.Left["B"])
			if err := os.WriteFile(s.state+".tmp", []byte(out), 0o644); err != nil {
				return "", err
			}
			return slot, os.Rename(s.state+".tmp", s.state)
		}
	}
	return "", errors.New("rauctest: no slot has boot attempts left")
}

// Mount mounts slot read-only (as the root file system) and returns where.
func (s *System) Mount(ctx context.Context, slot string) (string, error) {
	if err := s.Unmount(ctx); err != nil {
		return "", err
	}
	dir := filepath.Join(s.Dir, "root-"+slot)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := run(ctx, "mount", "-o", "ro", s.Devices[slot], dir); err != nil {
		return "", err
	}
	s.mounted = dir
	return dir, nil
}

// Unmount unmounts the slot Mount mounted.
func (s *System) Unmount(ctx context.Context) error {
	if s.mounted == "" {
		return nil
	}
	if err := run(ctx, "umount", s.mounted); err != nil {
		return err
	}
	s.mounted = ""
	return nil
}

// SlotSHA256 hashes a slot's whole device: "nothing changed" checks.
func (s *System) SlotSHA256(slot string) (string, error) {
	f, err := os.Open(s.Devices[slot])
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// release unmounts what is mounted under the system's directory and
// detaches loop devices backed by files in it (rauc service mounts each
// bundle on a loop device; a killed service leaves them). Only the
// system's own: other sessions' mounts and loop devices are never touched.
func (s *System) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil {
		var points []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], s.Dir+"/") && f[4] != s.mounted {
				points = append(points, f[4])
			}
		}
		for i := len(points) - 1; i >= 0; i-- { // deepest (last mounted) first
			_ = run(ctx, "umount", points[i])
		}
	}
	out, err := output(ctx, "losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE")
	if err != nil {
		return
	}
	mine := map[string]bool{}
	for _, dev := range s.Devices {
		mine[dev] = true
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && !mine[f[0]] && strings.HasPrefix(f[1], s.Dir+"/") {
			_ = run(ctx, "losetup", "-d", f[0])
		}
	}
}

// Close stops the service and the bus and unmounts and detaches what
// Start and Mount made, each by its own id.
func (s *System) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	s.StopService()
	if err := s.Unmount(ctx); err != nil {
		errs = append(errs, err)
	}
	s.release()
	if s.bus != nil && s.bus.Process != nil {
		_ = s.bus.Process.Signal(syscall.SIGTERM)
		_ = s.bus.Wait()
		s.bus = nil
	}
	for slot, dev := range s.Devices {
		if err := run(ctx, "losetup", "-d", dev); err != nil {
			errs = append(errs, err)
		}
		delete(s.Devices, slot)
	}
	return errors.Join(errs...)
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
