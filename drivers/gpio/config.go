package gpio

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// DefaultDebounce is used when Config.Debounce is zero. Mechanical switches
// typically bounce for 1–10ms; 20ms leaves margin without feeling laggy.
const DefaultDebounce = 20 * time.Millisecond

// NoDebounce disables debouncing (any negative Config.Debounce does): every
// edge that changes the level is reported at once.
const NoDebounce time.Duration = -1

// maxDebounce guards against unit mistakes (e.g. "20s" meant as "20ms").
const maxDebounce = 5 * time.Second

// Sentinel errors callers can branch on.
var (
	ErrInvalidConfig = errors.New("gpio: invalid config")
	ErrUnknownRole   = errors.New("gpio: unknown or unmapped role")
	ErrNotOutput     = errors.New("gpio: role is not an output")
	ErrNotInput      = errors.New("gpio: role is not an input")
	ErrClosed        = errors.New("gpio: driver closed")
	ErrRunning       = errors.New("gpio: Run already active")
	ErrNoGPIO        = errors.New("gpio: no GPIO character devices available")
	ErrLineNotFound  = errors.New("gpio: line not found")
)

// PinConfig maps a role to a line.
type PinConfig struct {
	// Line is the periph pin name ("GPIO17"), a chip line name, or
	// "<chip>:<offset>" for unnamed lines (see package doc).
	Line string `json:"line" toml:"line"`
	// ActiveLow inverts the electrical level: active = low.
	ActiveLow bool `json:"active_low,omitempty" toml:"active_low"`
	// Pull applies to inputs only: "up", "down", "none" or "" (= none).
	Pull string `json:"pull,omitempty" toml:"pull"`
}

// Config is the GPIO section of the kiosk configuration.
type Config struct {
	Pins map[Role]PinConfig `json:"pins" toml:"pins"`
	// Debounce is how long an input must be stable before a change is
	// reported. 0 means DefaultDebounce; negative means NoDebounce.
	Debounce time.Duration `json:"debounce,omitempty" toml:"debounce"`
}

// debounce returns the effective debounce window (0 = disabled).
func (c Config) debounce() time.Duration {
	switch {
	case c.Debounce == 0:
		return DefaultDebounce
	case c.Debounce < 0:
		return 0
	}
	return c.Debounce
}

// parsePull maps the config spelling to periph's pull.
func parsePull(s string) (gpio.Pull, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none", "float":
		return gpio.Float, nil
	case "up":
		return gpio.PullUp, nil
	case "down":
		return gpio.PullDown, nil
	}
	return gpio.PullNoChange, fmt.Errorf("pull %q: want up, down or none", s)
}

// Validate checks the config; each problem is reported with the role it
// concerns, all problems at once, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if len(c.Pins) == 0 {
		errs = append(errs, errors.New("no pins configured"))
	}
	if c.Debounce > maxDebounce {
		errs = append(errs, fmt.Errorf("debounce %v exceeds %v", c.Debounce, maxDebounce))
	}
	roles := make([]Role, 0, len(c.Pins))
	for r := range c.Pins {
		roles = append(roles, r)
	}
	slices.Sort(roles) // deterministic messages
	byLine := map[string]Role{}
	for _, r := range roles {
		pc := c.Pins[r]
		if !r.known() {
			errs = append(errs, fmt.Errorf("role %q: unknown role (known: %v)", r, Roles()))
			continue
		}
		line := strings.TrimSpace(pc.Line)
		if line == "" {
			errs = append(errs, fmt.Errorf("role %q: empty line", r))
		} else if other, dup := byLine[line]; dup {
			errs = append(errs, fmt.Errorf("role %q: line %q already used by role %q", r, line, other))
		} else {
			byLine[line] = r
		}
		if _, err := parsePull(pc.Pull); err != nil {
			errs = append(errs, fmt.Errorf("role %q: %w", r, err))
		} else if r.IsOutput() && pc.Pull != "" && !strings.EqualFold(pc.Pull, "none") {
			errs = append(errs, fmt.Errorf("role %q: pull %q applies to inputs only", r, pc.Pull))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
