package bankcard_test

import (
	"testing"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/provisioning/bankissuer"
)

// FuzzProcess sends arbitrary commands, after a selected application and
// a verified PIN, to the virtual card: it must answer every one with a
// status word and never panic.
func FuzzProcess(f *testing.F) {
	a, err := bankissuer.NewAuthority("Fuzz eID Authority", false)
	if err != nil {
		f.Fatal(err)
	}
	im, err := a.Issue(bankissuer.Holder{Name: "FUZZ", EIDNumber: "EID-1", PIN: "1234"}, bankcard.ProfileGood)
	if err != nil {
		f.Fatal(err)
	}
	pin, _ := bankeid.PINBlock("1234")
	sel := append([]byte{0x00, 0xA4, 0x04, 0x0C, byte(len(bankeid.AID))}, bankeid.AID...)
	verify := append([]byte{0x00, 0x20, 0x00, 0x81, 0x08}, pin...)
	f.Add([]byte{0x00, 0x22, 0x41, 0xB6, 0x06, 0x80, 0x01, 0x01, 0x84, 0x01, 0x01})
	f.Add(append([]byte{0x00, 0x2A, 0x9E, 0x9A, 0x20}, make([]byte, 33)...))
	f.Add([]byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0xC0, 0x01})
	f.Add([]byte{0x00, 0xB0, 0x7F, 0xFF, 0x00})
	f.Add(verify)
	f.Fuzz(func(t *testing.T, capdu []byte) {
		c, err := bankcard.New(im, bankcard.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c.Process(sel)
		c.Process(verify)
		c.Process([]byte{0x00, 0x22, 0x41, 0xB6, 0x06, 0x80, 0x01, 0x01, 0x84, 0x01, 0x01})
		c.Process([]byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0xC0, 0x01})
		if out := c.Process(capdu); len(out) < 2 {
			t.Fatalf("answer of %d bytes", len(out))
		}
	})
}
