package daemon

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"kiosk/drivers/gpio"
	"kiosk/firmware/event"
	"kiosk/firmware/feedback"
	"kiosk/firmware/hub"
	"kiosk/firmware/session"
	"kiosk/firmware/staff"
	"kiosk/ui/shopper"
	"kiosk/ui/statuspage"
)

// Preview stream parameters: 480 px wide is enough for a face guide on
// the kiosk's screen; 15 fps keeps encoding well under a fifth of a core.
const (
	previewWidth    = 480
	previewQuality  = 70
	previewInterval = time.Second / 15
)

// Staff login limits (the lockout: package staff).
const (
	staffSessionTTL = 15 * time.Minute
	lastErrorsKept  = 50
)

// uiState is what the shopper and staff screens share: the staff PIN and
// logins, and the recent errors shown to staff. It serves /api/staff/ and
// is found through the router by runFeedback (feedback.go), which feeds
// it, so the Daemon needs no field for it.
type uiState struct {
	d      *Daemon
	pinSum [32]byte // SHA-256 of the shared PIN (simulation); compared in constant time
	// accounts are the per-person staff accounts (http.staff_accounts_file).
	accounts staff.Accounts
	pinSet   bool // a shared PIN or accounts: the staff screen is enabled
	pinErr   string
	mux      *http.ServeMux

	mu      sync.Mutex
	tokens  map[string]staffSession // login token → who, until when
	lockout *staff.Lockout          // persisted in the state directory
	errors  []staffError
	// loginMu lets one PIN check run at a time (argon2id is slow), outside
	// mu, so concurrent guesses cannot race past the lockout.
	loginMu sync.Mutex
	service feedback.Service
	// The shopper's language and the face step's start, kept for the
	// session they belong to so a page loaded mid-session (the display
	// restarts its browser) resumes in the shopper's language and with
	// the face step's time left.
	lang      string
	langFor   string // request ID the language was chosen in
	faceSince time.Time
	faceFor   string // request ID of faceSince
}

type staffError struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// registerUI mounts the screens kioskd serves on loopback: the shopper
// screen at "/", the developer status page at "/status/", and their APIs.
func (d *Daemon) registerUI(mux *http.ServeMux) {
	u := &uiState{d: d, tokens: map[string]staffSession{}}
	lo, err := staff.OpenLockout(filepath.Join(d.cfg.Tx.StateDir, "staff-lockout.json"))
	if err != nil {
		d.log.Error("staff lockout state unreadable: starting locked-ready (the next wrong PIN locks)", "err", err)
	}
	u.lockout = lo
	u.loadPIN()
	mux.Handle("GET /", shopper.Handler())
	mux.Handle("GET /status", http.RedirectHandler("/status/", http.StatusFound))
	mux.Handle("GET /status/", http.StripPrefix("/status", statuspage.Handler()))
	mux.HandleFunc("GET /api/camera/frame.jpg", d.serveFrame)
	mux.HandleFunc("GET /api/camera/preview.mjpg", d.servePreview)
	mux.HandleFunc("GET /api/ui/state", u.serveState)
	mux.HandleFunc("POST /api/session/language", u.setLanguage)
	mux.HandleFunc("POST /api/session/keyed", u.keyed)
	mux.HandleFunc("POST /api/session/speech", u.sessionSpeech)

	u.mux = http.NewServeMux()
	u.mux.HandleFunc("POST /api/staff/login", u.login)
	u.mux.HandleFunc("POST /api/staff/logout", u.staffOnly(u.logout))
	u.mux.HandleFunc("GET /api/staff/status", u.staffOnly(u.status))
	u.mux.HandleFunc("POST /api/staff/maintenance", u.staffOnly(u.maintenance))
	u.mux.HandleFunc("POST /api/staff/reset-tamper", u.staffOnly(u.resetTamper))
	u.mux.HandleFunc("POST /api/staff/decommission", u.staffOnly(u.decommission))
	u.mux.HandleFunc("POST /api/staff/enroll", u.staffOnly(u.enroll))
	u.mux.HandleFunc("POST /api/staff/diagnostics", u.staffOnly(u.diagnostics))
	mux.Handle("GET /api/staff/", u)
	mux.Handle("POST /api/staff/", u)
}

func (u *uiState) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

// staffSession is one staff login.
type staffSession struct {
	who string
	exp time.Time
}

