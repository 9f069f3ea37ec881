package hubd

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"kiosk/firmware/txreport"
	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubstore"
)

// buildFleet makes the job service when keys.operations_key is set: the
// jobs live in the hub's store (PostgreSQL, shared by the instances; the
// bolt demo store keeps them in memory).
func buildFleet(cfg Config, store hubstore.Store, ring *txreport.Keyring, tlsCfg *tls.Config, instance string,
	onEvent func(fleet.Event), now func() time.Time, log *slog.Logger) (*fleet.Service, error) {
	if cfg.Keys.OperationsKey == "" {
		log.Info("no keys.operations_key: this instance runs no fleet jobs")
		return nil, nil
	}
	ops, err := txreport.LoadSigner(cfg.Keys.OperationsKey, cfg.Keys.OperationsCert)
	if err != nil {
		return nil, &Error{Key: "keys.operations_key", Msg: err.Error()}
	}
	js, ok := store.(fleet.Store)
	if !ok {
		js = fleet.NewMemStore()
		log.Warn("fleet jobs kept in memory: this store holds none (bolt, one machine)")
	}
	groups := cfg.Fleet.Groups
	svc, err := fleet.New(fleet.Options{
		Brokers: cfg.MQTT.Brokers, ClientID: instance + "-fleet", Prefix: cfg.MQTT.Prefix, Group: cfg.MQTT.Group + "-fleet", TLS: tlsCfg,
		Operations: ops, Devices: ring, Store: js,
		// A group stored at the hub (kioskctl fleet group set) wins over
		// the configuration's [fleet.groups].
		Groups: func(ctx context.Context, g string) ([]string, error) {
			stored, err := js.Groups(ctx)
			if err != nil {
				return nil, err
			}
			if devs, ok := stored[g]; ok {
				return devs, nil
			}
			devs, ok := groups[g]
			if !ok {
				return nil, fmt.Errorf("no group %q stored at the hub or in [fleet.groups]", g)
			}
			return devs, nil
		},
		OnEvent: onEvent, Logger: log.With("component", "fleet"), Now: now,
	})
	if err != nil {
		return nil, &Error{Key: "keys.operations_key", Msg: err.Error()}
	}
	return svc, nil
}

// readToken reads the operator API's bearer token (at least 32 bytes).
func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Key: "http.operator_token_file", Msg: err.Error()}
	}
	tok := []byte(strings.TrimSpace(string(b)))
	if len(tok) < 32 {
		return nil, &Error{Key: "http.operator_token_file", Msg: "the token must be at least 32 characters"}
	}
	return tok, nil
}

