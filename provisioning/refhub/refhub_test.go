package refhub

import (
	"path/filepath"
	"testing"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

func TestDeviceOf(t *testing.T) {
	store, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Brokers: []string{"tcp://x:1"}, Keyring: txreport.NewKeyring(), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]string{"kiosk/v1/k1/tx": "k1", "kiosk/v1//tx": "", "other/k1/tx": "", "kiosk/v1/k1": ""} {
		d, _, ok := h.deviceOf(topic)
		if d != want || ok != (want != "") {
			t.Errorf("deviceOf(%q) = %q %v", topic, d, ok)
		}
	}
}
