package daemon

import (
	"strings"
	"testing"
	"time"

	"kiosk/firmware/jobwire"
	"kiosk/internal/testmedia"
)

// A desired configuration through a signed job: applied from the next
// session and persisted (a restart keeps it), reported in health; an
// invalid one is rejected naming its keys and the applied one stays; an
// older version is refused.
func TestOperatorConfiguration(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	cfg, dir := simConfigWith(t, video, nil, "")
	r := start(t, cfg)
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	version := func(h Health) any { return h.Components["config"].Info.(map[string]any)["version"] }
	obs := mqttObserver(t, r.d.broker.URL(), "kiosk/v1/kiosk-test/jobs/status")
	send := func(id, doc string) string {
		t.Helper()
		obs.publish(t, "kiosk/v1/kiosk-test/jobs/notify", string(sealJobDoc(t, dir, id, jobwire.KindSetConfig, doc)))
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			obs.mu.Lock()
			msgs := append([]string(nil), obs.msgs["kiosk/v1/kiosk-test/jobs/status"]...)
			obs.mu.Unlock()
			for _, m := range msgs {
				if strings.Contains(m, `"job_id":"`+id+`"`) && (strings.Contains(m, `"status":"succeeded"`) || strings.Contains(m, `"status":"rejected"`) || strings.Contains(m, `"status":"failed"`)) {
					return m
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no final status for %s", id)
		return ""
	}

	st := send("cfg-2", `{"version":2,"settings":{"policy.card_timeout":"45s","policy.time_extensions":2}}`)
	if !strings.Contains(st, `"status":"succeeded"`) || !strings.Contains(st, `\"version\":2`) {
		t.Fatalf("v2: %s", st)
	}
	if p := r.d.session.Policy(); p.CardTimeout != 45*time.Second || p.TimeExtensions != 2 {
		t.Fatalf("policy after v2: %+v", p)
	}
	if v := version(r.d.Health()); v != 2 {
		t.Fatalf("health config version %v", v)
	}

	st = send("cfg-3", `{"version":3,"settings":{"policy.time_extensions":99,"eid.trust_dir":"/tmp/x"}}`)
	if !strings.Contains(st, `"status":"rejected"`) || !strings.Contains(st, "offending keys eid.trust_dir, policy.time_extensions") {
		t.Fatalf("invalid v3: %s", st)
	}
	st = send("cfg-2b", `{"version":2,"settings":{"policy.card_timeout":"50s"}}`)
	if !strings.Contains(st, `"status":"rejected"`) || !strings.Contains(st, "not newer") {
		t.Fatalf("stale version: %s", st)
	}
	if p := r.d.session.Policy(); p.CardTimeout != 45*time.Second || version(r.d.Health()) != 2 {
		t.Fatalf("the applied configuration changed: %+v", p)
	}

	// A restart lays the persisted settings over the file again.
	r.stop(t)
	r = start(t, cfg)
	if p := r.d.session.Policy(); p.CardTimeout != 45*time.Second || version(r.d.Health()) != 2 {
		t.Fatalf("after a restart: %+v, version %v", p, version(r.d.Health()))
	}
}
