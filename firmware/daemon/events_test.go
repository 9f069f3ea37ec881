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
	// The tamper switch was a GPIO input edge on the bus; raw input
	// levels stay on the kiosk (forwardedEvent's unit test covers the
	// face-progress stream, which this session never reached).
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for topic := range obs.msgs {
		if strings.HasSuffix(topic, "/gpio.input") {
			t.Errorf("forwarded %s: raw input levels stay on the kiosk", topic)
		}
	}
}

func TestForwardedEventKinds(t *testing.T) {
	for kind, want := range map[string]int{
		"alarm.tamper": 1, "outbox.alarm": 1, "kiosk.service": 1,
		"session.insert_card": 0, "session.result": 0, "camera.state": 0, "staff.login": 0,
		"session.progress": -1, "gpio.input": -1, "emrtd.progress": -1, "card.inserted": -1, "hub.state": -1,
	} {
		qos, ok := forwardedEvent(kind)
		if got := map[bool]int{true: int(qos), false: -1}[ok]; got != want {
			t.Errorf("%s: qos %d forwarded %v, want %d (-1: not forwarded)", kind, qos, ok, want)
		}
	}
}
