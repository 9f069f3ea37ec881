package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kiosk/firmware/staff"
	"kiosk/firmware/tamperlatch"
	"kiosk/internal/browsertest"
	"kiosk/provisioning/devkey"
)

// The staff screen after a tamper alarm: a person logs in with their own
// PIN, the screen offers enrollment; decommissioning is refused with what
// to do instead (the key that would sign it is gone).
func TestStaffScreenAfterTamperInChromium(t *testing.T) {
	dir := t.TempDir()
	if _, err := devkey.Create(dir, "", "kiosk-screen"); err != nil {
		t.Fatal(err)
	}
	accounts := filepath.Join(dir, "staff")
	if err := staff.Add(accounts, "anna", "246810"); err != nil {
		t.Fatal(err)
	}
	salt := filepath.Join(dir, "doc-salt")
	if err := os.WriteFile(salt, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	b := browsertest.Start(t)
	r := start(t, staffScreenConfig(dir, accounts, state))
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" })
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":true}`)
	waitCond(t, "key wiped", func() bool {
		_, err := os.Stat(filepath.Join(dir, "kiosk-screen.key"))
		return os.IsNotExist(err)
	})
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":false}`)
	b.Run(t, 30*time.Second, chromedp.Navigate(r.base+"/"), setLang("en"), screenIs("out_of_service"))
	steps := []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#staff-open`)), screenIs("staff")}
	for _, d := range "246810" {
		steps = append(steps, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#staff-pad button[data-d="%c"]`, d))))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(`#staff-ok`)), chromedp.WaitVisible(chromedp.CSS(`#staff-panel`)),
		// After the wipe the screen offers enrollment.
		chromedp.Poll[chromedp.Void](`!document.getElementById("staff-enroll").hidden`),
		chromedp.Click(chromedp.CSS(`#staff-decommission`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-decommission").textContent === window.kioskUI.cat["staff.decommission_confirm"]`),
		chromedp.Click(chromedp.CSS(`#staff-decommission`)),
		// Without its key the kiosk cannot sign the decommission event:
		// the screen says what to do instead.
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-decommission").textContent.includes("kioskctl provision revoke")`, chromedp.WithPollingTimeout(30*time.Second)),
		// Diagnostics still come after the wipe: a link to save the archive.
		chromedp.Click(chromedp.CSS(`#staff-diagnostics`)),
		chromedp.Poll[chromedp.Void](`(() => { const a = document.querySelector("#staff-diagnostics-result a"); return a !== null && a.download.startsWith("kioskd-diagnostics-kiosk-screen-") && a.textContent.includes("KiB"); })()`, chromedp.WithPollingTimeout(30*time.Second)))
	runSteps(t, b, "staff decommission refused", steps)
	b.Screenshot(t, "staff-decommission-after-tamper")
	if st, err := (tamperlatch.File{Path: filepath.Join(state, "tamper.json")}).Load(); err != nil || st.Decommissioned {
		t.Fatalf("latch %+v %v", st, err)
	}
}

// Decommissioning an intact kiosk from the staff screen: two taps, then
// the latch says decommissioned.
func TestStaffScreenDecommissionInChromium(t *testing.T) {
	dir := t.TempDir()
	if _, err := devkey.Create(dir, "", "kiosk-screen"); err != nil {
		t.Fatal(err)
	}
	accounts := filepath.Join(dir, "staff")
	if err := staff.Add(accounts, "anna", "246810"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	b := browsertest.Start(t)
	r := start(t, staffScreenConfig(dir, accounts, state))
	r.waitHealth(t, "hub ok", func(h Health) bool { return h.Components["hub"].State == "ok" })
	b.Run(t, 30*time.Second, chromedp.Navigate(r.base+"/"), setLang("en"))
	steps := []chromedp.Action[chromedp.Void]{chromedp.Click(chromedp.CSS(`#staff-open`)), screenIs("staff")}
	for _, d := range "246810" {
		steps = append(steps, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#staff-pad button[data-d="%c"]`, d))))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(`#staff-ok`)), chromedp.WaitVisible(chromedp.CSS(`#staff-panel`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-enroll").hidden`),
		chromedp.Click(chromedp.CSS(`#staff-decommission`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-decommission").textContent === window.kioskUI.cat["staff.decommission_confirm"]`),
		chromedp.Click(chromedp.CSS(`#staff-decommission`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("staff-decommission").dataset.done === "1"`, chromedp.WithPollingTimeout(30*time.Second)))
	runSteps(t, b, "staff decommission", steps)
	b.Screenshot(t, "staff-decommissioned")
	st, err := tamperlatch.File{Path: filepath.Join(state, "tamper.json")}.Load()
	if err != nil || !st.Decommissioned || !st.Wiped {
		t.Fatalf("latch %+v %v", st, err)
	}
}

func staffScreenConfig(dir, accounts, state string) string {
	return embeddedKiosk{id: "kiosk-screen", accounts: accounts, state: state, key: filepath.Join(dir, "kiosk-screen.key"), cert: filepath.Join(dir, "kiosk-screen.crt"), salt: filepath.Join(dir, "doc-salt")}.conf()
}