// who is the account of the request's staff session.
func (u *uiState) who(r *http.Request) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tokens[r.Header.Get("X-Staff-Token")].who
}

// loadPIN reads the staff PIN file. A missing or malformed file disables
// the staff screen (reported in its login answer), it does not stop the
// kiosk. The PIN itself is never logged.
func (u *uiState) loadPIN() {
	if af := u.d.cfg.HTTP.StaffAccountsFile; af != "" {
		as, err := staff.Load(af)
		if err != nil {
			u.pinErr = err.Error()
			u.d.log.Error("staff screen disabled", "err", u.pinErr)
			return
		}
		u.accounts, u.pinSet = as, true
		return
	}
	f := u.d.cfg.HTTP.StaffPINFile
	if f == "" {
		u.pinErr = "no staff PIN configured (http.staff_pin_file)"
		return
	}
	// Like ssh with its keys: a PIN others may read is no secret.
	if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o077 != 0 {
		u.pinErr = fmt.Sprintf("staff PIN file %s is readable by group or others (mode %v): chmod 600", f, fi.Mode().Perm())
		u.d.log.Error("staff screen disabled", "err", u.pinErr)
		return
	}
	b, err := os.ReadFile(f)
	if err != nil {
		u.pinErr = fmt.Sprintf("staff PIN file: %v", err)
		u.d.log.Error("staff screen disabled", "err", u.pinErr)
		return
	}
	pin := strings.TrimSpace(string(b))
	clear(b)
	if len(pin) < 4 || len(pin) > 12 || strings.Trim(pin, "0123456789") != "" {
		u.pinErr = "staff PIN file must hold 4-12 digits"
		u.d.log.Error("staff screen disabled", "file", f, "err", u.pinErr)
		return
	}
	u.pinSum, u.pinSet = sha256.Sum256([]byte(pin)), true
}

// uiScreenState is the screen's starting point before the event stream.
type uiScreenState struct {
	Session       *session.Status      `json:"session"`
	Service       feedback.Service     `json:"service"`
	Components    map[string]Component `json:"components"`
	FaceTimeoutMS int64                `json:"face_timeout_ms"`
	// Merchant is the shop's name (transactions.merchant), shown with the amount.
	Merchant string `json:"merchant,omitempty"`
	// SmileTimeoutMS bounds the smile step from its start (the countdown).
	SmileTimeoutMS int64    `json:"smile_timeout_ms"`
	Languages      []string `json:"languages"`
	StaffEnabled   bool     `json:"staff_enabled"`
	// NotReady is why a session could not start now ("camera_down", …),
	// empty when it could: the till's API refuses with the same reason.
	NotReady string `json:"not_ready,omitempty"`
	// Language is the running session's language: the one its shopper
	// chose, else the default (Languages[0]).
	Language string `json:"language"`
	// FaceSince is when the running session's face step began (the
	// countdown's origin), absent outside the face steps.
	FaceSince *time.Time `json:"face_since,omitempty"`
	// SpeechKeys are the keypad's speech control keys by action
	// (speech.*_key): the page sends them to POST /api/session/speech.
	SpeechKeys map[string]string `json:"speech_keys,omitempty"`
}

// languageChange is published when the shopper switches language, so
// every follower of the session (a second page, speech) switches too.
type languageChange struct {
	RequestID string `json:"request_id"`
	Lang      string `json:"lang"`
}

