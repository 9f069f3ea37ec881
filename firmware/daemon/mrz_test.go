package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/ecr"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/internal/browsertest"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/issuer"
)

// The MRZ of the BAC-only test passport (simKiosk's holder).
const (
	mrzDocNumber = "C01X00T47"
	mrzBirth     = "640812"
)

// typeOn clicks the keys of s on the shopper's pad (letters on the
// letter keys, digits on the number pad).
func typeOn(s string) []chromedp.Action[chromedp.Void] {
	var out []chromedp.Action[chromedp.Void]
	for _, c := range s {
		pad := "#pad"
		if c >= 'A' && c <= 'Z' {
			pad = "#letters"
		}
		out = append(out, chromedp.Click(chromedp.CSS(fmt.Sprintf(`%s button[data-d="%c"]`, pad, c))))
	}
	return out
}

func checkDigit(t *testing.T, s string) string {
	t.Helper()
	d, err := lds.CheckDigit(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(d)
}

// A BAC-only passport paid for through MRZ entry on the shopper's PIN pad,
// end to end on the real stack: pcscd with a vpcd reader and the Go chip,
// real Chromium, the test video through the face step. The shopper first
// types a CAN, which the chip has no use for: the pad turns to MRZ entry.
// A wrong check digit is caught at its field as it is typed. Afterwards
// neither the kiosk's log nor its state directory holds the MRZ typed.
func TestShopperPaysWithMRZOverPCSC(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	srv := pcscdtest.Start(t, 1)
	expiry := time.Now().AddDate(5, 0, 0).Format("060102")
	cfg, dir := simConfigWith(t, video, func(o *issuer.Options) {
		o.BACOnly = true
		o.DocNumber, o.Birth, o.Expiry = mrzDocNumber, mrzBirth, expiry
	}, "")
	for _, c := range []struct{ old, new string }{
		{"[cardreader]\nbackend = \"sim\"\n", "[cardreader]\nbackend = \"pcsc\"\nretry_min = \"50ms\"\nretry_max = \"500ms\"\n"},
		{fmt.Sprintf("sim_card = %q\n", filepath.Join(dir, "card")), ""},
	} {
		if !strings.Contains(cfg, c.old) {
			t.Fatalf("simConfig no longer has %q", c.old)
		}
		cfg = strings.Replace(cfg, c.old, c.new, 1)
	}
	r := start(t, shopperConfigFrom(t, cfg))
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })

	img, err := cardimage.Load(filepath.Join(dir, "card"))
	if err != nil {
		t.Fatal(err)
	}
	// The chip logs one line per APDU (never data) into the kiosk's log.
	chip, err := vcard.New(img, vcard.Options{Logger: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}

	// The kiosk judges each typed field before any chip is asked, and
	// names the one that is wrong.
	for _, tc := range []struct{ body, field, problem string }{
		{fmt.Sprintf(`{"kind":"mrz","document_number":%q,"document_number_check":"%d","birth":"640812","birth_check":"%s","expiry":%q,"expiry_check":"%s"}`,
			mrzDocNumber, (int(checkDigit(t, mrzDocNumber)[0]-'0')+1)%10, checkDigit(t, mrzBirth), expiry, checkDigit(t, expiry)), "document_number", "check_digit"},
		{fmt.Sprintf(`{"kind":"mrz","document_number":%q,"document_number_check":%q,"birth":"641312","birth_check":"0","expiry":%q,"expiry_check":%q}`,
			mrzDocNumber, checkDigit(t, mrzDocNumber), expiry, checkDigit(t, expiry)), "birth", "format"},
	} {
		code, body := postJSON(t, r.base+"/api/session/password", tc.body)
		if code != 400 || !strings.Contains(body, `"field":"`+tc.field+`"`) || !strings.Contains(body, `"problem":"`+tc.problem+`"`) {
			t.Fatalf("bad MRZ answered %d %s, want 400 naming %s %s", code, body, tc.field, tc.problem)
		}
		if strings.Contains(body, mrzDocNumber) || strings.Contains(body, mrzBirth) {
			t.Fatalf("the answer echoes the MRZ: %s", body)
		}
	}

	b := browsertest.Start(t)
	b.Run(t, 30*time.Second,
		chromedp.EmulateViewport(1080, 1920, chromedp.EmulateTouch),
		chromedp.Navigate(r.base+"/"),
		setLang("en"),
		screenIs("attract"),
	)
	// The till starts the payment over its API, as a cashier's would.
	id := createPayment(t, r, "mrz-1", 1250)
	b.Run(t, 20*time.Second, screenIs("insert_card"))

	// The passport goes on the reader: the Go chip connects to vpcd.
	ctx, cancel := context.WithCancel(context.Background())
	cardDone := make(chan error, 1)
	go func() { cardDone <- vpcd.Serve(ctx, srv.VPCDAddr(0), chip, nil) }()
	stopCard := sync.OnceFunc(func() { cancel(); <-cardDone })
	defer stopCard()

	// A CAN first, as on the pad's default: the chip offers BAC only.
	runSteps(t, b, "type a CAN", append(append([]chromedp.Action[chromedp.Void]{screenIs("enter_password")}, typeOn("123456")...),
		chromedp.Click(chromedp.CSS(`#key-ok`)),
		chromedp.Poll[chromedp.Void](`window.kioskUI.kind === "mrz" && document.body.dataset.screen === "enter_password" && !document.getElementById("mrz").hidden`, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Poll[chromedp.Void](`document.getElementById("code-hint").textContent.includes("machine-readable zone")`),
	))
	b.Screenshot(t, "shopper-mrz-asked")
	// The till sees that the shopper is typing the MRZ.
	if p := ecrGet(t, r, id); p.State != "enter_password" || !p.NeedsMRZ {
		t.Fatalf("the till sees %+v, want enter_password with needs_mrz", p)
	}

	docCD := checkDigit(t, mrzDocNumber)
	wrongCD := fmt.Sprint((int(docCD[0]-'0') + 3) % 10)
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Poll[chromedp.Void](`!document.getElementById("letters").hidden`),
	}
	steps = append(steps, typeOn(mrzDocNumber)...)
	steps = append(steps, chromedp.Click(chromedp.CSS(`#key-ok`)))
	// A wrong check digit: refused at its field, as typed.
	steps = append(steps, typeOn(wrongCD)...)
	steps = append(steps,
		chromedp.Poll[chromedp.Void](`document.getElementById("mrz-err-document_number").textContent.includes("does not match")`),
		chromedp.Poll[chromedp.Void](`document.getElementById("mrz-cd-document_number").textContent === ""`),
	)
	steps = append(steps, typeOn(docCD)...)
	steps = append(steps,
		chromedp.Poll[chromedp.Void](`document.getElementById("mrz-err-document_number").textContent === "" && document.querySelector('.mrz-row[data-field="birth"]').classList.contains("now")`),
		chromedp.Poll[chromedp.Void](`document.getElementById("letters").hidden`),
	)
	steps = append(steps, typeOn(mrzBirth+checkDigit(t, mrzBirth))...)
	steps = append(steps, typeOn(expiry+checkDigit(t, expiry))...)
	steps = append(steps,
		chromedp.Poll[chromedp.Void](`document.querySelectorAll(".mrz-row.done").length === 3 && !document.getElementById("key-ok").disabled`),
	)
	runSteps(t, b, "type the MRZ", steps)
	b.Screenshot(t, "shopper-mrz-typed")
	runSteps(t, b, "send the MRZ", []chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS(`#key-ok`)),
		// Nothing typed stays in the page once sent.
		chromedp.Poll[chromedp.Void](`window.kioskUI.mrz === null && window.kioskUI.digits === ""`),
	})
	b.Run(t, 60*time.Second, screenIs("face"))
	b.Run(t, 90*time.Second,
		chromedp.Poll[chromedp.Void](`document.body.dataset.screen === "result" || document.body.dataset.screen === "remove_card"`, chromedp.WithPollingTimeout(80*time.Second)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#result-icon.ok") !== null`),
	)
	b.Screenshot(t, "shopper-mrz-approved")
	if p := ecrGet(t, r, id); p.Status != "approved" {
		t.Fatalf("the till sees %+v, want approved", p)
	}
	b.Run(t, 30*time.Second, screenIs("remove_card"))
	stopCard()
	b.Run(t, 30*time.Second, screenIs("attract"))
	b.Run(t, 10*time.Second, chromedp.Navigate("about:blank"))
	r.stop(t)

	// The record says how the chip was opened; nothing kept holds the MRZ.
	var kept bytes.Buffer
	err = filepath.WalkDir(filepath.Join(dir, "state"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		kept.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	logged := r.log.String()
	if !strings.Contains(logged, "BAC") {
		t.Fatalf("the log does not say the chip was opened with BAC")
	}
	for what, text := range map[string]string{"log": logged, "state directory": kept.String()} {
		for _, secret := range []string{mrzDocNumber, mrzBirth} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s holds %q", what, secret)
			}
		}
	}
	if c := b.Console(); len(c) > 0 {
		t.Fatalf("console errors: %v", c)
	}
	if n := b.NonLoopbackRequests(); len(n) > 0 {
		t.Fatalf("requests leaving loopback: %v", n)
	}
}

