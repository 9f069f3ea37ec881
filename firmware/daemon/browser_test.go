package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kiosk/internal/browsertest"
	"kiosk/internal/testmedia"
)

// The status page in a real headless Chromium: live state, the camera
// thumbnail, and the simulated-device controls clicked like a person would.
func TestStatusPageInChromium(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	r := start(t, simConfig(t, video))
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	b := browsertest.Start(t)

	b.Run(t, 30*time.Second,
		chromedp.Navigate(r.base+"/status/"),
		chromedp.WaitVisible(chromedp.CSS(`#overall.ok`)),
		chromedp.WaitVisible(chromedp.CSS(`#card-insert`)),
		chromedp.Click(chromedp.CSS(`#card-insert`)),
		chromedp.WaitVisible(chromedp.CSS(`#readers li.card-present`)),
		chromedp.Click(chromedp.CSS(`#pins tr[data-role="tamper"] button`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#pins tr[data-role="tamper"] td:nth-child(4)').textContent === "active"`),
		chromedp.Poll[chromedp.Void](`document.getElementById('thumb').naturalWidth > 0`),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#events li').length >= 2`),
		chromedp.WaitVisible(chromedp.CSS(`#overall.degraded`)),
	)
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	overall, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#overall`)))
	if err != nil {
		t.Fatal(err)
	}
	fps, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#fps`)))
	if err != nil {
		t.Fatal(err)
	}
	// The tamper switch took the kiosk out of service: the page says so.
	if overall != "degraded" {
		t.Fatalf("overall badge after tamper %q, want degraded", overall)
	}
	if fps == "–" || strings.HasPrefix(fps, "0") {
		t.Fatalf("fps shown as %q", fps)
	}
	r.waitEvent(t, "card.inserted", nil)
	b.Screenshot(t, "statuspage")
	if c := b.Console(); len(c) > 0 {
		t.Fatalf("console errors: %v", c)
	}
	if n := b.NonLoopbackRequests(); len(n) > 0 {
		t.Fatalf("requests leaving loopback: %v", n)
	}
}
