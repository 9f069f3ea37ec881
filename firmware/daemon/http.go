package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"kiosk/drivers/camera"
	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/cardtest"
	"kiosk/drivers/gpio"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/hub"
	"kiosk/firmware/session"
)

// Component is one driver's or link's health.
type Component struct {
	State  string `json:"state"` // ok, degraded, down, disabled
	Detail string `json:"detail,omitempty"`
	Info   any    `json:"info,omitempty"`
}

// Health is what /healthz and /api/status report.
type Health struct {
	Status     string               `json:"status"` // ok or degraded
	Device     string               `json:"device"`
	Mode       string               `json:"mode"`
	Version    string               `json:"version"`
	UptimeS    float64              `json:"uptime_s"`
	KeyStorage string               `json:"key_storage"` // tpm or file: where the device key lives
	Components map[string]Component `json:"components"`
}

// Health collects every component's state. Any component that is not ok
// (and not disabled) makes the whole kiosk "degraded".
func (d *Daemon) Health() Health {
	h := Health{
		Status: "ok", Device: d.cfg.Device.ID, Mode: d.cfg.Device.Mode, Version: d.opts.Version,
		Components: map[string]Component{},
	}
	if ks := d.keyStore(); ks != nil {
		h.KeyStorage = ks.Kind()
	}
	if !d.started.IsZero() {
		h.UptimeS = time.Since(d.started).Seconds()
	}
	if d.pump != nil {
		s := d.pump.Status()
		h.Components["camera"] = Component{State: s.State, Detail: s.Detail, Info: s}
	} else {
		h.Components["camera"] = Component{State: "disabled"}
	}
	if d.cards != nil {
		s := d.cards.Status()
		h.Components["cardreader"] = Component{State: s.State, Detail: s.Detail, Info: s}
	} else {
		h.Components["cardreader"] = Component{State: "disabled"}
	}
	d.gpioMu.Lock()
	switch {
	case d.gpio != nil:
		s := d.gpio.Status()
		h.Components["gpio"] = Component{State: s.State, Detail: s.Detail, Info: s}
	case d.cfg.GPIO.Backend == "none":
		h.Components["gpio"] = Component{State: "disabled"}
	default:
		detail := d.gpioErr
		if detail == "" {
			detail = "opening"
		}
		h.Components["gpio"] = Component{State: "down", Detail: detail}
	}
	d.gpioMu.Unlock()
	if d.hub != nil {
		s := d.hub.Status()
		h.Components["hub"] = Component{State: s.State, Detail: s.Detail, Info: s}
	} else {
		h.Components["hub"] = Component{State: "disabled"}
	}
	if d.session != nil {
		st := d.session.Status()
		h.Components["session"] = Component{State: "ok", Detail: string(st.State)}
		if r := d.session.OutOfService(); r != "" {
			h.Components["session"] = Component{State: "degraded", Detail: "out of service: " + r}
		}
		// The fleet's hold (service_off), also while another reason wins.
		if hold, _ := d.serviceHold(); hold.OutOfService {
			c := h.Components["session"]
			c.Info = map[string]any{"fleet_hold": hold}
			h.Components["session"] = c
		}
		ec := d.trust.Component(time.Now())
		if in, ok := ec.Info.(TrustInfo); ok {
			in.Bundle = int(d.bundleVersion.Load())
			ec.Info = in
		}
		h.Components["eid"] = ec
		fs := d.faceStatus()
		h.Components["face"] = fs
		ts := d.tx.flow.Status()
		tc := Component{State: "ok", Info: ts}
		if ts.Alarm != "" {
			tc.State, tc.Detail = "degraded", ts.Alarm
		}
		h.Components["transactions"] = tc
		if d.tx.auditErr != "" {
			h.Components["audit"] = Component{State: "degraded", Detail: d.tx.auditErr}
		}
		// The device certificate: degraded with under 14 days left (it
		// renews itself from 30 days).
		if d.tx.renewer != nil {
			cs := d.tx.renewer.Status()
			c := Component{State: "ok", Info: cs}
			if cs.State != "ok" {
				c.State, c.Detail = "degraded", fmt.Sprintf("device certificate %s: %d days left", cs.State, cs.DaysLeft)
			}
			h.Components["certificate"] = c
		}
	}
	h.Components["config"] = d.configComponent()
	if d.jobs != nil {
		h.Components["jobs"] = Component{State: "ok", Info: d.jobs.Stats()}
	} else if d.hub != nil {
		h.Components["jobs"] = Component{State: "disabled", Detail: "no hub.operations_cert: fleet jobs are refused"}
	}
	h.Components["memory"] = d.memoryComponent()
	if d.ota != nil {
		h.Components["firmware"] = d.firmwareComponent()
	}
	for _, c := range h.Components {
		if c.State != "ok" && c.State != "disabled" {
			h.Status = "degraded"
		}
	}
	return h
}

