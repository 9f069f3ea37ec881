package daemon

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiosk/internal/testmedia"
)

// One byte of one model changed: kioskd keeps running, refuses face
// verification and says which file is wrong, in health and to the till.
func TestAlteredModelRefused(t *testing.T) {
	src := testmedia.Models(t)
	dir := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".onnx") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "fr_feature.onnx" {
			b[len(b)/2] ^= 0x01
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := simConfig(t, testmedia.Path(t, "franck.mp4"))
	if !strings.Contains(cfg, fmt.Sprintf("models_dir = %q", src)) {
		t.Fatal("simConfig no longer sets models_dir")
	}
	r := start(t, strings.Replace(cfg, fmt.Sprintf("models_dir = %q", src), fmt.Sprintf("models_dir = %q", dir), 1))
	h := r.waitHealth(t, "face down, camera and reader up", func(h Health) bool {
		return h.Components["face"].State == "down" && h.Components["camera"].State == "ok" && h.Components["cardreader"].State == "ok"
	})
	if d := h.Components["face"].Detail; !strings.Contains(d, "fr_feature.onnx") {
		t.Fatalf("face component %q does not name the altered file", d)
	}
	code, body := ecrCreate(t, r, "till-bad-model", 2350)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "face_down") {
		t.Fatalf("payment with an altered model: %d %s", code, body)
	}
}
