package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"kiosk/firmware/event"
	"kiosk/firmware/session"
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
		chromedp.Poll[chromedp.Void](`document.documentElement.classList.contains("large-text")`),
		// A speech key (volume up, F5 by default) goes to the kiosk's speech.
		chromedp.KeyEvent(kb.F5))
	r.waitEvent(t, "session.speech", func(e event.Event) bool { return e.Data.(speechControl).Action == "volume_up" })

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

// Before the card step times out the screen offers more time, as often as
// configured (twice here): once taken with Enter on the keypad, once by
// touch; then no offer, and the step times out. Speech says the offer.
// Then the face step: the offer comes before its phase ends (the smile
// phase here, 6 s, or the match phase), Enter takes it, the phase gets
// its whole time again, and the verification is what it was: the camera
// shows a part of the video without a smile, so the step still ends
// without consent, only later.
func TestShopperMoreTime(t *testing.T) {
	cfg := shopperConfig(t, testmedia.Path(t, "franck.mp4")) + "card_timeout = \"12s\"\ntime_extensions = 2\nmore_time_warning = \"10s\"\n"
	// The face step: the part of the video the soak matches on (7 s),
	// then for the smile phase a part where he talks without smiling
	// (11.5-14.5 s, looped); a smile phase of 6 s.
	const smileTimeout = 6 * time.Second
	if !strings.Contains(cfg, `smile_timeout = "45s"`) || !strings.Contains(cfg, "[cardreader]\n") {
		t.Fatal("shopperConfig changed: no smile_timeout or [cardreader] to edit")
	}
	cfg = strings.Replace(cfg, `smile_timeout = "45s"`, fmt.Sprintf("smile_timeout = %q", smileTimeout.String()), 1)
	cfg = strings.Replace(cfg, "[cardreader]\n", "sim_cues = { face = \"7s\", smile = \"11.5s\" }\nsim_cue_length = \"3s\"\n[cardreader]\n", 1)
	var said []string
	var mu sync.Mutex
	r := startWith(t, cfg, func(o *Options) {
		o.Speak = func(ctx context.Context, lang, text string, _ int) error {
			mu.Lock()
			said = append(said, text)
			mu.Unlock()
			return nil
		}
	})
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	b := browsertest.Start(t)
	b.Run(t, 30*time.Second, chromedp.EmulateViewport(1080, 1920), chromedp.Navigate(r.base+"/"), screenIs("attract"))
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":true}`)
	if code, body := postJSON(t, r.base+"/api/sim/pay", `{"amount_minor":2350,"currency":"CNY"}`); code != 201 {
		t.Fatalf("demo till: %d %s", code, body)
	}
	start := time.Now()
	b.Run(t, 20*time.Second, screenIs("insert_card"), setLang("en"))
	r.waitEventWithin(t, 10*time.Second, "session.more_time", nil)
	b.Run(t, 10*time.Second,
		chromedp.Poll[chromedp.Void](`!document.getElementById("more-time").hidden && document.activeElement.id === "more-time-btn"`))
	b.Screenshot(t, "more-time-offer-en")
	for _, v := range b.Axe(t) {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("offer of more time: axe %s (%s): %s at %v", v.ID, v.Impact, v.Help, v.Nodes)
		}
	}
	b.Run(t, 10*time.Second, chromedp.KeyEvent(kb.Enter))
	r.waitEvent(t, "session.time_extended", nil)
	r.waitEventWithin(t, 10*time.Second, "session.more_time", nil)
	b.Run(t, 10*time.Second,
		chromedp.Poll[chromedp.Void](`!document.getElementById("more-time").hidden`),
		chromedp.Click(chromedp.CSS(`#more-time-btn`)))
	r.waitEvent(t, "session.time_extended", nil)
	extended := time.Now()
	e := r.waitEventWithin(t, 30*time.Second, "session.result", nil)
	took := time.Since(extended)
	st := e.Data.(session.Status)
	if st.Outcome == nil || st.Outcome.Approved || len(st.Outcome.Reasons) == 0 || st.Outcome.Reasons[0].Code != "timeout" {
		t.Fatalf("after the extensions: %+v, want a timeout", st.Outcome)
	}
	// Each extension gives the step its whole time again (12 s), and a
	// third offer never comes.
	if took < 11*time.Second {
		t.Fatalf("step ended %v after the second extension, want its full 12 s", took)
	}
	t.Logf("card step: %v in all, %v after the last extension", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	if code, _ := postJSON(t, r.base+"/api/session/more-time", `{}`); code != http.StatusConflict {
		t.Fatalf("more time with no offer: %d", code)
	}
	mu.Lock()
	n := 0
	for _, s := range said {
		if strings.Contains(s, "Do you need more time?") {
			n++
		}
	}
	if n < 1 {
		t.Fatalf("the offer was never spoken: %q", said)
	}
	saidBefore := len(said)
	mu.Unlock()

	// The face step.
	b.Run(t, 30*time.Second, screenIs("attract"))
	if code, body := postJSON(t, r.base+"/api/sim/pay", `{"amount_minor":2350,"currency":"CNY"}`); code != 201 {
		t.Fatalf("demo till: %d %s", code, body)
	}
	b.Run(t, 20*time.Second, screenIs("insert_card"), setLang("en"))
	// Speech ended with the last session: the key again.
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":false}`)
	time.Sleep(100 * time.Millisecond) // past the inputs' debounce
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":true}`)
	waitCond(t, "speech on again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range said[saidBefore:] {
			if strings.Contains(s, "Amount: 23.50 CNY") {
				return true
			}
		}
		return false
	})
	postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`)
	b.Run(t, 20*time.Second, screenIs("enter_password"))
	postJSON(t, r.base+"/api/session/password", `{"kind":"can","digits":"123456"}`)
	inFace := func(e event.Event) bool {
		o := e.Data.(session.TimeOffer)
		return o.Step == session.FaceMatch || o.Step == session.Smile
	}
	e = r.waitEventWithin(t, 60*time.Second, "session.more_time", inFace)
	offer := e.Data.(session.TimeOffer)
	b.Run(t, 10*time.Second,
		chromedp.Poll[chromedp.Void](`document.body.dataset.screen === "face" && !document.getElementById("more-time").hidden && document.activeElement.id === "more-time-btn"`))
	b.Screenshot(t, "more-time-offer-face-en")
	for _, v := range b.Axe(t) {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("offer of more time in the face step: axe %s (%s): %s at %v", v.ID, v.Impact, v.Help, v.Nodes)
		}
	}
	b.Run(t, 10*time.Second, chromedp.KeyEvent(kb.Enter))
	r.waitEvent(t, "session.time_extended", inFace)
	extended = time.Now()
	// The screen's countdown moved with the step's end.
	b.Run(t, 10*time.Second, chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`document.getElementById("more-time").hidden && window.kioskUI.status.progress && Date.parse(window.kioskUI.status.progress.until) > %d`, offer.Until.UnixMilli())))
	e = r.waitEventWithin(t, 60*time.Second, "session.result", nil)
	took = time.Since(extended)
	st = e.Data.(session.Status)
	if st.Outcome == nil || st.Outcome.Approved || len(st.Outcome.Reasons) == 0 {
		t.Fatalf("face step after more time: %+v, want a decline (the video shows no smile)", st.Outcome)
	}
	if code := st.Outcome.Reasons[0].Code; code != "no_consent" && code != "face_timeout" {
		t.Fatalf("face step after more time declined %q, want no_consent or face_timeout", code)
	}
	// Without the extension the step would have ended at the offer's
	// end; with it the phase had its whole time again.
	if late := time.Since(offer.Until); late < 2*time.Second || took < smileTimeout-time.Second {
		t.Fatalf("face step ended %v after the extension (%v after the offered end), want its phase's time again", took, late)
	}
	t.Logf("face step: offer in %s, step ended %v after the extension, declined %s",
		offer.Step, took.Round(time.Millisecond), st.Outcome.Reasons[0].Code)
	mu.Lock()
	n = 0
	for _, s := range said[saidBefore:] {
		if strings.Contains(s, "Do you need more time?") {
			n++
		}
	}
	face := append([]string(nil), said[saidBefore:]...)
	mu.Unlock()
	if n < 1 {
		t.Fatalf("the offer in the face step was never spoken: %q", face)
	}
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	b.Run(t, 10*time.Second, chromedp.Navigate("about:blank"))
}
