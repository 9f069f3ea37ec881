package daemon

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"kiosk/drivers/gpio"
	"kiosk/firmware/event"
	"kiosk/firmware/session"
	"kiosk/firmware/speech"
	"kiosk/ui/shopper"
)

// utterance is one thing to say, in one language, at one volume level.
type utterance struct {
	lang, text string
	volume     int
}

// speechControl is the shopper's speech key on the keypad (EN 301 549
// §5.1.3.4 user control, §5.1.3.12 volume), sent by the page.
type speechControl struct {
	RequestID string `json:"request_id"`
	Action    string `json:"action"` // repeat, pause, volume_down, volume_up
}

// speechActions are the speechControl actions.
var speechActions = map[string]bool{"repeat": true, "pause": true, "volume_down": true, "volume_up": true}

// sessionSpeech takes a speech key pressed on the keypad (the page reads
// the keypad) for the running session and hands it to the speaker.
func (u *uiState) sessionSpeech(w http.ResponseWriter, r *http.Request) {
	var req speechControl
	if !decodeControl(w, r, &req) {
		return
	}
	if !speechActions[req.Action] {
		writeError(w, http.StatusBadRequest, "action must be repeat, pause, volume_down or volume_up")
		return
	}
	if _, ok := u.runningSession(w, req.RequestID); !ok {
		return
	}
	u.d.bus.Publish(event.Event{Source: "ui", Kind: "session.speech", Data: req})
	w.WriteHeader(http.StatusNoContent)
}

// speaker says one utterance at a time on its own goroutine; what it is
// saying can be cut short (pause, repeat, a new volume).
type speaker struct {
	queue chan utterance
	mu    sync.Mutex
	stop  context.CancelFunc // of the utterance being said
}

// interrupt drops what waits and cuts the current utterance short.
func (s *speaker) interrupt() {
	select {
	case <-s.queue:
	default:
	}
	s.mu.Lock()
	if s.stop != nil {
		s.stop()
	}
	s.mu.Unlock()
}

// say queues u, replacing what still waits, so speech never lags
// behind the screen; the current utterance finishes.
func (s *speaker) say(u utterance) {
	if u.text == "" {
		return
	}
	select {
	case <-s.queue: // drop the stale one
	default:
	}
	s.queue <- u
}

// run speaks until ctx ends.
func (s *speaker) run(ctx context.Context, speak func(ctx context.Context, lang, text string, volume int) error, warn func(error)) {
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-s.queue:
			uctx, stop := context.WithCancel(ctx)
			s.mu.Lock()
			s.stop = stop
			s.mu.Unlock()
			err := speak(uctx, u.lang, u.text, u.volume)
			s.mu.Lock()
			s.stop = nil
			s.mu.Unlock()
			cut := uctx.Err() != nil
			stop()
			if err != nil && !cut && !warned {
				warned = true // once per run: the screen still works
				warn(err)
			}
		}
	}
}

// runSpeech speaks each change of the session's step on the kiosk itself
// (espeak-ng, never through the page, so a reloaded page does not stop
// it) once speech is on: always (speech.mode "always") or from the
// moment the shopper presses the speech key or plugs a headset
// (speech.mode "key", the speech_key GPIO input) until the session ends.
// It speaks in the session's language and follows the shopper's switch.
// The shopper controls it from the keypad (speech.*_key): repeat the
// step, pause and resume, volume down and up, each said; the speech key
// pressed again repeats. The volume returns to speech.volume when the
// session ends.
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
		speak = func(ctx context.Context, lang, text string, volume int) error {
			return speech.Synth{Volume: volume}.Say(ctx, lang, text)
		}
	}
	// One speaker, owned here.
	sp := &speaker{queue: make(chan utterance, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sp.run(ctx, speak, func(err error) { log.Warn("speech output failed", "err", err) })
	}()
	defer func() { <-done }()

	sub := d.bus.Subscribe(ctx, 64)
	defer sub.Close()
	always := d.cfg.Speech.Mode == "always"
	defVolume := d.cfg.Speech.Volume
	if defVolume < 1 || defVolume > speech.Volumes {
		defVolume = speech.Volumes / 2
	}
	on, lang, reqID, volume, paused := always, def, "", defVolume, false
	say := func(text string) {
		if !paused {
			sp.say(utterance{lang, text, volume})
		}
	}
	// current is the step as it stands, with a standing offer of more time.
	current := func() string {
		st := d.session.Status()
		text := speech.StepText(cats[lang], st)
		if o := st.MoreTime; o != nil && o.Step == st.State {
			secs := int(time.Until(o.Until).Round(time.Second).Seconds())
			if t := cats[lang].Text("more_time.offer", "s", strconv.Itoa(max(0, secs))); t != "" {
				text += " " + t
			}
		}
		return text
	}
	keys := d.cfg.Speech.Keys()
	help := func() string {
		if len(keys) != len(speechActions) {
			return ""
		}
		return cats[lang].Text("speech.help", "repeat", keys["repeat"], "pause", keys["pause"], "down", keys["volume_down"], "up", keys["volume_up"])
	}
	control := func(action string) {
		switch action {
		case "repeat":
			paused = false
			sp.interrupt()
			say(current())
		case "pause":
			sp.interrupt()
			if paused {
				paused = false
				say(cats[lang].Text("speech.resumed") + " " + current())
				return
			}
			// Said, then silence until the shopper resumes.
			say(cats[lang].Text("speech.paused"))
			paused = true
		case "volume_down", "volume_up":
			if action == "volume_up" {
				volume = min(speech.Volumes, volume+1)
			} else {
				volume = max(1, volume-1)
			}
			sp.interrupt()
			sp.say(utterance{lang, speech.VolumeText(cats[lang], volume), volume})
		}
		log.Info("speech control", "action", action, "volume", volume, "paused", paused)
	}
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
						say(speech.StepText(cats[lang], v))
					}
					on, lang, reqID, volume, paused = always, def, "", defVolume, false
					continue
				}
				if v.Request != nil && v.Request.ID != reqID {
					reqID, lang = v.Request.ID, def
				}
				if on {
					say(speech.StepText(cats[lang], v))
				}
			case keyTyped:
				if on && v.RequestID == reqID {
					say(speech.DigitText(cats[lang]))
				}
			case session.TimeOffer:
				if on && ev.Kind == "session.more_time" {
					secs := int(time.Until(v.Until).Round(time.Second).Seconds())
					say(cats[lang].Text("more_time.offer", "s", strconv.Itoa(max(0, secs))))
				}
			case speechControl:
				if on && v.RequestID == reqID {
					control(v.Action)
				}
			case gpioEvent:
				if v.Role != string(gpio.SpeechKey) || !v.Active {
					continue
				}
				if on {
					// The speech key again: say the step again.
					if reqID != "" {
						control("repeat")
					}
					continue
				}
				on = true
				log.Info("speech on (speech key)")
				text := current()
				if h := help(); h != "" && reqID != "" {
					text = h + " " + text
				}
				say(text)
			case languageChange:
				if v.RequestID != reqID || v.Lang == lang {
					continue
				}
				if _, ok := cats[v.Lang]; !ok {
					continue
				}
				lang = v.Lang
				if on {
					say(current())
				}
			}
		}
	}
}