// setLanguage records the shopper's language for the running session.
// The page names the session it was showing: a page left over from the
// last shopper cannot set the next one's language.
func (u *uiState) setLanguage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RequestID string `json:"request_id"`
		Lang      string `json:"lang"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	if !slices.Contains(shopper.Languages(), req.Lang) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("language %q: not one of %v", req.Lang, shopper.Languages()))
		return
	}
	if _, ok := u.runningSession(w, req.RequestID); !ok {
		return
	}
	u.mu.Lock()
	u.lang, u.langFor = req.Lang, req.RequestID
	u.mu.Unlock()
	u.d.bus.Publish(event.Event{Source: "ui", Kind: "session.language", Data: languageChange{RequestID: req.RequestID, Lang: req.Lang}})
	writeJSON(w, http.StatusOK, languageChange{RequestID: req.RequestID, Lang: req.Lang})
}

// keyTyped is published when the shopper typed a character on the pad:
// speech announces "digit entered". It carries no character, ever.
type keyTyped struct {
	RequestID string `json:"request_id"`
}

// keyed tells the kiosk a character was typed on the pad (never which),
// so speech output can announce it without the page making a sound.
func (u *uiState) keyed(w http.ResponseWriter, r *http.Request) {
	var req keyTyped
	if !decodeControl(w, r, &req) {
		return
	}
	if u.d.session == nil {
		writeError(w, http.StatusNotFound, "no sessions on this kiosk")
		return
	}
	st := u.d.session.Status()
	if st.Request == nil || st.State != session.AwaitPassword || st.Request.ID != req.RequestID {
		writeError(w, http.StatusConflict, "no code is being typed in that session")
		return
	}
	u.d.bus.Publish(event.Event{Source: "ui", Kind: "session.keyed", Data: req})
	w.WriteHeader(http.StatusNoContent)
}

// sessionLanguage is the language of the session with this request ID.
func (u *uiState) sessionLanguage(id string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if id != "" && id == u.langFor {
		return u.lang
	}
	return shopper.Languages()[0]
}

func (u *uiState) serveState(w http.ResponseWriter, r *http.Request) {
	d := u.d
	s := uiScreenState{Languages: shopper.Languages(), StaffEnabled: u.pinSet, Components: map[string]Component{}}
	if d.session != nil {
		st := d.session.Status()
		s.Session = &st
		s.Service.Reason = d.session.OutOfService()
		s.Service.OutOfService = s.Service.Reason != ""
		s.NotReady = d.sessionReady()
	}
	s.Language = shopper.Languages()[0]
	if s.Session != nil && s.Session.Request != nil && s.Session.State != session.Idle {
		id := s.Session.Request.ID
		s.Language = u.sessionLanguage(id)
		if st := s.Session.State; st == session.FaceMatch || st == session.Smile {
			u.mu.Lock()
			since := u.faceSince
			if u.faceFor != id {
				// The bus has not reached record yet: the face_match
				// step's own start, or at worst the smile's.
				since = s.Session.Since
			}
			u.mu.Unlock()
			s.FaceSince = &since
		}
	}
	u.mu.Lock()
	s.Service.Tamper = u.service.Tamper
	u.mu.Unlock()
	// Only the state of each part: details are for staff.
	for name, c := range d.Health().Components {
		s.Components[name] = Component{State: c.State}
	}
	ft := d.cfg.Policy.FaceTimeout
	if d.session != nil {
		ft = d.session.Policy().FaceTimeout // an operator may have changed it
	}
	if ft <= 0 {
		ft = 30 * time.Second // session.Policy's default
	}
	s.FaceTimeoutMS = ft.Milliseconds()
	s.SmileTimeoutMS = d.cfg.Face.SmileTimeout.Milliseconds()
	s.Merchant = d.cfg.Tx.Merchant
	if d.cfg.Speech.Mode != "off" {
		s.SpeechKeys = d.cfg.Speech.Keys()
	}
	writeJSON(w, http.StatusOK, s)
}

// servePreview streams the camera to the kiosk's own screen as MJPEG
// (multipart/x-mixed-replace) while a session is in its face steps, and
// only then: camera images are biometric data, so there is no stream when
// nobody is being verified, and frames are never stored or logged.
func (d *Daemon) servePreview(w http.ResponseWriter, r *http.Request) {
	if d.pump == nil {
		writeError(w, http.StatusNotFound, "no camera configured")
		return
	}
	// Only the kiosk's own page may embed it, never another site.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		writeError(w, http.StatusForbidden, "camera preview is for the kiosk's own screen")
		return
	}
	inFace := func() bool {
		if d.session == nil {
			return false
		}
		st := d.session.Status().State
		return st == session.FaceMatch || st == session.Smile
	}
	if !inFace() {
		writeError(w, http.StatusConflict, "camera preview only during the face steps of a session")
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary="+mw.Boundary())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	var seq uint64
	next := time.Now()
	for inFace() {
		if wait := time.Until(next); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		next = time.Now().Add(previewInterval)
		f, err := d.pump.Next(ctx, seq)
		if err != nil {
			return
		}
		seq = f.Seq
		b, err := d.previewJPEG(f)
		f.Close()
		if err != nil {
			d.log.Warn("preview frame not encoded", "err", err)
			continue
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"image/jpeg"}, "Content-Length": {fmt.Sprint(len(b))}})
		if err != nil {
			return
		}
		if _, err := pw.Write(b); err != nil {
			return
		}
		clear(b)
		fl.Flush()
	}
	_ = mw.Close()
}

// ---- staff ----

func (u *uiState) login(w http.ResponseWriter, r *http.Request) {
	if !u.pinSet {
		writeError(w, http.StatusServiceUnavailable, u.pinErr)
		return
	}
	var req struct {
		PIN string `json:"pin"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	u.loginMu.Lock()
	defer u.loginMu.Unlock()
	now := time.Now()
	u.mu.Lock()
	wait := u.lockout.Locked(now)
	u.mu.Unlock()
	if wait > 0 {
		req.PIN = ""
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, "too many wrong PINs; try later")
		return
	}
	// Who: the account whose PIN this is (argon2id, every account tried),
	// or the shared PIN of simulation.
	who, ok := "", false
	if u.accounts != nil {
		var a staff.Account
		a, ok = u.accounts.Match(req.PIN)
		who = a.Name
	} else {
		sum := sha256.Sum256([]byte(req.PIN))
		ok, who = subtle.ConstantTimeCompare(sum[:], u.pinSum[:]) == 1, "shared-pin"
	}
	req.PIN = ""
	u.mu.Lock()
	defer u.mu.Unlock()
	if !ok {
		wait := u.lockout.Fail(now)
		if u.lockout.SaveErr != nil {
			u.d.log.Error("staff lockout not persisted", "err", u.lockout.SaveErr)
		}
		u.d.log.Warn("staff login refused", "failures", u.lockout.Failures(), "locked_for", wait)
		if wait > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		}
		writeError(w, http.StatusUnauthorized, "wrong PIN")
		return
	}
	u.lockout.Succeed()
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	for k, ss := range u.tokens {
		if now.After(ss.exp) {
			delete(u.tokens, k)
		}
	}
	u.tokens[tok] = staffSession{who: who, exp: now.Add(staffSessionTTL)}
	u.d.recordStaff(r.Context(), who, "login", "")
	u.d.log.Info("staff logged in", "staff", who)
	u.d.bus.Publish(event.Event{Source: "ui", Kind: "staff.login"})
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires": now.Add(staffSessionTTL)})
}

