package speech

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/session"
	"kiosk/ui/shopper"
)

// soxStat returns a WAV file's length and RMS amplitude as sox measures
// them.
func soxStat(t *testing.T, wav string) (seconds, rms float64) {
	t.Helper()
	out, err := exec.Command("sox", wav, "-n", "stat").CombinedOutput()
	if err != nil {
		t.Fatalf("sox stat: %v: %s", err, out)
	}
	num := func(label string) float64 {
		m := regexp.MustCompile(label + `:\s+([0-9.eE+-]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("sox stat: no %q in %s", label, out)
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return num(`Length \(seconds\)`), num(`RMS\s+amplitude`)
}

// Every step of a payment and a branch service, in both languages: the
// text spoken (from the screen's catalogues, amounts in full, the
// digit never), rendered by espeak-ng to WAV and checked with sox: not
// silent, and as long as such a sentence takes.
func TestStepSpeechRenderedAndChecked(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatal("espeak-ng not installed: run `make deps`")
	}
	if _, err := exec.LookPath("sox"); err != nil {
		t.Fatal("sox not installed: run `make deps`")
	}
	pay := &session.Request{ID: "t1", Kind: "payment", AmountMinor: 2350, Currency: "CNY"}
	svc := &session.Request{ID: "t2", Kind: "service", Service: "open_account"}
	two := 2
	steps := []struct {
		name string
		st   session.Status
		want map[string]string // lang → text the speech must hold
	}{
		{"attract", session.Status{State: session.Idle}, map[string]string{"en": "Pay with your eID and a smile", "zh-CN": "用电子身份证和微笑付款"}},
		{"insert_card", session.Status{State: session.AwaitCard, Request: pay}, map[string]string{"en": "Amount: 23.50 CNY", "zh-CN": "金额：23.50 CNY"}},
		{"insert_card_service", session.Status{State: session.AwaitCard, Request: svc}, map[string]string{"en": "open_account", "zh-CN": "open_account"}},
		{"enter_password", session.Status{State: session.AwaitPassword, Request: pay}, map[string]string{"en": "card access number", "zh-CN": "卡片访问号码"}},
		{"wrong_pin", session.Status{State: session.AwaitPassword, Request: pay, PINRetriesLeft: &two}, map[string]string{"en": "2 attempts left", "zh-CN": "还剩 2 次机会"}},
		{"reading_chip", session.Status{State: session.ReadingChip, Request: pay}, map[string]string{"en": "", "zh-CN": "正在读取卡片"}},
		{"face_match", session.Status{State: session.FaceMatch, Request: pay}, map[string]string{"en": "", "zh-CN": "请看摄像头"}},
		{"smile", session.Status{State: session.Smile, Request: pay}, map[string]string{"en": "Smile to pay 23.50 CNY", "zh-CN": "微笑支付 23.50 CNY"}},
		{"authorizing", session.Status{State: session.Authorizing, Request: pay}, map[string]string{"en": "", "zh-CN": "正在处理付款"}},
		{"approved", session.Status{State: session.Result, Request: pay, Outcome: &session.Outcome{Approved: true}}, map[string]string{"en": "", "zh-CN": "付款成功"}},
		{"declined", session.Status{State: session.Result, Request: pay, Outcome: &session.Outcome{Reasons: []session.Reason{{Code: "face_mismatch", Message: "msg.face_mismatch"}}}}, map[string]string{"en": "did not match the photo", "zh-CN": "不符"}},
		{"remove_card", session.Status{State: session.RemoveCard, Request: pay, Outcome: &session.Outcome{Approved: true}}, map[string]string{"en": "", "zh-CN": "请取回您的卡片"}},
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, lang := range shopper.Languages() {
		m, err := shopper.Catalogue(lang)
		if err != nil {
			t.Fatal(err)
		}
		c := Catalogue(m)
		for _, s := range steps {
			text := StepText(c, s.st)
			if text == "" {
				t.Errorf("%s/%s: nothing spoken", s.name, lang)
				continue
			}
			if w := s.want[lang]; w != "" && !strings.Contains(text, w) {
				t.Errorf("%s/%s: %q lacks %q", s.name, lang, text, w)
			}
			if strings.Contains(text, "{") || strings.Contains(text, "msg.") {
				t.Errorf("%s/%s: untranslated: %q", s.name, lang, text)
			}
			wav := filepath.Join(dir, s.name+"-"+lang+".wav")
			if err := (Synth{}).Render(ctx, lang, text, wav); err != nil {
				t.Fatal(err)
			}
			secs, rms := soxStat(t, wav)
			// espeak-ng at 150 words a minute: a short sentence is over
			// half a second, none of these reaches 30 s.
			if secs < 0.5 || secs > 30 || rms < 0.01 {
				t.Errorf("%s/%s: %.2f s, RMS %.4f: want 0.5-30 s of sound (%q)", s.name, lang, secs, rms, text)
			}
			t.Logf("%s/%s: %.1f s, RMS %.3f: %s", s.name, lang, secs, rms, text)
		}
		// A typed digit: announced, never read out.
		d := DigitText(c)
		if d == "" || strings.ContainsAny(d, "0123456789") {
			t.Errorf("%s: digit announcement %q", lang, d)
		}
		wav := filepath.Join(dir, "digit-"+lang+".wav")
		if err := (Synth{}).Render(ctx, lang, d, wav); err != nil {
			t.Fatal(err)
		}
		if secs, rms := soxStat(t, wav); secs < 0.3 || secs > 5 || rms < 0.01 {
			t.Errorf("%s: digit announcement %.2f s, RMS %.4f", lang, secs, rms)
		}
	}
}

// The volume levels as the speaker plays them: one sentence rendered at
// levels 2, 4 (espeak-ng's default) and 8 and measured with sox; each
// step up is louder, the top level about four times level 2.
func TestVolumeLevelsRendered(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatal("espeak-ng not installed: run `make deps`")
	}
	if _, err := exec.LookPath("sox"); err != nil {
		t.Fatal("sox not installed: run `make deps`")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, lang := range shopper.Languages() {
		m, err := shopper.Catalogue(lang)
		if err != nil {
			t.Fatal(err)
		}
		c := Catalogue(m)
		var rms []float64
		for _, level := range []int{2, 4, 8} {
			text := VolumeText(c, level)
			if !strings.Contains(text, strconv.Itoa(level)) || !strings.Contains(text, strconv.Itoa(Volumes)) || strings.Contains(text, "{") {
				t.Fatalf("%s: volume text %q", lang, text)
			}
			// The same words at every level, so only the volume differs.
			wav := filepath.Join(dir, fmt.Sprintf("volume-%s-%d.wav", lang, level))
			if err := (Synth{Volume: level}).Render(ctx, lang, VolumeText(c, 4), wav); err != nil {
				t.Fatal(err)
			}
			secs, r := soxStat(t, wav)
			if secs < 0.5 || secs > 10 || r < 0.005 {
				t.Errorf("%s level %d: %.2f s, RMS %.4f", lang, level, secs, r)
			}
			rms = append(rms, r)
			t.Logf("%s level %d (%q): %.1f s, RMS %.4f", lang, level, text, secs, r)
		}
		if !(rms[1] > 1.5*rms[0] && rms[2] > 1.5*rms[1] && rms[2] > 3*rms[0]) {
			t.Errorf("%s: RMS at levels 2, 4, 8: %.4f %.4f %.4f, want each louder (×2 per doubling)", lang, rms[0], rms[1], rms[2])
		}
	}
	// Pause and resume are said too, in both languages.
	for _, lang := range shopper.Languages() {
		m, _ := shopper.Catalogue(lang)
		for _, k := range []string{"speech.paused", "speech.resumed", "speech.help"} {
			if Catalogue(m).Text(k) == "" {
				t.Errorf("%s: no %s", lang, k)
			}
		}
	}
}

func TestVoiceUnknownLanguage(t *testing.T) {
	if _, err := Voice("de"); err == nil {
		t.Fatal("a voice for a language the screen does not have")
	}
}
