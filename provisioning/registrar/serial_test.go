package registrar_test

import (
	"testing"

	"kiosk/provisioning/registrar"
)

func TestParseSerial(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"7a3f", "7a3f"}, {"7A3F", "7a3f"}, {"0x7a3f", "7a3f"}, {"0X7A3F", "7a3f"},
		{"7A:3F", "7a3f"}, {"00:7a:3f", "7a3f"}, {"007a3f", "7a3f"}, {" 7a3f\n", "7a3f"},
	} {
		if got, err := registrar.ParseSerial(c.in); err != nil || got != c.want {
			t.Errorf("ParseSerial(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "0x", "xyz", "-1", "0", "7a 3f"} {
		if got, err := registrar.ParseSerial(in); err == nil {
			t.Errorf("ParseSerial(%q) = %q, want an error", in, got)
		}
	}
}
