package shopper

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every message key the session policy can produce and every guidance
// code the face tracker emits must be in every catalogue.
var requiredKeys = []string{
	"msg.wrong_password", "msg.pin_blocked", "msg.document_expired", "msg.card_removed", "msg.timeout",
	"msg.cancelled", "msg.face_mismatch", "msg.face_not_seen", "msg.chip_photo_unusable", "msg.not_live",
	"msg.no_consent", "msg.card_unreadable", "msg.declined_by_bank", "msg.technical", "msg.document_not_genuine",
	"guide.come_closer", "guide.move_back", "guide.center_face", "guide.look_at_camera", "guide.hold_still",
	"guide.more_light", "guide.less_light", "guide.open_eyes", "guide.smile", "guide.one_person",
	"state.ok", "state.degraded", "state.down", "state.disabled",
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := static.ReadFile("static/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCataloguesComplete(t *testing.T) {
	cats := map[string]map[string]string{}
	for _, l := range Languages() {
		c, err := Catalogue(l)
		if err != nil {
			t.Fatal(err)
		}
		cats[l] = c
	}
	if _, err := Catalogue("xx"); err == nil {
		t.Fatal("unknown catalogue loaded")
	}
	ref := slices.Sorted(maps.Keys(cats["en"]))
	for l, c := range cats {
		if got := slices.Sorted(maps.Keys(c)); !slices.Equal(got, ref) {
			t.Errorf("%s keys differ from en: %v vs %v", l, got, ref)
		}
		for k, v := range c {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: %s is empty", l, k)
			}
		}
		for _, k := range requiredKeys {
			if _, ok := c[k]; !ok {
				t.Errorf("%s lacks %s", l, k)
			}
		}
	}
	// The two languages really differ (no copied English).
	if cats["zh-CN"]["msg.face_mismatch"] == cats["en"]["msg.face_mismatch"] {
		t.Error("zh-CN catalogue is not translated")
	}

	// Every key the page uses is in the catalogues.
	html, js := read(t, "index.html"), read(t, "shopper.js")
	var used []string
	for _, m := range regexp.MustCompile(`data-i18n="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		used = append(used, m[1])
	}
	// Any string literal shaped like a key whose prefix is a catalogue's
	// (so keys picked by a ternary count too; "guide." + code is covered by
	// requiredKeys).
	prefixes := map[string]bool{}
	for k := range cats["en"] {
		prefixes[strings.SplitN(k, ".", 2)[0]] = true
	}
	for _, m := range regexp.MustCompile(`"([a-z]+)\.([a-z_]+)"`).FindAllStringSubmatch(js, -1) {
		if prefixes[m[1]] {
			used = append(used, m[1]+"."+m[2])
		}
	}
	if len(used) < 40 {
		t.Fatalf("found only %d used keys: the patterns no longer match the page", len(used))
	}
	for _, k := range used {
		if _, ok := cats["en"][k]; !ok {
			t.Errorf("page uses %q, not in the catalogues", k)
		}
	}
}

// The screen loads nothing from outside the kiosk.
func TestNoExternalResources(t *testing.T) {
	for _, f := range []string{"index.html", "shopper.js", "shopper.css"} {
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(read(t, f)); m != "" {
			t.Errorf("%s references %q", f, m)
		}
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct{ path, ctype, body string }{
		{"/", "text/html", "shopper.js"},
		{"/shopper.js", "javascript", "EventSource"},
		{"/shopper.css", "text/css", "orientation: landscape"},
		{"/i18n/zh-CN.json", "application/json", "微笑支付"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.body) {
			t.Errorf("%s: %d %s, body has %q: %v", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.body, strings.Contains(string(b), tc.body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
	}
	resp, err := http.Get(srv.URL + "/nope.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("missing file: %d", resp.StatusCode)
	}
}
