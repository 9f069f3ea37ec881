package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/session"
	"kiosk/firmware/speech"
	"kiosk/internal/testmedia"
)

// Speech on the kiosk through a real session: silent until the shopper
// presses the speech key, then every step spoken in the session's
// language, switching when the shopper switches; the keypad's speech keys
// repeat, pause and resume, and set the volume (each said, the volume
// back to its default in the next session); each utterance is rendered
// by espeak-ng to WAV at its volume and checked with sox.
func TestSpeechFollowsSession(t *testing.T) {
	var mu sync.Mutex
	var said []utterance
	r := startWith(t, simConfig(t, testmedia.Path(t, "franck.mp4"))+"\n[policy]\nface_timeout = \"60s\"\n", func(o *Options) {
		o.Speak = func(ctx context.Context, lang, text string, volume int) error {
			mu.Lock()
			said = append(said, utterance{lang, text, volume})
			mu.Unlock()
			return nil
		}
	})
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	spoken := func() []utterance {
		mu.Lock()
		defer mu.Unlock()
		return append([]utterance(nil), said...)
	}
	waitSaid := func(lang, part string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, u := range spoken() {
				if u.lang == lang && strings.Contains(u.text, part) {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("never said %q in %s; said %v", part, lang, spoken())
	}
	if code, body := postJSON(t, r.base+"/api/sim/pay", `{"amount_minor":2350,"currency":"CNY"}`); code != 201 {
		t.Fatalf("demo till: %d %s", code, body)
	}
	e := r.waitEvent(t, "session.insert_card", nil)
	time.Sleep(300 * time.Millisecond)
	if s := spoken(); len(s) != 0 {
		t.Fatalf("spoke before the speech key: %v", s)
	}
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":true}`)
	waitSaid("zh-CN", "金额：23.50 CNY")
	// The shopper switches to English: the step is said again in English.
	id := e.Data.(session.Status).Request.ID
	if code, body := postJSON(t, r.base+"/api/session/language", fmt.Sprintf(`{"request_id":%q,"lang":"en"}`, id)); code != http.StatusOK {
		t.Fatalf("language: %d %s", code, body)
	}
	// A page left from another session cannot set this one's language.
	if code, _ := postJSON(t, r.base+"/api/session/language", `{"request_id":"not-this-one","lang":"zh-CN"}`); code != http.StatusConflict {
		t.Fatalf("language for another session: %d", code)
	}
	if code, _ := postJSON(t, r.base+"/api/session/language", fmt.Sprintf(`{"request_id":%q,"lang":"de"}`, id)); code != http.StatusBadRequest {
		t.Fatalf("unknown language: %d", code)
	}
	waitSaid("en", "Amount: 23.50 CNY")
	postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`)
	waitSaid("en", "Enter the card access number")
	// A digit typed on the pad (the page says only that one was typed).
	if code, body := postJSON(t, r.base+"/api/session/keyed", fmt.Sprintf(`{"request_id":%q}`, id)); code != http.StatusNoContent {
		t.Fatalf("keyed: %d %s", code, body)
	}
	if code, _ := postJSON(t, r.base+"/api/session/keyed", fmt.Sprintf(`{"request_id":%q,"digit":"7"}`, id)); code != http.StatusBadRequest {
		t.Fatalf("a keyed message carrying a digit: %d, want 400", code)
	}
	waitSaid("en", "Digit entered.")

	// The keypad's speech keys (the page passes them on).
	control := func(action string) {
		t.Helper()
		if code, body := postJSON(t, r.base+"/api/session/speech", fmt.Sprintf(`{"request_id":%q,"action":%q}`, id, action)); code != http.StatusNoContent {
			t.Fatalf("speech %s: %d %s", action, code, body)
		}
	}
	count := func(part string) (n int) {
		for _, u := range spoken() {
			if strings.Contains(u.text, part) {
				n++
			}
		}
		return n
	}
	if code, _ := postJSON(t, r.base+"/api/session/speech", fmt.Sprintf(`{"request_id":%q,"action":"shout"}`, id)); code != http.StatusBadRequest {
		t.Fatalf("unknown speech action: %d", code)
	}
	if code, _ := postJSON(t, r.base+"/api/session/speech", `{"request_id":"not-this-one","action":"repeat"}`); code != http.StatusConflict {
		t.Fatalf("speech control for another session: %d", code)
	}
	before := count("Enter the card access number")
	control("repeat")
	waitCond(t, "the step repeated", func() bool { return count("Enter the card access number") > before })
	control("volume_up")
	waitSaid("en", "Volume 5 of 8.")
	control("pause")
	waitSaid("en", "Speech paused.")
	// Paused: a typed digit is not said.
	n := len(spoken())
	postJSON(t, r.base+"/api/session/keyed", fmt.Sprintf(`{"request_id":%q}`, id))
	time.Sleep(300 * time.Millisecond)
	if s := spoken(); len(s) != n {
		t.Fatalf("spoke while paused: %v", s[n:])
	}
	control("pause")
	waitSaid("en", "Speech resumed. Enter the card access number")
	// The speech key pressed again repeats, too.
	before = count("Enter the card access number")
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":false}`)
	time.Sleep(100 * time.Millisecond) // past the inputs' debounce
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":true}`)
	waitCond(t, "the step repeated by the speech key", func() bool { return count("Enter the card access number") > before })
	for _, u := range spoken()[n:] {
		if u.volume != 5 {
			t.Fatalf("after volume up %q was said at %d, want 5", u.text, u.volume)
		}
	}
	control("volume_down")
	control("volume_down")
	waitSaid("en", "Volume 3 of 8.")
	control("volume_up") // back to the default 4 for what follows

	postJSON(t, r.base+"/api/session/password", `{"kind":"can","digits":"123456"}`)
	waitSaid("en", "Look at the camera")
	r.waitEventWithin(t, 90*time.Second, "session.result", nil)
	waitSaid("en", "Payment")
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	r.waitEvent(t, "session.idle", nil)
	// The end of the session is said too, in its language (the speaker
	// runs behind the bus: wait for it before counting).
	waitSaid("en", "Pay with your eID and a smile")
	for _, u := range spoken() {
		if strings.Contains(u.text, "123456") {
			t.Fatalf("the CAN was spoken: %q", u.text)
		}
	}
	// What was said, as the kiosk's speaker would say it: rendered by
	// espeak-ng and measured by sox.
	dir := t.TempDir()
	s := spoken()
	for i, u := range s {
		wav := filepath.Join(dir, fmt.Sprintf("%02d.wav", i))
		if err := (speech.Synth{Volume: u.volume}).Render(context.Background(), u.lang, u.text, wav); err != nil {
			t.Fatal(err)
		}
		secs, rms := soxStatD(t, wav)
		if secs < 0.5 || secs > 30 || rms < 0.01 {
			t.Errorf("utterance %q: %.2f s, RMS %.4f", u.text, secs, rms)
		}
		t.Logf("%s %.1f s, volume %d, RMS %.3f: %s", u.lang, secs, u.volume, rms, u.text)
	}
	// The next session starts silent again.
	if code, body := postJSON(t, r.base+"/api/sim/pay", `{"amount_minor":100,"currency":"CNY"}`); code != 201 {
		t.Fatalf("demo till: %d %s", code, body)
	}
	r.waitEvent(t, "session.insert_card", nil)
	time.Sleep(300 * time.Millisecond)
	if n := len(spoken()); n != len(s) {
		t.Fatalf("the next session spoke without the key: %v", spoken()[len(s):])
	}
	// ... and at the default volume again (§5.1.3.13 volume reset).
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":false}`)
	time.Sleep(100 * time.Millisecond)
	postJSON(t, r.base+"/api/sim/gpio", `{"role":"speech_key","active":true}`)
	waitCond(t, "speech in the next session", func() bool { return len(spoken()) > len(s) })
	if u := spoken()[len(s)]; u.volume != 4 || !strings.Contains(u.text, "F2") {
		t.Fatalf("the next session began at volume %d with %q, want 4 and the keys said", u.volume, u.text)
	}
	postJSON(t, r.base+"/api/session/cancel", `{}`)
}

// soxStatD is sox's length and RMS amplitude of a WAV file.
func soxStatD(t *testing.T, wav string) (seconds, rms float64) {
	t.Helper()
	out, err := exec.Command("sox", wav, "-n", "stat").CombinedOutput()
	if err != nil {
		t.Fatalf("sox stat: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch strings.Join(strings.Fields(k), " ") {
		case "Length (seconds)":
			seconds = f
		case "RMS amplitude":
			rms = f
		}
	}
	return seconds, rms
}