// ecrGet is the till's look-up of a payment.
func ecrGet(t *testing.T, r *running, id string) ecr.Payment {
	t.Helper()
	token, err := os.ReadFile(r.d.cfg.ECR.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+r.d.ECRAddr()+"/v1/payments/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p ecr.Payment
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("till look-up of %s: %d %v", id, resp.StatusCode, err)
	}
	return p
}

// The MRZ pad in landscape and in Chinese: the shopper picks MRZ entry
// by hand, a wrong check digit is refused in the screen's language at its
// field, and every key, the OK key included, is on screen without
// scrolling.
func TestMRZPadLandscapeChinese(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	r := start(t, shopperConfig(t, video))
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	b := browsertest.Start(t)
	b.Run(t, 30*time.Second,
		chromedp.EmulateViewport(1920, 1080, chromedp.EmulateTouch),
		chromedp.Navigate(r.base+"/"),
		setLang("zh-CN"),
		screenIs("attract"),
	)
	id := createPayment(t, r, "mrz-zh", 990)
	if code, body := postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`); code != 200 {
		t.Fatalf("insert: %d %s", code, body)
	}
	wrong := fmt.Sprint((int(checkDigit(t, mrzDocNumber)[0]-'0') + 1) % 10)
	steps := []chromedp.Action[chromedp.Void]{screenIs("enter_password"), chromedp.Click(chromedp.CSS(`#kind-mrz`)),
		chromedp.Poll[chromedp.Void](`!document.getElementById("mrz").hidden && !document.getElementById("letters").hidden`)}
	steps = append(steps, typeOn(mrzDocNumber)...)
	steps = append(steps, chromedp.Click(chromedp.CSS(`#key-ok`)))
	steps = append(steps, typeOn(wrong)...)
	steps = append(steps,
		chromedp.Poll[chromedp.Void](`document.getElementById("mrz-err-document_number").textContent === window.kioskUI.cat["mrz.doc_check"] && window.kioskUI.cat["mrz.doc_check"].includes("校验位")`),
		chromedp.Poll[chromedp.Void](`document.getElementById("mrz-cd-document_number").textContent === ""`),
	)
	steps = append(steps, typeOn(checkDigit(t, mrzDocNumber)+"641312")...)
	// A month 13 is refused before its check digit is asked.
	steps = append(steps,
		chromedp.Poll[chromedp.Void](`document.getElementById("mrz-err-birth").textContent === window.kioskUI.cat["mrz.date_format"]`),
		chromedp.Poll[chromedp.Void](`(() => { for (const el of document.querySelectorAll("#scr-enter_password .key:not([hidden]), #kind-mrz")) {
			if (el.offsetParent === null) continue;
			const r = el.getBoundingClientRect();
			if (r.bottom > innerHeight || r.right > innerWidth || r.top < 0) return false; }
			return true; })()`),
	)
	runSteps(t, b, "MRZ pad in zh-CN landscape", steps)
	b.Screenshot(t, "shopper-mrz-zh-landscape")
	if p := ecrGet(t, r, id); p.State != "enter_password" {
		t.Fatalf("the till sees %+v", p)
	}
	b.Run(t, 20*time.Second, chromedp.Click(chromedp.CSS(`#cancel`)),
		chromedp.Poll[chromedp.Void](`document.body.dataset.screen === "result" || document.body.dataset.screen === "remove_card"`))
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	b.Run(t, 30*time.Second, screenIs("attract"))
	b.Run(t, 10*time.Second, chromedp.Navigate("about:blank"))
	if c := b.Console(); len(c) > 0 {
		t.Fatalf("console errors: %v", c)
	}
}
