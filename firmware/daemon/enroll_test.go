package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kiosk/firmware/enroll"
	"kiosk/firmware/staff"
	"kiosk/internal/browsertest"
	"kiosk/provisioning/hubstore"
)

// A kiosk enrolled with the bank's hub over mutual TLS is opened: it
// wipes its key; staff enroll it again from the staff screen's API with a
// new token, reset the alarm, and it works again with the new key: the
// alarm (old key) and the reset (new key) both reach the real hub.
func TestStaffEnrollAfterTamper(t *testing.T) {
	bank := startBankSide(t, bankOptions{instance: "hub-t"})
	broker, store := bank.broker, bank.store
	token := func() string { return bank.token(t, "kiosk-reenroll") }
	idDir, keyFile := bank.enroll(t, "kiosk-reenroll")
	accounts := filepath.Join(t.TempDir(), "staff")
	if err := staff.Add(accounts, "anna", "246810"); err != nil {
		t.Fatal(err)
	}
	salt := filepath.Join(t.TempDir(), "doc-salt")
	if err := os.WriteFile(salt, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, fmt.Sprintf(`
[device]
id = "kiosk-reenroll"
mode = "simulation"
[http]
listen = "127.0.0.1:0"
staff_accounts_file = %q
[camera]
backend = "none"
[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[hub]
brokers = [%q]
ca_file = %q
cert_file = %q
key_file = %q
auth_cert = %q
retry_max = "1s"
[ecr]
listen = ""
[transactions]
state_dir = %q
device_key = %q
device_cert = %q
doc_salt_file = %q
`, accounts, broker.TLSURL(), filepath.Join(idDir, enroll.FileBrokerCA), filepath.Join(idDir, enroll.FileChain), keyFile,
		filepath.Join(idDir, enroll.FileAuthCert), filepath.Join(t.TempDir(), "state"), keyFile, filepath.Join(idDir, enroll.FileChain), salt))
	r.waitHealth(t, "hub ok over mutual TLS", func(h Health) bool { return h.Components["hub"].State == "ok" })
	oldFP := r.d.tx.signer.Fingerprint()

	code, body := postJSON(t, r.base+"/api/staff/login", `{"pin":"246810"}`)
	var login struct{ Token string }
	if code != 200 || json.Unmarshal([]byte(body), &login) != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	staffPost := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", r.base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Staff-Token", login.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Status)
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, string(buf[:n])
	}
	// A healthy kiosk is not enrolled again without force: its key stays.
	keyBefore, _ := os.ReadFile(keyFile)
	if code, body := staffPost("/api/staff/enroll", fmt.Sprintf(`{"hub":%q,"token":%q}`, broker.ProvisionURL(), token())); code != http.StatusConflict || !strings.Contains(body, "force") {
		t.Fatalf("enrollment of a healthy kiosk: %d %s", code, body)
	}
	if b, _ := os.ReadFile(keyFile); string(b) != string(keyBefore) || r.d.tx.signer.Fingerprint() != oldFP {
		t.Fatal("a refused enrollment touched the device key")
	}

	postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":true}`)
	waitCond(t, "key wiped", func() bool { _, err := os.Stat(keyFile); return os.IsNotExist(err) })
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":false}`)

	// Once the closed enclosure is seen, the reset is refused for the key.
	waitCond(t, "reset refused for re-enrollment", func() bool {
		code, body := staffPost("/api/staff/reset-tamper", `{}`)
		if code != http.StatusConflict {
			t.Fatalf("reset before re-enrollment: %d %s", code, body)
		}
		return strings.Contains(body, "enroll")
	})
	// Staff enroll again on the kiosk's own screen, in Chromium: a token
	// for another kiosk is refused with its reason, then theirs works.
	b := browsertest.Start(t)
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(r.base + "/"), setLang("en"), screenIs("out_of_service"),
		chromedp.Click(chromedp.CSS(`#staff-open`)), screenIs("staff")}
	for _, d := range "246810" {
		steps = append(steps, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#staff-pad button[data-d="%c"]`, d))))
	}
	enrollWith := func(tok string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Evaluate[chromedp.Void](`document.getElementById("staff-enroll-result").textContent = ""`),
			chromedp.SetValue(chromedp.CSS(`#enroll-hub`), broker.ProvisionURL()),
			chromedp.SetValue(chromedp.CSS(`#enroll-token`), tok),
			chromedp.Click(chromedp.CSS(`#staff-enroll-btn`)))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(`#staff-ok`)), chromedp.WaitVisible(chromedp.CSS(`#staff-panel`)),
		chromedp.Poll[chromedp.Void](`!document.getElementById("staff-enroll").hidden`),
		enrollWith("kt1.other."+strings.Repeat("A", 43)),
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-enroll-result").textContent.startsWith(window.kioskUI.cat["staff.enroll_failed"])`, chromedp.WithPollingTimeout(30*time.Second)),
		enrollWith(token()),
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-enroll-result").textContent === window.kioskUI.cat["staff.enrolled"]`, chromedp.WithPollingTimeout(60*time.Second)),
		// The typed token does not stay on the screen.
		chromedp.Poll[chromedp.Void](`document.getElementById("enroll-token").value === ""`))
	b.Run(t, 120*time.Second, steps...)
	if _, err := os.Stat(keyFile); err != nil {
		t.Fatalf("no new key after the screen's enrollment: %v", err)
	}
	if code, body := staffPost("/api/staff/reset-tamper", `{}`); code != 200 {
		t.Fatalf("reset after re-enrollment: %d %s", code, body)
	}
	if fp := r.d.tx.signer.Fingerprint(); fp == oldFP {
		t.Fatal("still the old key")
	}
	// The alarm (old key) and the reset (new key) at the real hub.
	waitCond(t, "alarm and reset at the hub", func() bool {
		items, err := hubstore.All(context.Background(), store, hubstore.ListQuery{Terminal: "kiosk-reenroll"}, 50)
		if err != nil {
			return false
		}
		got := map[string]bool{}
		for _, it := range items {
			got[it.Report.Service] = true
		}
		return got["tamper_alarm"] && got["tamper_reset"]
	})
}
