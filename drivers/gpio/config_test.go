package gpio

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; nil = valid
	}{
		{name: "ok full", cfg: Config{Pins: map[Role]PinConfig{
			LEDGreen: {Line: "GPIO5"}, Lock: {Line: "GPIO6", ActiveLow: true},
			Tamper: {Line: "GPIO17", Pull: "up"}, ServiceButton: {Line: "GPIO27", ActiveLow: true, Pull: "UP"},
			Presence: {Line: "gpiochip0:22", Pull: "down"}, Buzzer: {Line: "GPIO13", Pull: "none"},
		}}},
		{name: "ok no debounce", cfg: Config{Pins: map[Role]PinConfig{Presence: {Line: "A"}}, Debounce: NoDebounce}},
		{name: "empty", cfg: Config{}, wantErr: []string{"no pins configured"}},
		{name: "unknown role", cfg: Config{Pins: map[Role]PinConfig{"siren": {Line: "GPIO1"}}}, wantErr: []string{`role "siren": unknown role`}},
		{name: "empty line", cfg: Config{Pins: map[Role]PinConfig{Lock: {Line: "  "}}}, wantErr: []string{`role "lock": empty line`}},
		{name: "duplicate line", cfg: Config{Pins: map[Role]PinConfig{Lock: {Line: "GPIO4"}, Tamper: {Line: "GPIO4"}}},
			wantErr: []string{`role "tamper": line "GPIO4" already used by role "lock"`}},
		{name: "bad pull", cfg: Config{Pins: map[Role]PinConfig{Tamper: {Line: "GPIO4", Pull: "sideways"}}},
			wantErr: []string{`role "tamper": pull "sideways"`}},
		{name: "pull on output", cfg: Config{Pins: map[Role]PinConfig{LEDRed: {Line: "GPIO4", Pull: "up"}}},
			wantErr: []string{`role "led_red": pull "up" applies to inputs only`}},
		{name: "huge debounce", cfg: Config{Pins: map[Role]PinConfig{Tamper: {Line: "GPIO4"}}, Debounce: 20 * time.Second},
			wantErr: []string{"debounce 20s exceeds"}},
		{name: "all problems reported", cfg: Config{Pins: map[Role]PinConfig{"x": {Line: "1"}, Lock: {Line: ""}, Tamper: {Line: "2", Pull: "?"}}},
			wantErr: []string{`role "x"`, `role "lock"`, `role "tamper"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.wantErr)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestConfigDebounce(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, DefaultDebounce}, {NoDebounce, 0}, {-5 * time.Second, 0}, {7 * time.Millisecond, 7 * time.Millisecond},
	} {
		if got := (Config{Debounce: tc.in}).debounce(); got != tc.want {
			t.Errorf("debounce(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRoles(t *testing.T) {
	outs, ins := 0, 0
	for _, r := range Roles() {
		if r.IsOutput() == r.IsInput() {
			t.Errorf("role %q: IsOutput=%v IsInput=%v", r, r.IsOutput(), r.IsInput())
		}
		if r.IsOutput() {
			outs++
		} else {
			ins++
		}
	}
	if outs != 6 || ins != 4 {
		t.Errorf("got %d outputs, %d inputs; want 6, 4", outs, ins)
	}
	if Role("nope").IsOutput() || Role("nope").IsInput() {
		t.Error("unknown role classified")
	}
}
