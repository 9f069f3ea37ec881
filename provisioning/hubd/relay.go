package hubd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubstore"
)

// eventsChannel is the store notification channel fleet events travel on
// between the instances.
const eventsChannel = "kioskhub_fleet_events"

// relayQueue bounds the events waiting to be sent to the other instances;
// beyond it they are not shared (the receivers see the gap in Seq).
const relayQueue = 1024

// relayNotifyTimeout bounds one send, so that a store that hangs does not
// hold the queue.
const relayNotifyTimeout = 2 * time.Second

// wireEvent is one fleet event as the other instances receive it. From
// names the instance that saw it (which delivered it to its own watchers
// at once, and skips it when its listener hears it back); Seq counts that
// instance's events from 1 at its start, so a receiver sees events that
// did not reach it.
type wireEvent struct {
	From  string      `json:"from"`
	Seq   uint64      `json:"seq"`
	Event fleet.Event `json:"event"`
}

// relay shares this instance's fleet events with the other instances
// through the store's notifications, and hands theirs to the local
// watchers. Metrics stay this instance's own: only the watch stream is
// fleet-wide.
type relay struct {
	n        hubstore.Notifier
	instance string
	events   *broadcaster
	log      *slog.Logger
	// reconnected is counted each time the listener is back after a
	// loss (kioskhub_fleet_events_listener_reconnects_total).
	reconnected func()
	queue       chan wireEvent

	mu   sync.Mutex
	seq  uint64
	full int // events not queued since the last warning

	// Listener state: Listen's goroutine only, but read by health.
	state     sync.Mutex
	down      time.Time // when listening stopped; zero while listening
	downErr   error
	listening bool
	last      map[string]uint64 // instance → last Seq heard
	now       func() time.Time
}

func newRelay(n hubstore.Notifier, instance string, events *broadcaster, reconnected func(), now func() time.Time, log *slog.Logger) *relay {
	return &relay{n: n, instance: instance, events: events, log: log, reconnected: reconnected,
		queue: make(chan wireEvent, relayQueue), last: map[string]uint64{}, now: now}
}

// send queues e for the other instances; it never blocks (the fleet
// service calls it from its own goroutines). Presence is not sent: every
// instance subscribes to the kiosks' retained presence itself.
func (r *relay) send(e fleet.Event) {
	if e.Kind == "presence" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	select {
	case r.queue <- wireEvent{From: r.instance, Seq: r.seq, Event: e}:
	default:
		if r.full == 0 {
			r.log.Warn("fleet events not shared with the other instances: the queue is full (the store is slow)")
		}
		r.full++
	}
}

// run sends the queued events and listens to the other instances' until
// ctx ends; listen is false when this instance serves no watchers.
func (r *relay) run(ctx context.Context, listen bool) {
	var wg sync.WaitGroup
	wg.Go(func() { r.sender(ctx) })
	if listen {
		wg.Go(func() {
			err := r.n.Listen(ctx, eventsChannel, hubstore.Listener{Notification: r.received, Up: r.up, Down: r.lost})
			if err != nil && !errors.Is(err, context.Canceled) {
				r.log.Error("fleet event listener stopped", "err", err)
			}
		})
	}
	wg.Wait()
}

func (r *relay) sender(ctx context.Context) {
	failing := false
	for {
		var w wireEvent
		select {
		case <-ctx.Done():
			return
		case w = <-r.queue:
		}
		data, err := json.Marshal(w)
		if err != nil {
			r.log.Warn("fleet event not shared", "kind", w.Event.Kind, "err", err)
			continue
		}
		// Fleet events are small; one carrying an outsized reason is
		// skipped (its receivers see the gap), never cut.
		if len(data) > hubstore.MaxNotifyPayload {
			r.log.Warn("fleet event not shared: too large for a notification", "kind", w.Event.Kind, "job", w.Event.JobID,
				"device", w.Event.Device, "bytes", len(data), "max", hubstore.MaxNotifyPayload)
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, relayNotifyTimeout)
		err = r.n.Notify(nctx, eventsChannel, data)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			r.log.Warn("fleet events not shared with the other instances", "err", err)
			failing = true
		case err == nil && failing:
			r.log.Info("fleet events shared with the other instances again")
			failing = false
		}
		r.mu.Lock()
		if r.full > 0 && len(r.queue) == 0 {
			r.log.Warn("fleet events were not shared with the other instances", "events", r.full)
			r.full = 0
		}
		r.mu.Unlock()
	}
}

// received is one notification: another instance's event goes to the
// local watchers, preceded by a note when some of that instance's did
// not arrive.
func (r *relay) received(payload []byte) {
	var w wireEvent
	if err := json.Unmarshal(payload, &w); err != nil || w.From == "" || w.Seq == 0 {
		r.log.Warn("fleet event notification not understood", "bytes", len(payload), "err", err)
		return
	}
	if w.From == r.instance {
		return
	}
	r.state.Lock()
	prev, seen := r.last[w.From]
	r.last[w.From] = w.Seq
	r.state.Unlock()
	// A smaller Seq is that instance restarted: counting starts again.
	if seen && w.Seq > prev+1 {
		r.events.note(fmt.Sprintf("%d event(s) of instance %s missing (not shared or not heard)", w.Seq-prev-1, w.From))
	}
	r.events.publish(w.Event)
}

func (r *relay) up() {
	r.state.Lock()
	since := r.down
	r.down, r.downErr, r.listening = time.Time{}, nil, true
	r.state.Unlock()
	if since.IsZero() {
		r.log.Info("fleet events of the other instances followed", "channel", eventsChannel)
		return
	}
	r.log.Info("fleet event listener back", "away", r.now().Sub(since).Round(time.Millisecond))
	if r.reconnected != nil {
		r.reconnected()
	}
	r.events.note(fmt.Sprintf("events of other instances from %s to %s may be missing (this hub's listener reconnected)",
		since.UTC().Format(time.RFC3339), r.now().UTC().Format(time.RFC3339)))
}

func (r *relay) lost(err error, retry time.Duration) {
	r.state.Lock()
	first := r.down.IsZero()
	if first {
		r.down = r.now()
	}
	r.downErr, r.listening = err, false
	r.state.Unlock()
	if first {
		r.log.Warn("fleet event listener lost: watchers see this instance's events only until it is back", "err", err, "retry", retry)
	} else {
		r.log.Debug("fleet event listener still away", "err", err, "retry", retry)
	}
}

// health is Health.Events: "ok" while the other instances' events are
// followed, else what is wrong.
func (r *relay) health() string {
	r.state.Lock()
	defer r.state.Unlock()
	switch {
	case r.listening:
		return "ok"
	case r.downErr != nil:
		return "this instance's events only: " + r.downErr.Error()
	}
	return "starting"
}
