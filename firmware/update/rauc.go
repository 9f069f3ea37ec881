package update

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Rauc runs the rauc command line tool (Debian package rauc 1.8). install
// and status talk to `rauc service` over the system D-Bus; info works on
// the bundle file alone.
type Rauc struct {
	// Bin is the rauc executable ("rauc" on PATH when empty).
	Bin string
	// Conf is the system.conf passed with --conf ("" = rauc's default,
	// /etc/rauc/system.conf).
	Conf string
	// Env is added to the environment (tests: DBUS_SYSTEM_BUS_ADDRESS of
	// their private bus).
	Env []string
}

// ErrSignature: rauc refused the bundle's signature (tampered, or signed
// by a key that does not chain to the keyring).
var ErrSignature = errors.New("update: bundle signature refused")

// BundleInfo is what `rauc info` reports of a verified bundle.
type BundleInfo struct {
	Compatible string `json:"compatible"`
	Version    string `json:"version"`
	Build      string `json:"build"`
}

// Slot is one slot of `rauc status`.
type Slot struct {
	Name       string
	Class      string `json:"class"`
	Device     string `json:"device"`
	Bootname   string `json:"bootname"`
	State      string `json:"state"`       // booted, active, inactive
	BootStatus string `json:"boot_status"` // good, bad
}

// Status is `rauc status`: the system's compatible string, the booted slot
// (bootname) and the primary (slot name) the boot loader tries next.
type Status struct {
	Compatible string `json:"compatible"`
	Booted     string `json:"booted"`
	Primary    string `json:"boot_primary"`
	Slots      []Slot `json:"-"`
}

// Slot returns the slot with the given name or bootname.
func (s Status) Slot(name string) (Slot, bool) {
	for _, sl := range s.Slots {
		if sl.Name == name || sl.Bootname == name {
			return sl, true
		}
	}
	return Slot{}, false
}

func (r Rauc) run(ctx context.Context, args ...string) ([]byte, error) {
	bin := r.Bin
	if bin == "" {
		bin = "rauc"
	}
	name := args[0]
	if r.Conf != "" {
		args = append([]string{"--conf=" + r.Conf}, args...)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if len(r.Env) > 0 {
		cmd.Env = append(cmd.Environ(), r.Env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("rauc %s: %w: %s", name, err, lastLines(errb.String(), 4))
	}
	return out.Bytes(), nil
}

// Info verifies bundle's signature against keyring (PEM: the release CA)
// and returns its manifest's compatible and version.
func (r Rauc) Info(ctx context.Context, bundle, keyring string) (BundleInfo, error) {
	out, err := r.run(ctx, "info", "--keyring="+keyring, "--output-format=json", bundle)
	if err != nil {
		if isSignatureError(err.Error()) {
			return BundleInfo{}, fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return BundleInfo{}, err
	}
	var bi BundleInfo
	if err := json.Unmarshal(jsonPart(out), &bi); err != nil {
		return BundleInfo{}, fmt.Errorf("rauc info: output: %w", err)
	}
	if bi.Version == "" || bi.Compatible == "" {
		return BundleInfo{}, fmt.Errorf("rauc info: the manifest has no version or compatible")
	}
	return bi, nil
}

// Install installs bundle into the inactive slot through rauc service,
// which verifies the signature again with the system's keyring and makes
// the slot the boot loader's primary only once it is completely written.
func (r Rauc) Install(ctx context.Context, bundle string) error {
	_, err := r.run(ctx, "install", bundle)
	if err != nil && isSignatureError(err.Error()) {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return err
}

// Status returns the slots and boot state.
func (r Rauc) Status(ctx context.Context) (Status, error) {
	out, err := r.run(ctx, "status", "--detailed", "--output-format=json")
	if err != nil {
		return Status{}, err
	}
	var raw struct {
		Status
		Slots []map[string]Slot `json:"slots"`
	}
	if err := json.Unmarshal(jsonPart(out), &raw); err != nil {
		return Status{}, fmt.Errorf("rauc status: output: %w", err)
	}
	st := raw.Status
	for _, m := range raw.Slots {
		for name, sl := range m {
			sl.Name = name
			st.Slots = append(st.Slots, sl)
		}
	}
	return st, nil
}

// Mark marks the booted slot "good" or "bad" (the boot loader's state).
func (r Rauc) Mark(ctx context.Context, state string) error {
	_, err := r.run(ctx, "status", "mark-"+state, "booted")
	return err
}

// jsonPart skips anything rauc prints before its JSON document.
func jsonPart(b []byte) []byte {
	if i := bytes.IndexByte(b, '{'); i >= 0 {
		return b[i:]
	}
	return b
}

func isSignatureError(s string) bool {
	s = strings.ToLower(s)
	for _, w := range []string{"signature", "verify", "certificate", "digest", "cms"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
