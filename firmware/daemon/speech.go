package daemon

import (
	"context"
	"strconv"
	"time"

	"kiosk/drivers/gpio"
	"kiosk/firmware/session"
	"kiosk/firmware/speech"
	"kiosk/ui/shopper"
)

// utterance is one thing to say, in one language.
type utterance struct{ lang, text string }

// runSpeech speaks each change of the session's step on the kiosk itself
// (espeak-ng, never through the page, so a reloaded page does not stop
// it) once speech is on: always (speech.mode "always") or from the
// moment the shopper presses the speech key or plugs a headset
// (speech.mode "key", the speech_key GPIO input) until the session ends.
// It speaks in the session's language and follows the shopper's switch.
func (d *Daemon) runSpeech(ctx context.Context) error {
	log := d.log.With("component", "speech")
	cats := map[string]speech.Catalogue{}
	for _, l := range shopper.Languages() {
		m, err := shopper.Catalogue(l)
		if err != nil {
			return err
		}
		cats[l] = speech.Catalogue(m)
	}
	def := shopper.Languages()[0]
	speak := d.opts.Speak
	if speak == nil {
		speak = speech.Synth{}.Say
	}
	// One speaker, owned here: a newer step replaces what is still
	// waiting to be said, so speech never lags behind the screen.
	queue := make(chan utterance, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		warned := false
		for {
			select {
			case <-ctx.Done():
				return
			case u := <-queue:
				if err := speak(ctx, u.lang, u.text); err != nil && ctx.Err() == nil && !warned {
					warned = true // once per run: the screen still works
					log.Warn("speech output failed", "err", err)
				}
			}
		}
	}()
	defer func() { <-done }()
	say := func(lang, text string) {
		if text == "" {
			return
		}
		select {
		case <-queue: // drop the stale one
		default:
		}
		queue <- utterance{lang, text}
	}

	sub := d.bus.Subscribe(ctx, 64)
	defer sub.Close()
	always := d.cfg.Speech.Mode == "always"
	on, lang, reqID := always, def, ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil
			}
			switch v := ev.Data.(type) {
			case session.Status:
				if ev.Kind != "session."+string(v.State) {
					continue
				}
				if v.State == session.Idle {
					if reqID != "" && on {
						say(lang, speech.StepText(cats[lang], v))
					}
					on, lang, reqID = always, def, ""
					continue
				}
				if v.Request != nil && v.Request.ID != reqID {
					reqID, lang = v.Request.ID, def
				}
				if on {
					say(lang, speech.StepText(cats[lang], v))
				}
			case keyTyped:
				if on && v.RequestID == reqID {
					say(lang, speech.DigitText(cats[lang]))
				}
			case session.TimeOffer:
				if on && ev.Kind == "session.more_time" {
					secs := int(time.Until(v.Until).Round(time.Second).Seconds())
					say(lang, cats[lang].Text("more_time.offer", "s", strconv.Itoa(secs)))
				}
			case gpioEvent:
				if v.Role != string(gpio.SpeechKey) || !v.Active || on {
					continue
				}
				on = true
				log.Info("speech on (speech key)")
				st := d.session.Status()
				say(lang, speech.StepText(cats[lang], st))
			case languageChange:
				if v.RequestID != reqID || v.Lang == lang {
					continue
				}
				if _, ok := cats[v.Lang]; !ok {
					continue
				}
				lang = v.Lang
				if on {
					say(lang, speech.StepText(cats[lang], d.session.Status()))
				}
			}
		}
	}
}
