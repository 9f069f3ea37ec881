package gpio

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/gpioioctl"
)

// ioctlDriverName is gpioioctl's periph driver name (its String()).
const ioctlDriverName = "ioctl-gpio"

// OpenHost opens the real GPIO lines through the Linux GPIO character
// device. Each PinConfig.Line is resolved by name via gpioreg, or as
// "<chip>:<offset>" (chip name or label) for unnamed lines. Errors name the
// role; with no GPIO chip at all the error wraps ErrNoGPIO, with a missing
// line ErrLineNotFound.
func OpenHost(cfg Config, logger *slog.Logger) (*Board, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	state, err := host.Init()
	if err != nil {
		return nil, fmt.Errorf("gpio: periph host init: %w", err)
	}
	chipErr := ioctlFailure(state)
	pins := map[Role]gpio.PinIO{}
	var errs []error
	for _, r := range Roles() {
		pc, ok := cfg.Pins[r]
		if !ok {
			continue
		}
		name := strings.TrimSpace(pc.Line)
		p, err := resolveLine(name)
		if err != nil {
			if len(gpioioctl.Chips) == 0 {
				err = fmt.Errorf("%w (%v)", ErrNoGPIO, chipErr)
			}
			errs = append(errs, fmt.Errorf("gpio: role %q: line %q: %w", r, name, err))
			continue
		}
		pins[r] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	b, err := NewBoard(pins, cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("gpio: open host lines: %w", err)
	}
	logger.Info("gpio opened", "lines", len(pins), "chips", len(gpioioctl.Chips))
	return b, nil
}

// ioctlFailure explains why no chip is available, for the error message.
func ioctlFailure(state *driverreg.State) error {
	if state != nil {
		for _, f := range slices.Concat(state.Failed, state.Skipped) {
			if f.D != nil && f.D.String() == ioctlDriverName {
				return fmt.Errorf("%s: %w; need /dev/gpiochip* (kernel CONFIG_GPIO_CDEV) and read/write access to it", ioctlDriverName, f.Err)
			}
		}
	}
	if devs, _ := filepath.Glob("/dev/gpiochip*"); len(devs) == 0 {
		return errors.New("no /dev/gpiochip* device; kernel GPIO character device support (CONFIG_GPIO_CDEV) or the board's GPIO driver is missing")
	}
	return errors.New("/dev/gpiochip* present but none could be opened (permissions?)")
}

// resolveLine finds a line by registered name, else by "<chip>:<offset>".
func resolveLine(name string) (gpio.PinIO, error) {
	if p := gpioreg.ByName(name); p != nil {
		return p, nil
	}
	chipName, off, ok := strings.Cut(name, ":")
	if ok {
		n, err := strconv.Atoi(off)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: bad line offset %q", ErrLineNotFound, off)
		}
		for _, c := range gpioioctl.Chips {
			if c.Name() != chipName && c.Label() != chipName && filepath.Base(c.Path()) != chipName {
				continue
			}
			if n >= c.LineCount() {
				return nil, fmt.Errorf("%w: chip %s has %d lines, offset %d out of range", ErrLineNotFound, chipName, c.LineCount(), n)
			}
			return c.ByNumber(n), nil
		}
		return nil, fmt.Errorf("%w: no GPIO chip named %q (have %s)", ErrLineNotFound, chipName, chipNames())
	}
	return nil, fmt.Errorf("%w (have %s)", ErrLineNotFound, lineNames())
}

func chipNames() string {
	var s []string
	for _, c := range gpioioctl.Chips {
		s = append(s, fmt.Sprintf("%s[%s, %d lines]", c.Name(), c.Label(), c.LineCount()))
	}
	if len(s) == 0 {
		return "no chips"
	}
	return strings.Join(s, ", ")
}

// lineNames lists a few registered names to help fix a typo.
func lineNames() string {
	const max = 12
	var s []string
	for _, p := range gpioreg.All() {
		s = append(s, p.Name())
	}
	switch {
	case len(s) == 0:
		return "no named lines"
	case len(s) > max:
		return strings.Join(s[:max], ", ") + fmt.Sprintf(", … %d more", len(s)-max)
	}
	return strings.Join(s, ", ")
}
