// Package ecr is the kiosk's payment API for the till (the electronic cash
// register): create a payment, read its status, cancel it. Local HTTP with
// JSON bodies, authenticated by a bearer token or by a TLS client
// certificate, idempotent on the merchant reference. docs/ecr.md is the
// reference for integrators.
package ecr

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"

	"kiosk/firmware/session"
)

// Sessions is what the API needs from the session state machine.
type Sessions interface {
	Start(ctx context.Context, req session.Request) (session.Request, error)
	Lookup(id string) (session.Status, bool)
	Cancel(id, reason string) error
}

// Options configure the API.
type Options struct {
	Sessions Sessions
	// Token is the bearer token the till must send. Empty means requests
	// must come with a verified TLS client certificate (mTLS) instead.
	Token string
	// History, when set, answers for finished payments the session no
	// longer remembers (after a restart): a till's retry then gets the
	// recorded result, never a second payment.
	History *History
	Logger  *slog.Logger
}

// Handler returns the API's HTTP handler.
func Handler(opts Options) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{opts: opts, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", a.create)
	mux.HandleFunc("POST /v1/services", a.createService)
	mux.HandleFunc("GET /v1/payments/{id}", a.get)
	mux.HandleFunc("POST /v1/payments/{id}/cancel", a.cancel)
	return a.auth(mux)
}

type api struct {
	opts Options
	log  *slog.Logger
}

// auth admits a request with the right bearer token (compared in constant
// time) or, when no token is configured, with a client certificate that
// the TLS layer verified.
func (a *api) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if a.opts.Token != "" {
			got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			ok = found && subtle.ConstantTimeCompare([]byte(got), []byte(a.opts.Token)) == 1
		} else {
			ok = r.TLS != nil && len(r.TLS.VerifiedChains) > 0
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiosk-ecr"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token or client certificate is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PaymentRequest is the body of POST /v1/payments.
type PaymentRequest struct {
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	MerchantRef string `json:"merchant_ref"`
}

// ServiceRequest is the body of POST /v1/services (branch mode).
type ServiceRequest struct {
	Service     string `json:"service"` // e.g. "open_account"
	MerchantRef string `json:"merchant_ref"`
}

// Payment is the API's view of a payment or a branch service.
type Payment struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`              // payment or service
	Service     string    `json:"service,omitempty"` // branch mode
	MerchantRef string    `json:"merchant_ref,omitempty"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	Created     time.Time `json:"created"`
	State       string    `json:"state"` // the session step, e.g. "insert_card", "result"
	// NeedsMRZ: the card is BAC-only and the shopper is asked to type the
	// document's MRZ (document number, birth and expiry dates) on the pad;
	// the cashier may help find it on the photo page.
	NeedsMRZ bool             `json:"needs_mrz,omitempty"`
	Status   string           `json:"status"` // pending, approved, declined
	Reasons  []session.Reason `json:"reasons,omitempty"`
	Finished *time.Time       `json:"finished,omitempty"`
}

func view(st session.Status) Payment {
	r := st.Request
	p := Payment{ID: r.ID, Kind: r.Kind, Service: r.Service, MerchantRef: r.MerchantRef, AmountMinor: r.AmountMinor, Currency: r.Currency,
		Created: r.Created, State: string(st.State), Status: "pending", NeedsMRZ: st.NeedsMRZ}
	if o := st.Outcome; o != nil {
		p.Status = "declined"
		if o.Approved {
			p.Status = "approved"
		}
		p.Reasons = o.Reasons
		f := o.Finished
		p.Finished = &f
	}
	return p
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	var req PaymentRequest
	if !decodeBody(w, r, &req) {
		return
	}
	a.begin(w, r, session.Request{
		Kind: "payment", AmountMinor: req.AmountMinor, Currency: strings.ToUpper(req.Currency), MerchantRef: req.MerchantRef,
	})
}

// createService starts a branch service: the customer proves who they are
// (chip, face, smile to confirm); nothing is paid.
func (a *api) createService(w http.ResponseWriter, r *http.Request) {
	var req ServiceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !serviceRe.MatchString(req.Service) {
		writeError(w, http.StatusBadRequest, "bad_request", "service must be 1-32 of a-z, 0-9 and _")
		return
	}
	a.begin(w, r, session.Request{Kind: "service", Service: req.Service, MerchantRef: req.MerchantRef})
}

var serviceRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "bad_content_type", "content type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return false
	}
	return true
}

// begin starts req, or answers a retry (same merchant reference) with the
// transaction it started before.
func (a *api) begin(w http.ResponseWriter, r *http.Request, req session.Request) {
	if req.MerchantRef == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "merchant_ref is required (it makes retries safe)")
		return
	}
	if st, ok := a.lookup(req.MerchantRef); ok {
		if p := st.Request; p.Kind != req.Kind || p.AmountMinor != req.AmountMinor || p.Currency != req.Currency || p.Service != req.Service {
			writeError(w, http.StatusConflict, "merchant_ref_reused", "merchant_ref already used for a different request")
			return
		}
		writeJSON(w, http.StatusOK, view(st))
		return
	}
	sreq, err := a.opts.Sessions.Start(r.Context(), req)
	switch {
	case errors.Is(err, session.ErrInvalid):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	case errors.Is(err, session.ErrBusy):
		writeError(w, http.StatusConflict, "busy", "the kiosk is serving another transaction")
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	a.log.Info("ecr request created", "tx", sreq.ID, "kind", sreq.Kind, "service", sreq.Service, "merchant_ref", sreq.MerchantRef,
		"amount_minor", sreq.AmountMinor, "currency", sreq.Currency)
	st, ok := a.opts.Sessions.Lookup(sreq.ID)
	if !ok {
		st = session.Status{State: session.AwaitCard, Request: &sreq}
	}
	w.Header().Set("Location", "/v1/payments/"+sreq.ID)
	writeJSON(w, http.StatusCreated, view(st))
}

// lookup finds a payment by id or merchant reference: the running or a
// recent session, else the durable history.
func (a *api) lookup(idOrRef string) (session.Status, bool) {
	if st, ok := a.opts.Sessions.Lookup(idOrRef); ok && st.Request != nil {
		return st, true
	}
	if a.opts.History != nil {
		return a.opts.History.Lookup(idOrRef)
	}
	return session.Status{}, false
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	st, ok := a.lookup(r.PathValue("id"))
	if !ok || st.Request == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such payment")
		return
	}
	writeJSON(w, http.StatusOK, view(st))
}

func (a *api) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, ok := a.lookup(id)
	if !ok || st.Request == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such payment")
		return
	}
	if err := a.opts.Sessions.Cancel(id, "cancelled_by_till"); err != nil {
		writeError(w, http.StatusConflict, "not_cancellable", fmt.Sprintf("payment is %s", view(st).Status))
		return
	}
	a.log.Info("ecr payment cancelled", "tx", st.Request.ID)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": st.Request.ID, "status": "cancelling"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]string{"error": errCode, "message": msg})
}
