package hubd

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubstore"
)

// sentNotes records what a relay sends; the database side is tested against
// PostgreSQL (pgstore's TestNotifyListen, TestFleetWatchAcrossInstances).
type sentNotes struct {
	mu   sync.Mutex
	sent [][]byte
}

func (s *sentNotes) Notify(_ context.Context, channel string, p []byte) error {
	if channel != eventsChannel {
		panic(channel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, p)
	return nil
}

func (s *sentNotes) Listen(ctx context.Context, _ string, _ hubstore.Listener) error {
	<-ctx.Done()
	return ctx.Err()
}

// The relay's own rules, without a database: presence stays local, an
// oversized event is skipped (its sequence number with it), an
// instance's own events are not delivered twice, a sequence gap and a
// listener's return are told to the watchers in stream order.
func TestRelayRules(t *testing.T) {
	n := &sentNotes{}
	b := newBroadcaster()
	w, stop := b.subscribe()
	defer stop()
	reconnects := 0
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	r := newRelay(n, "hub-a", b, func() { reconnects++ }, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx, true); close(done) }()

	r.send(fleet.Event{Kind: "presence", Device: "k1", Status: "online"})
	r.send(fleet.Event{Kind: "status", JobID: "j1", Device: "k1", Status: "succeeded"})
	r.send(fleet.Event{Kind: "status", JobID: "j1", Device: "k2", Status: "failed", Reason: strings.Repeat("r", hubstore.MaxNotifyPayload)})
	r.send(fleet.Event{Kind: "job", JobID: "j1", Status: "done"})
	var sent []wireEvent
	for deadline := time.Now().Add(5 * time.Second); len(sent) < 2; time.Sleep(10 * time.Millisecond) {
		n.mu.Lock()
		sent = sent[:0]
		for _, p := range n.sent {
			var we wireEvent
			if err := json.Unmarshal(p, &we); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, we)
		}
		n.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("sent %+v", sent)
		}
	}
	if len(sent) != 2 || sent[0].Seq != 1 || sent[0].Event.Device != "k1" || sent[1].Seq != 3 || sent[1].Event.Status != "done" || sent[1].From != "hub-a" {
		t.Fatalf("sent %+v", sent)
	}

	// What the listener hears: this instance's own event (skipped),
	// hub-b's 1 and 4 (2 and 3 missing), garbage (skipped), then a loss
	// and a return.
	hear := func(w wireEvent) {
		p, _ := json.Marshal(w)
		r.received(p)
	}
	r.up()
	hear(sent[0])
	hear(wireEvent{From: "hub-b", Seq: 1, Event: fleet.Event{Kind: "status", JobID: "j2", Device: "k3", Status: "succeeded"}})
	hear(wireEvent{From: "hub-b", Seq: 4, Event: fleet.Event{Kind: "job", JobID: "j2", Status: "done"}})
	r.received([]byte("not json"))
	r.lost(context.DeadlineExceeded, time.Second)
	if h := r.health(); !strings.Contains(h, "this instance's events only") {
		t.Errorf("health while down: %q", h)
	}
	now = now.Add(3 * time.Second)
	r.up()
	if h := r.health(); h != "ok" || reconnects != 1 {
		t.Errorf("health %q, reconnects %d", h, reconnects)
	}
	want := []string{"event j2 k3 succeeded", "note 2 event(s) of instance hub-b missing (not shared or not heard)", "event j2  done",
		"note events of other instances from 2026-12-07T20:00:00Z to 2026-12-07T20:00:03Z may be missing (this hub's listener reconnected)"}
	for i, wl := range want {
		select {
		case it := <-w.ch:
			got := "event " + it.e.JobID + " " + it.e.Device + " " + it.e.Status
			if it.note != "" {
				got = "note " + it.note
			}
			if got != wl {
				t.Errorf("stream item %d: %q, want %q", i, got, wl)
			}
		default:
			t.Fatalf("stream item %d missing, want %q", i, wl)
		}
	}
	select {
	case it := <-w.ch:
		t.Errorf("extra stream item %+v", it)
	default:
	}
	cancel()
	<-done
}

// Notifications come from the database, sent by any instance (or anyone
// with the database's credentials): whatever arrives, the relay neither
// panics nor delivers this instance's own events, and it passes on at
// most one event and one note per notification.
func FuzzRelayReceived(f *testing.F) {
	for _, s := range []string{`{"from":"hub-b","seq":1,"event":{"kind":"status","job_id":"j","device":"k","status":"succeeded"}}`,
		`{"from":"hub-a","seq":2,"event":{}}`, `{"from":"hub-b","seq":18446744073709551615}`, `{"from":"","seq":0}`, `null`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		b := newBroadcaster()
		w, stop := b.subscribe()
		defer stop()
		r := newRelay(&sentNotes{}, "hub-a", b, nil, time.Now, slog.New(slog.DiscardHandler))
		r.received([]byte(`{"from":"hub-b","seq":5,"event":{}}`))
		<-w.ch
		r.received(p)
		events, notes := 0, 0
		for len(w.ch) > 0 {
			it := <-w.ch
			if it.note != "" {
				notes++
			} else {
				events++
			}
		}
		var we wireEvent
		if events > 1 || notes > 1 || (events == 1 && (json.Unmarshal(p, &we) != nil || we.From == "hub-a")) {
			t.Fatalf("%q: %d events, %d notes", p, events, notes)
		}
	})
}