func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	d.registerUI(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		h := d.Health()
		code := http.StatusOK
		if h.Status != "ok" {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Health())
	})
	mux.HandleFunc("GET /api/events", d.serveEvents)
	mux.HandleFunc("GET /api/diagnostics/counters", d.serveCounters)
	mux.HandleFunc("POST /api/sim/card", d.simCardControl)
	mux.HandleFunc("POST /api/sim/gpio", d.simGPIOControl)
	mux.HandleFunc("GET /api/session", d.sessionStatus)
	mux.HandleFunc("POST /api/session/password", d.sessionPassword)
	mux.HandleFunc("POST /api/session/cancel", d.sessionCancel)
	mux.HandleFunc("POST /api/session/more-time", d.sessionMoreTime)
	mux.HandleFunc("POST /api/sim/pay", d.simPay)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// serveEvents streams the event bus as Server-Sent Events.
func (d *Daemon) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	sub := d.bus.Subscribe(r.Context(), 64)
	defer sub.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": kioskd events\n\n")
	fl.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			b, err := json.Marshal(e)
			if err != nil {
				d.log.Warn("event not encodable", "kind", e.Kind, "err", err)
				continue
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Kind, b)
			fl.Flush()
		}
	}
}

// serveFrame returns a small JPEG of the latest camera frame. Camera
// images are biometric data: this exists only in simulation mode, where
// the camera is a test video; production mode refuses it.
func (d *Daemon) serveFrame(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Device.Mode != "simulation" {
		writeError(w, http.StatusForbidden, "camera preview is available in simulation mode only")
		return
	}
	if d.pump == nil {
		writeError(w, http.StatusNotFound, "no camera configured")
		return
	}
	f, ok := d.pump.Latest()
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "no frame yet")
		return
	}
	defer f.Close()
	b, err := camera.EncodeJPEG(f.Mat, 320, 70)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// decodeControl reads a small JSON control request. Requiring the JSON
// content type means a cross-site form post cannot reach these endpoints
// without a CORS preflight, which this server never approves.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "content type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request: "+err.Error())
		return false
	}
	return true
}

func (d *Daemon) simCardControl(w http.ResponseWriter, r *http.Request) {
	if d.simCard == nil {
		writeError(w, http.StatusConflict, "the card reader is not simulated")
		return
	}
	var req struct {
		Action string `json:"action"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	var err error
	switch req.Action {
	case "insert":
		var card cardreader.CardHandler
		if d.opts.SimCard != nil {
			card = d.opts.SimCard()
		} else {
			card = cardtest.New(nil)
		}
		err = d.simCard.Insert(card)
	case "remove":
		err = d.simCard.Remove()
	default:
		writeError(w, http.StatusBadRequest, `action must be "insert" or "remove"`)
		return
	}
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"present": d.simCard.Present()})
}

func (d *Daemon) simGPIOControl(w http.ResponseWriter, r *http.Request) {
	d.gpioMu.Lock()
	sim := d.simGPIO
	d.gpioMu.Unlock()
	if sim == nil {
		writeError(w, http.StatusConflict, "GPIO is not simulated")
		return
	}
	var req struct {
		Role   string `json:"role"`
		Active bool   `json:"active"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	role := gpio.Role(req.Role)
	if !role.IsInput() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an input role", req.Role))
		return
	}
	if err := sim.SetInput(role, req.Active); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": req.Role, "active": req.Active})
}

// telemetry publishes the health snapshot periodically (QoS 0: a lost
// sample is replaced by the next one), and once at each connection, so
// the fleet's overview (kioskctl fleet list) has it at once.
func (d *Daemon) telemetry(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Hub.TelemetryEvery)
	defer t.Stop()
	wasUp := false
	for {
		changed := d.hub.Changed()
		up := d.hub.Status().Connected
		if !up || wasUp {
			wasUp = up
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				continue
			case <-t.C:
			}
		}
		wasUp = up
		b, err := json.Marshal(d.Health())
		if err != nil {
			return err
		}
		if err := d.hub.Publish(ctx, "telemetry/health", 0, false, b); err != nil && !errors.Is(err, hub.ErrNotConnected) {
			d.log.Debug("telemetry not sent", "err", err)
		}
	}
}

