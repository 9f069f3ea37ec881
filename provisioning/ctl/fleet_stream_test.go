package ctl

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"kiosk/provisioning/fleet"
)

// The watch stream: events to f, the hub's notes about the stream (not its
// greeting or keepalives) to note, and the bearer token on the request.
func TestFleetStreamNotes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": kioskhub fleet events\n\n: keepalive\n\n")
		fmt.Fprint(w, "event: job\ndata: {\"kind\":\"job\",\"job_id\":\"j1\",\"status\":\"created\"}\n\n")
		fmt.Fprint(w, ": 3 event(s) dropped (this watcher fell behind)\n\n")
		fmt.Fprint(w, "event: status\ndata: {\"kind\":\"status\",\"job_id\":\"j1\",\"device\":\"k1\",\"status\":\"succeeded\"}\n\n")
	}))
	defer srv.Close()
	c := &fleetClient{base: srv.URL, token: "tok", http: srv.Client()}
	var evs []string
	var notes []string
	err := c.stream(context.Background(), "/fleet/events", func(e fleet.Event) bool {
		evs = append(evs, eventLine(e))
		return true
	}, func(n string) { notes = append(notes, n) })
	if err == nil {
		t.Fatal("a stream the hub closed ended without an error")
	}
	if want := []string{"job j1 created", "job j1 k1 succeeded"}; !slices.Equal(evs, want) {
		t.Errorf("events %q, want %q", evs, want)
	}
	if want := []string{"3 event(s) dropped (this watcher fell behind)"}; !slices.Equal(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
}