func (u *uiState) staffOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Staff-Token")
		u.mu.Lock()
		ss, ok := u.tokens[tok]
		if ok && time.Now().After(ss.exp) {
			delete(u.tokens, tok)
			ok = false
		}
		u.mu.Unlock()
		if tok == "" || !ok {
			writeError(w, http.StatusUnauthorized, "staff login required")
			return
		}
		h(w, r)
	}
}

func (u *uiState) logout(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	delete(u.tokens, r.Header.Get("X-Staff-Token"))
	u.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged out"})
}

func (u *uiState) status(w http.ResponseWriter, r *http.Request) {
	h := u.d.Health()
	u.mu.Lock()
	errs := append([]staffError(nil), u.errors...)
	svc := u.service
	u.mu.Unlock()
	// Newest first.
	for i, j := 0, len(errs)-1; i < j; i, j = i+1, j-1 {
		errs[i], errs[j] = errs[j], errs[i]
	}
	writeJSON(w, http.StatusOK, map[string]any{"health": h, "errors": errs, "service": svc, "versions": u.d.versions()})
}

// versions names what this kiosk runs, for staff and support: kioskd,
// Go, OpenCV (through gocv), the face models by hash.
func (d *Daemon) versions() map[string]string {
	v := map[string]string{"kioskd": d.opts.Version, "go": runtime.Version(), "opencv": gocv.OpenCVVersion(), "gocv": gocv.Version()}
	for name, sum := range d.faceModels {
		v[name] = sum[:12]
	}
	return v
}

// Staff actions go over the bus to the feedback controller, the one owner
// of the service state; the answer waits briefly for it to apply them.
type staffAction struct {
	Action string `json:"action"` // "maintenance" or "reset_tamper"
	On     bool   `json:"on,omitempty"`
}