func (d *Daemon) sessionStatus(w http.ResponseWriter, r *http.Request) {
	if d.session == nil {
		writeError(w, http.StatusNotFound, "no sessions on this kiosk (no card reader or hub)")
		return
	}
	writeJSON(w, http.StatusOK, d.session.Status())
}

// sessionPassword takes the CAN, PIN or MRZ from the screen's PIN pad.
// The secret goes to the card only: never logged, never echoed, never
// stored. A typed MRZ is checked field by field (9303-3 check digits) and
// a wrong field is answered with its name, so the screen can point at it.
func (d *Daemon) sessionPassword(w http.ResponseWriter, r *http.Request) {
	if d.session == nil {
		writeError(w, http.StatusNotFound, "no sessions on this kiosk")
		return
	}
	var req struct {
		Kind   string `json:"kind"` // can, pin or mrz
		Digits string `json:"digits,omitempty"`
		// kind mrz: each field with the check digit printed after it.
		DocumentNumber      string `json:"document_number,omitempty"`
		DocumentNumberCheck string `json:"document_number_check,omitempty"`
		Birth               string `json:"birth,omitempty"`
		BirthCheck          string `json:"birth_check,omitempty"`
		Expiry              string `json:"expiry,omitempty"`
		ExpiryCheck         string `json:"expiry_check,omitempty"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	defer func() { req.Digits, req.DocumentNumber, req.Birth, req.Expiry = "", "", "", "" }()
	var pw emrtd.Password
	switch req.Kind {
	case "mrz":
		entry := emrtd.MRZEntry{
			DocumentNumber: req.DocumentNumber, DocumentNumberCheck: req.DocumentNumberCheck,
			Birth: req.Birth, BirthCheck: req.BirthCheck, Expiry: req.Expiry, ExpiryCheck: req.ExpiryCheck,
		}
		var err error
		pw, err = entry.Password()
		entry.Wipe()
		var fe *emrtd.MRZFieldError
		if errors.As(err, &fe) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fe.Error(), "field": fe.Field, "problem": fe.Problem})
			return
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	case "can", "pin":
		kind := map[string]emrtd.PasswordKind{"can": emrtd.CAN, "pin": emrtd.PIN}[req.Kind]
		if len(req.Digits) < 4 || len(req.Digits) > 12 || strings.Trim(req.Digits, "0123456789") != "" {
			writeError(w, http.StatusBadRequest, `digits must be 4-12 numbers`)
			return
		}
		pw = emrtd.Password{Kind: kind, Secret: req.Digits}
	default:
		writeError(w, http.StatusBadRequest, `kind must be "can", "pin" or "mrz"`)
		return
	}
	if err := d.session.EnterPassword(pw); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

func (d *Daemon) sessionCancel(w http.ResponseWriter, r *http.Request) {
	if d.session == nil {
		writeError(w, http.StatusNotFound, "no sessions on this kiosk")
		return
	}
	var req struct{}
	if !decodeControl(w, r, &req) {
		return
	}
	if err := d.session.Cancel("", "cancelled_by_shopper"); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "cancelling"})
}

// simPay is the demo till of the status page (simulation only).
func (d *Daemon) simPay(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Device.Mode != "simulation" || d.session == nil {
		writeError(w, http.StatusForbidden, "the demo till exists in simulation mode only")
		return
	}
	var req struct {
		AmountMinor int64  `json:"amount_minor"`
		Currency    string `json:"currency"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	sr, err := d.session.Start(r.Context(), session.Request{Kind: "payment", AmountMinor: req.AmountMinor, Currency: req.Currency,
		MerchantRef: fmt.Sprintf("demo-%d", time.Now().UnixNano())})
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, sr)
}

// sessionMoreTime takes the screen's offer of more time (the shopper
// touched "More time" or pressed Enter on the keypad).
func (d *Daemon) sessionMoreTime(w http.ResponseWriter, r *http.Request) {
	if d.session == nil {
		writeError(w, http.StatusNotFound, "no sessions on this kiosk")
		return
	}
	var req struct{}
	if !decodeControl(w, r, &req) {
		return
	}
	if err := d.session.MoreTime(); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
