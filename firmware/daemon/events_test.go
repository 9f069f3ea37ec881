package daemon

import (
	"strings"
	"testing"

	"kiosk/internal/testmedia"
)

// The fleet follows the kiosk: session transitions, service changes and
// alarms arrive on <prefix>/<device>/events/<kind>.
func TestEventsReachTheHub(t *testing.T) {
	r := start(t, simConfig(t, testmedia.Path(t, "franck.mp4")))
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	obs := mqttObserver(t, r.d.broker.URL(), "kiosk/v1/kiosk-test/events/#")

	if code, body := postJSON(t, r.base+"/api/sim/pay", `{"amount_minor":2350,"currency":"CNY"}`); code != 201 {
		t.Fatalf("demo till: %d %s", code, body)
	}
	ev := obs.wait(t, "kiosk/v1/kiosk-test/events/session.insert_card", 1)
	if !strings.Contains(ev, `"kind":"session.insert_card"`) || !strings.Contains(ev, `"amount_minor":2350`) || !strings.Contains(ev, `"seq":`) {
		t.Fatalf("session event %s", ev)
	}
	if code, body := postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":true}`); code != 200 {
		t.Fatalf("tamper: %d %s", code, body)
	}
	if ev := obs.wait(t, "kiosk/v1/kiosk-test/events/alarm.tamper", 1); !strings.Contains(ev, `"active":true`) {
		t.Fatalf("tamper alarm %s", ev)
	}
	// Tamper cancels the session and takes the kiosk out of service.
	if ev := obs.wait(t, "kiosk/v1/kiosk-test/events/kiosk.service", 1); !strings.Contains(ev, `"out_of_service":true`) {
		t.Fatalf("service event %s", ev)
	}
	obs.wait(t, "kiosk/v1/kiosk-test/events/session.result", 1)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for topic := range obs.msgs {
		if strings.HasSuffix(topic, "/session.progress") || strings.HasSuffix(topic, "/gpio.input") {
			t.Errorf("forwarded %s: high-rate or raw events stay on the kiosk", topic)
		}
	}
}