func (u *uiState) maintenance(w http.ResponseWriter, r *http.Request) {
	var req struct {
		On bool `json:"on"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	action := map[bool]string{true: "maintenance_on", false: "maintenance_off"}[req.On]
	u.d.recordStaff(r.Context(), u.who(r), action, "")
	u.act(w, staffAction{Action: "maintenance", On: req.On}, func(s feedback.Service) bool {
		return (s.Reason == feedback.ReasonMaintenance) == req.On || s.Reason == feedback.ReasonTamper
	})
}

func (u *uiState) resetTamper(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !decodeControl(w, r, &req) {
		return
	}
	if on, err := u.d.gpioActive(gpio.Tamper); err == nil && on {
		writeError(w, http.StatusConflict, "the enclosure is still open (tamper input active)")
		return
	}
	if err := u.d.tamperResetBlocked(r.Context()); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	u.d.recordStaff(r.Context(), u.who(r), "tamper_reset", "")
	u.act(w, staffAction{Action: "reset_tamper"}, func(s feedback.Service) bool { return s.Reason != feedback.ReasonTamper })
}

func (u *uiState) act(w http.ResponseWriter, a staffAction, done func(feedback.Service) bool) {
	u.d.log.Info("staff action", "action", a.Action, "on", a.On)
	u.d.bus.Publish(event.Event{Source: "ui", Kind: "staff.action", Data: a})
	deadline := time.Now().Add(time.Second)
	for {
		u.mu.Lock()
		s := u.service
		u.mu.Unlock()
		if done(s) {
			writeJSON(w, http.StatusOK, s)
			return
		}
		if time.Now().After(deadline) {
			writeJSON(w, http.StatusAccepted, s)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// record keeps the events staff want to see under "last errors".
func (u *uiState) record(e event.Event) {
	detail := ""
	switch v := e.Data.(type) {
	case cameraState:
		if v.State != "ok" {
			detail = v.State + ": " + v.Detail
		}
	case cardEvent:
		detail = v.Err
	case session.Status:
		if e.Kind == "session.face_match" && v.Request != nil {
			u.mu.Lock()
			if u.faceFor != v.Request.ID {
				u.faceSince, u.faceFor = v.Since, v.Request.ID
			}
			u.mu.Unlock()
		}
		if e.Kind == "session.result" && v.Outcome != nil && !v.Outcome.Approved {
			var codes []string
			for _, r := range v.Outcome.Reasons {
				codes = append(codes, r.Code)
			}
			detail = "declined: " + strings.Join(codes, ", ")
		}
	case hub.Status:
		// Staff read these: the state and its reason, not a struct dump.
		if v.State == "down" || v.State == "degraded" {
			detail = v.State
			if v.Detail != "" {
				detail += ": " + v.Detail
			}
		}
	default:
		if m, ok := v.(map[string]bool); ok && e.Kind == "alarm.tamper" {
			detail = "cleared"
			if m["active"] {
				detail = "active"
			}
		}
	}
	if detail == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.errors = append(u.errors, staffError{Time: e.Time, Kind: e.Kind, Detail: detail})
	if n := len(u.errors); n > lastErrorsKept {
		u.errors = append(u.errors[:0:0], u.errors[n-lastErrorsKept:]...)
	}
}

func (u *uiState) setService(s feedback.Service) {
	u.mu.Lock()
	u.service = s
	u.mu.Unlock()
}

// findUI returns the uiState registered on the router (nil if the router
// was replaced).
func (d *Daemon) findUI() *uiState {
	mux, ok := d.httpSrv.Handler.(*http.ServeMux)
	if !ok {
		return nil
	}
	req, err := http.NewRequest("GET", "/api/staff/status", nil)
	if err != nil {
		return nil
	}
	h, _ := mux.Handler(req)
	u, _ := h.(*uiState)
	return u
}

var errNoGPIO = errors.New("gpio not open")

func (d *Daemon) gpioActive(role gpio.Role) (bool, error) {
	d.gpioMu.Lock()
	g := d.gpio
	d.gpioMu.Unlock()
	if g == nil {
		return false, errNoGPIO
	}
	return g.Active(role)
}

// runningSession is the session a shopper's request names, or, with the
// error answered, false when no session with that request runs.
func (u *uiState) runningSession(w http.ResponseWriter, requestID string) (session.Status, bool) {
	if u.d.session == nil {
		writeError(w, http.StatusNotFound, "no sessions on this kiosk")
		return session.Status{}, false
	}
	st := u.d.session.Status()
	if st.Request == nil || st.State == session.Idle || st.Request.ID != requestID {
		writeError(w, http.StatusConflict, "that session is not running")
		return session.Status{}, false
	}
	return st, true
}