// operatorAPI serves /fleet/... for kioskctl fleet, behind the bearer
// token: every request, reads included (job results hold device health).
func operatorAPI(mux *http.ServeMux, token []byte, svc *fleet.Service, store hubstore.Store, events *broadcaster, static map[string][]string) {
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
				writeJSONError(w, http.StatusUnauthorized, "a valid operator token is required")
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /fleet/groups", auth(func(w http.ResponseWriter, r *http.Request) {
		stored, err := svc.StoredGroups(r.Context())
		if err != nil {
			writeJSONError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, Groups{Stored: stored, Static: static})
	}))
	mux.HandleFunc("PUT /fleet/groups/{name}", auth(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Devices []string `json:"devices"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSONError(w, http.StatusBadRequest, "group: "+err.Error())
			return
		}
		if err := svc.SetGroup(r.Context(), r.PathValue("name"), req.Devices); err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"group": r.PathValue("name"), "devices": len(req.Devices)})
	}))
	mux.HandleFunc("GET /fleet/tx", auth(serveTxTail(store)))
	mux.HandleFunc("GET /fleet/events", auth(serveEvents(events)))
	mux.HandleFunc("GET /fleet/devices", auth(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, svc.Devices())
	}))
	mux.HandleFunc("GET /fleet/jobs", auth(func(w http.ResponseWriter, r *http.Request) {
		js, err := svc.Jobs(r.Context())
		if err != nil {
			writeJSONError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, js)
	}))
	mux.HandleFunc("POST /fleet/jobs", auth(func(w http.ResponseWriter, r *http.Request) {
		var req JobRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSONError(w, http.StatusBadRequest, "job request: "+err.Error())
			return
		}
		ttl, err := time.ParseDuration(req.TTL)
		if req.TTL == "" {
			ttl, err = time.Hour, nil
		}
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, "ttl: "+err.Error())
			return
		}
		j, err := svc.Create(r.Context(), fleet.Spec{ID: req.ID, Kind: req.Kind, Doc: req.Doc, Group: req.Group, Devices: req.Devices,
			TTL: ttl, PerMinute: req.PerMinute, InFlight: req.InFlight, AbortPercent: req.AbortPercent, MinFinished: req.MinFinished})
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, j)
	}))
	mux.HandleFunc("GET /fleet/config", auth(func(w http.ResponseWriter, r *http.Request) {
		st, err := svc.ConfigState(r.Context())
		if err != nil {
			writeJSONError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("POST /fleet/config", auth(func(w http.ResponseWriter, r *http.Request) {
		var req ConfigRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSONError(w, http.StatusBadRequest, "config request: "+err.Error())
			return
		}
		j, v, err := svc.SetConfig(r.Context(), fleet.Spec{Group: req.Group, Devices: req.Devices, TTL: time.Hour,
			InFlight: req.InFlight, AbortPercent: req.AbortPercent, MinFinished: req.MinFinished}, req.Settings)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"version": v, "job": j})
	}))
	mux.HandleFunc("GET /fleet/jobs/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		sum, es, err := svc.Status(r.Context(), r.PathValue("id"))
		if errors.Is(err, fleet.ErrNotFound) {
			writeJSONError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			writeJSONError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, JobStatus{Summary: sum, Executions: es})
	}))
	mux.HandleFunc("POST /fleet/jobs/{id}/cancel", auth(func(w http.ResponseWriter, r *http.Request) {
		n, err := svc.Cancel(r.Context(), r.PathValue("id"))
		if errors.Is(err, fleet.ErrNotFound) {
			writeJSONError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			writeJSONError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"cancelled": n})
	}))
}

// JobRequest is the body of POST /fleet/jobs.
type JobRequest struct {
	ID           string   `json:"id,omitempty"`
	Kind         string   `json:"kind"`
	Doc          string   `json:"doc,omitempty"`
	Group        string   `json:"group,omitempty"`
	Devices      []string `json:"devices,omitempty"`
	TTL          string   `json:"ttl,omitempty"` // Go duration; default 1h
	PerMinute    int      `json:"per_minute,omitempty"`
	InFlight     int      `json:"in_flight,omitempty"`
	AbortPercent int      `json:"abort_percent,omitempty"`
	MinFinished  int      `json:"min_finished,omitempty"`
}

// ConfigRequest is the body of POST /fleet/config: the next desired
// version's settings, for a group or devices.
type ConfigRequest struct {
	Group        string                     `json:"group,omitempty"`
	Devices      []string                   `json:"devices,omitempty"`
	Settings     map[string]json.RawMessage `json:"settings"`
	InFlight     int                        `json:"in_flight,omitempty"`
	AbortPercent int                        `json:"abort_percent,omitempty"`
	MinFinished  int                        `json:"min_finished,omitempty"`
}

// Groups is GET /fleet/groups: the groups stored at the hub and the
// configuration's [fleet.groups] (a stored group of the same name wins).
type Groups struct {
	Stored map[string][]string `json:"stored"`
	Static map[string][]string `json:"static"`
}

// JobStatus is GET /fleet/jobs/{id}.
type JobStatus struct {
	Summary    fleet.Summary     `json:"summary"`
	Executions []fleet.Execution `json:"executions"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
