package browsertest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// AxeViolation is one rule axe-core found broken on the page.
type AxeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"` // CSS selectors of the offending elements
}

// Axe runs axe-core's WCAG 2.0/2.1 A and AA rules on the page as it is
// now and returns the violations. axe-core is the npm package fetched by
// fetch-axe.sh (`make axe`) into $KIOSK_TESTDATA/axe, injected through
// the DevTools protocol: the page under test loads nothing from outside
// the kiosk, and its CSP stays as shipped.
func (b *Browser) Axe(t testing.TB) []AxeViolation {
	t.Helper()
	dir := os.Getenv("KIOSK_TESTDATA")
	if dir == "" {
		t.Fatal("KIOSK_TESTDATA unset: run the tests through make, or set it to .cache/testdata after `make axe`")
	}
	src, err := os.ReadFile(filepath.Join(dir, "axe", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core: %v (run `make axe`)", err)
	}
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](string(src)+";\ntrue")); err != nil {
		t.Fatalf("load axe-core: %v", err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {
		runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
		resultTypes: ["violations"],
	}).then((r) => JSON.stringify(r.violations.map((v) => ({
		id: v.id, impact: v.impact || "", help: v.help,
		nodes: v.nodes.map((n) => n.target.join(" ")),
	}))))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("axe-core run: %v", err)
	}
	var out []AxeViolation
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("axe-core result: %v", err)
	}
	return out
}
