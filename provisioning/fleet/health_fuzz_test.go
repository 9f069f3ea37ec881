package fleet

import (
	"testing"
	"time"
)

// FuzzParseHealth: kiosks' health telemetry is unsealed network input the
// hub reads for its overview (kioskctl fleet list).
func FuzzParseHealth(f *testing.F) {
	f.Add([]byte(`{"status":"ok","version":"1a2b","components":{"eid":{"info":{"bundle":2}},"config":{"info":{"version":3,"hash":"ab"}},` +
		`"transactions":{"info":{"outbox":{"depth":4}}},"certificate":{"info":{"not_after":"2027-12-07T12:00:00Z"}},` +
		`"session":{"state":"degraded","detail":"out of service: service"}}}`))
	f.Add([]byte(`{"status":""}`))
	f.Add([]byte(`[]`))
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseHealth(b, now)
		if !ok {
			return
		}
		if len(b) > maxHealth || r.Status == "" || !r.Time.Equal(now) {
			t.Fatalf("accepted %d bytes as %+v", len(b), r)
		}
	})
}

func TestParseHealth(t *testing.T) {
	r, ok := parseHealth([]byte(`{"status":"degraded","version":"1a2b","components":{"eid":{"info":{"bundle":2}},"config":{"info":{"version":3,"hash":"ab"}},`+
		`"transactions":{"info":{"outbox":{"depth":4}}},"certificate":{"info":{"not_after":"2027-12-07T12:00:00Z"}},`+
		`"session":{"state":"degraded","detail":"out of service: service"}}}`), time.Unix(0, 0))
	if !ok || r.Firmware != "1a2b" || r.TrustBundle != 2 || r.ConfigVersion != 3 || r.ConfigHash != "ab" || r.OutboxDepth != 4 ||
		r.CertNotAfter.Year() != 2027 || r.Service != "service" || r.Status != "degraded" {
		t.Fatalf("%+v %v", r, ok)
	}
}
