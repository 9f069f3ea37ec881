package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"kiosk/internal/browsertest"
	"kiosk/internal/testmedia"
)

// A whole payment on the physical keypad only (a USB HID keyboard to the
// page): nothing touches the screen. The till starts it, the card goes
// in, the CAN is typed on the keys and confirmed with Enter; on the pad
// Tab reaches every button in the page's order; F1 (the accessibility
// key) turns on large text.
func TestShopperKeysOnlyPayment(t *testing.T) {
	r := start(t, shopperConfig(t, testmedia.Path(t, "franck.mp4")))
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	b := browsertest.Start(t)
	b.Run(t, 30*time.Second, chromedp.EmulateViewport(1080, 1920), chromedp.Navigate(r.base+"/"), screenIs("attract"))
	if code, body := postJSON(t, r.base+"/api/sim/pay", `{"amount_minor":2350,"currency":"CNY"}`); code != 201 {
		t.Fatalf("demo till: %d %s", code, body)
	}
	b.Run(t, 20*time.Second, screenIs("insert_card"))
	postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`)
	b.Run(t, 20*time.Second, screenIs("enter_password"),
		chromedp.KeyEvent(kb.F1),
		chromedp.Poll[chromedp.Void](`document.documentElement.classList.contains("large-text")`))

	// Focus order: Tab from the top of the page reaches every visible
	// button, each once, in the order the page reads.
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	want, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("button")].filter((e) => e.offsetParent !== null && !e.disabled).map((e) => e.id || "d" + e.dataset.d)`))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range want {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(b.Ctx, 5*time.Second)
		focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const e = document.activeElement; return e ? (e.id || "d" + e.dataset.d) : ""; })()`))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, focused)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Tab order %v, want the page's order %v", got, want)
	}
	t.Logf("focus order on the pad: %v", got)

	// The CAN on the keys; a wrong digit taken back with Backspace.
	b.Run(t, 20*time.Second,
		chromedp.KeyEvent("1239"), chromedp.KeyEvent(kb.Backspace), chromedp.KeyEvent("456"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#pin-dots i:not(.empty)").length === 6`),
		chromedp.KeyEvent(kb.Enter))
	b.Run(t, 90*time.Second,
		chromedp.Poll[chromedp.Void](`document.body.dataset.screen === "result" || document.body.dataset.screen === "remove_card"`, chromedp.WithPollingTimeout(85*time.Second)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#result-icon.ok") !== null`))
	b.Screenshot(t, "keys-only-result-large-text")
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	b.Run(t, 30*time.Second, screenIs("attract"))
	ctx, cancel = context.WithTimeout(b.Ctx, 5*time.Second)
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[window.kioskUI.keys, window.kioskUI.pointers]`))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if counts[1] != 0 || counts[0] < 10 {
		t.Fatalf("keys %d, screen touches %d: want a payment on keys alone", counts[0], counts[1])
	}
	t.Logf("keys-only payment: %d keys, %d touches", counts[0], counts[1])
	b.Run(t, 10*time.Second, chromedp.Navigate("about:blank"))
	if c := b.Console(); len(c) > 0 {
		t.Fatalf("console errors: %v", c)
	}
}
