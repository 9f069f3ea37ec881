// Package speech speaks the shopper's screen on the kiosk itself with
// espeak-ng (Debian's speech synthesizer), never through the page: what
// each session step says comes from the screen's own string catalogues,
// in the session's language (Simplified Chinese or English). Typed digits
// are announced only as "digit entered", never the digit; amounts and
// results in full. EN 301 549 §5.1.3.1 (speech output for closed ICT).
package speech

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"kiosk/firmware/session"
)

// Voices maps a catalogue language to its espeak-ng voice.
var voices = map[string]string{"zh-CN": "cmn", "en": "en-us"}

// Voice returns the espeak-ng voice for a language.
func Voice(lang string) (string, error) {
	v, ok := voices[lang]
	if !ok {
		return "", fmt.Errorf("speech: no voice for language %q", lang)
	}
	return v, nil
}

// Catalogue is one language's screen strings (shopper.Catalogue).
type Catalogue map[string]string

// Text is the catalogue's string for key with {name} placeholders
// replaced (vars: name, value, …); "" when the key is missing.
func (c Catalogue) Text(key string, vars ...string) string { return c.t(key, vars...) }

func (c Catalogue) t(key string, vars ...string) string {
	s, ok := c[key]
	if !ok {
		return ""
	}
	for i := 0; i+1 < len(vars); i += 2 {
		s = strings.ReplaceAll(s, "{"+vars[i]+"}", vars[i+1])
	}
	return s
}

// Amount says an amount in full: digits and the currency's code, which
// espeak-ng reads in either language (the screen's ¥ sign it does not).
func Amount(req *session.Request) string {
	if req == nil || req.Currency == "" {
		return ""
	}
	neg := req.AmountMinor < 0
	m := req.AmountMinor
	if neg {
		m = -m
	}
	s := strconv.FormatInt(m/100, 10) + "." + fmt.Sprintf("%02d", m%100) + " " + req.Currency
	if neg {
		s = "-" + s
	}
	return s
}

// StepText is what is spoken when the session enters st; "" for nothing.
func StepText(c Catalogue, st session.Status) string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	service := st.Request != nil && st.Request.Kind == "service"
	switch st.State {
	case session.Idle:
		add(c.t("attract.title"))
	case session.AwaitCard:
		if service {
			add(c.t("service.name", "service", st.Request.Service))
		} else {
			add(c.t("speech.amount", "amount", Amount(st.Request)))
		}
		add(c.t("insert.title"))
		add(c.t("insert.sub"))
	case session.AwaitPassword:
		add(c.t("code.title_can"))
		add(c.t("code.hint_can"))
		if st.PINRetriesLeft != nil {
			add(c.t("code.retries", "n", strconv.Itoa(*st.PINRetriesLeft)))
		}
	case session.ReadingChip:
		add(c.t("chip.title"))
	case session.FaceMatch:
		add(c.t("face.title"))
	case session.Smile:
		if service {
			add(c.t("smile.title_service"))
		} else {
			add(c.t("smile.title", "amount", Amount(st.Request)))
		}
	case session.Authorizing:
		add(c.t("auth.title"))
	case session.Result:
		if st.Outcome != nil && st.Outcome.Approved {
			add(c.t("result.approved"))
			add(c.t("result.approved_sub"))
		} else {
			add(c.t("result.declined"))
			seen := map[string]bool{}
			if st.Outcome != nil {
				for _, r := range st.Outcome.Reasons {
					s := c.t(r.Message)
					if s == "" {
						s = c.t("msg.technical")
					}
					if !seen[s] {
						seen[s] = true
						add(s)
					}
				}
			}
		}
	case session.RemoveCard:
		add(c.t("remove.title"))
	}
	return strings.Join(parts, " ")
}

// DigitText is what a typed digit says: never the digit.
func DigitText(c Catalogue) string { return c.t("speech.digit") }

// VolumeText says a volume level ("Volume 5 of 8").
func VolumeText(c Catalogue, level int) string {
	return c.t("speech.volume", "n", strconv.Itoa(level), "max", strconv.Itoa(Volumes))
}

// Synth runs espeak-ng. Binary defaults to "espeak-ng" on PATH.
// Volume is a level of Volumes (0: espeak-ng's default amplitude).
type Synth struct {
	Binary string
	Volume int
}

// Volumes is how many volume levels there are; level Volumes/2 is
// espeak-ng's default amplitude (100 of 0-200), each level a step of 25.
const Volumes = 8

// amplitude is espeak-ng's -a for a volume level.
func amplitude(level int) int {
	level = max(1, min(Volumes, level))
	return level * 200 / Volumes
}

// ErrNoSynth: espeak-ng is not installed (Debian package espeak-ng).
var ErrNoSynth = errors.New("speech: espeak-ng not installed")

func (s Synth) bin() (string, error) {
	b := s.Binary
	if b == "" {
		b = "espeak-ng"
	}
	p, err := exec.LookPath(b)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrNoSynth, err)
	}
	return p, nil
}

// Say speaks text on the kiosk's audio output.
func (s Synth) Say(ctx context.Context, lang, text string) error {
	return s.run(ctx, lang, text)
}

// Render writes text spoken in lang to a WAV file.
func (s Synth) Render(ctx context.Context, lang, text, wav string) error {
	return s.run(ctx, lang, text, "-w", wav)
}

func (s Synth) run(ctx context.Context, lang, text string, extra ...string) error {
	v, err := Voice(lang)
	if err != nil {
		return err
	}
	b, err := s.bin()
	if err != nil {
		return err
	}
	// The text goes on stdin, never on a command line others may read.
	args := []string{"-v", v, "-s", "150", "--stdin"}
	if s.Volume > 0 {
		args = append(args, "-a", strconv.Itoa(amplitude(s.Volume)))
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, b, args...)
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("speech: espeak-ng %s: %v: %s", v, err, strings.TrimSpace(string(out)))
	}
	return nil
}
