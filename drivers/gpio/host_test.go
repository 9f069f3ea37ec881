package gpio

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// The sandbox this was written in has no GPIO subsystem (CONFIG_GPIOLIB off,
// no gpio-sim/gpio-mockup), so OpenHost's success path is not exercised
// here; its error paths are, on any machine.
func TestOpenHostMissingLine(t *testing.T) {
	cfg := Config{Pins: map[Role]PinConfig{
		Lock:   {Line: "KIOSK_NO_SUCH_LINE"},
		Tamper: {Line: "nochip:3", Pull: "up"},
	}}
	b, err := OpenHost(cfg, nil)
	if err == nil {
		b.Close()
		t.Fatal("OpenHost with bogus lines succeeded")
	}
	msg := err.Error()
	for _, want := range []string{`role "lock"`, `"KIOSK_NO_SUCH_LINE"`, `role "tamper"`, `"nochip:3"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if chips, _ := filepath.Glob("/dev/gpiochip*"); len(chips) == 0 {
		if !errors.Is(err, ErrNoGPIO) || !strings.Contains(msg, "/dev/gpiochip") {
			t.Errorf("without GPIO chips want ErrNoGPIO mentioning /dev/gpiochip, got %v", err)
		}
	} else if !errors.Is(err, ErrLineNotFound) {
		t.Errorf("want ErrLineNotFound, got %v", err)
	}
	t.Logf("error as operators see it:\n%v", err)
}

func TestOpenHostInvalidConfig(t *testing.T) {
	_, err := OpenHost(Config{Pins: map[Role]PinConfig{"siren": {Line: "GPIO4"}}}, nil)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `"siren"`) {
		t.Fatalf("OpenHost = %v, want ErrInvalidConfig naming the role", err)
	}
}
