package daemon

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"kiosk/firmware/config"
	"kiosk/internal/testmedia"
)

// Health's memory component turns degraded above memory.rss_ceiling_mib.
func TestMemoryComponent(t *testing.T) {
	cfg := config.Default()
	cfg.Memory.RSSCeilingMiB = 16384
	d := &Daemon{cfg: cfg}
	if c := d.memoryComponent(); c.State != "ok" {
		t.Fatalf("ceiling 16 GiB: %+v", c)
	}
	d.cfg.Memory.RSSCeilingMiB = 1 // below any process (config refuses it; the test takes the branch)
	c := d.memoryComponent()
	if c.State != "degraded" || !strings.Contains(c.Detail, "above the 1 MiB ceiling") {
		t.Fatalf("ceiling 1 MiB: %+v", c)
	}
	if info, ok := c.Info.(map[string]any); !ok || info["rss_mib"].(float64) <= 1 || info["goroutines"].(int) < 1 {
		t.Errorf("info %+v", c.Info)
	}
}

// Staff pull the diagnostics archive; without a login it is refused. It
// holds the counters, the profiles and the health report, and none of
// the staff PIN.
func TestStaffDiagnostics(t *testing.T) {
	r := start(t, shopperConfig(t, testmedia.Path(t, "franck.mp4")))
	r.waitHealth(t, "up", func(h Health) bool {
		return h.Components["gpio"].State == "ok" && h.Components["memory"].State == "ok"
	})
	if code, _ := postJSON(t, r.base+"/api/staff/diagnostics", `{}`); code != http.StatusUnauthorized {
		t.Fatalf("diagnostics without login: %d", code)
	}
	code, body := postJSON(t, r.base+"/api/staff/login", `{"pin":"`+testStaffPIN+`"}`)
	var login struct{ Token string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &login) != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", r.base+"/api/staff/diagnostics", nil)
	req.Header.Set("X-Staff-Token", login.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	zb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("diagnostics: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if bytes.Contains(b, []byte(testStaffPIN)) {
			t.Errorf("%s holds the staff PIN", f.Name)
		}
		if f.Name == "counters.json" {
			var doc struct {
				Device   string
				Counters struct {
					RSSBytes int64 `json:"rss_bytes"`
					Files    map[string]int64
				}
			}
			if err := json.Unmarshal(b, &doc); err != nil || doc.Counters.RSSBytes <= 0 || doc.Counters.Files["outbox.db"] <= 0 {
				t.Errorf("counters.json %s (%v)", b, err)
			}
		}
	}
	for _, want := range []string{"counters.json", "health.json", "heap.pb.gz", "goroutine.pb.gz", "README.txt"} {
		if !names[want] {
			t.Errorf("archive lacks %s (has %v)", want, names)
		}
	}
	// The counters the soak samples, on the status server.
	var c struct {
		Goroutines int `json:"goroutines"`
		OpenFiles  int `json:"open_files"`
	}
	resp, err = http.Get(r.base + "/api/diagnostics/counters")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if err != nil || c.Goroutines < 1 || c.OpenFiles < 3 {
		t.Errorf("counters %+v (%v)", c, err)
	}
}
