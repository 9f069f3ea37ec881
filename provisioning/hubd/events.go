package hubd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"kiosk/provisioning/fleet"
)

// GET /fleet/events streams the fleet service's events (presence changes,
// job statuses, rollouts created, done or aborted) as server-sent events,
// for kioskctl fleet watch: nothing is polled. A job status reaches only
// the instance whose shared subscription (or queue) took it, so with the
// PostgreSQL store every instance also shares its events with the others
// (relay.go, LISTEN/NOTIFY): a watch on any instance shows the whole
// fleet. With the bolt store there is one instance, and its own events.

// eventBuffer bounds what a slow watcher may fall behind by; beyond it,
// events are dropped for that watcher (counted in a comment line).
const eventBuffer = 256

// broadcaster fans the fleet service's events out to the watchers. The
// fleet service calls publish from its own goroutines; it never blocks.
type broadcaster struct {
	mu   sync.Mutex
	subs map[*watcher]struct{}
}

type watcher struct {
	ch      chan item
	dropped int
}

// item is an event, or a note for the stream's comment lines (events
// that may be missing).
type item struct {
	e    fleet.Event
	note string
}

func newBroadcaster() *broadcaster { return &broadcaster{subs: map[*watcher]struct{}{}} }

func (b *broadcaster) publish(e fleet.Event) { b.send(item{e: e}) }

// note tells every watcher, in its stream's order, that events may be
// missing and why.
func (b *broadcaster) note(s string) { b.send(item{note: s}) }

func (b *broadcaster) send(it item) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.subs {
		select {
		case w.ch <- it:
		default:
			w.dropped++
		}
	}
}

func (b *broadcaster) subscribe() (*watcher, func()) {
	w := &watcher{ch: make(chan item, eventBuffer)}
	b.mu.Lock()
	b.subs[w] = struct{}{}
	b.mu.Unlock()
	return w, func() {
		b.mu.Lock()
		delete(b.subs, w)
		b.mu.Unlock()
	}
}

// takeDropped returns and resets the watcher's dropped count.
func (b *broadcaster) takeDropped(w *watcher) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := w.dropped
	w.dropped = 0
	return n
}

// sseKeepalive is how often an idle stream sends a comment, so proxies
// and the client see the connection alive.
const sseKeepalive = 15 * time.Second

func serveEvents(b *broadcaster) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			writeJSONError(w, http.StatusInternalServerError, "streaming unsupported")
			return
		}
		sub, stop := b.subscribe()
		defer stop()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, ": kioskhub fleet events\n\n")
		fl.Flush()
		keep := time.NewTicker(sseKeepalive)
		defer keep.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-keep.C:
				fmt.Fprint(w, ": keepalive\n\n")
			case it := <-sub.ch:
				if n := b.takeDropped(sub); n > 0 {
					fmt.Fprintf(w, ": %d event(s) dropped (this watcher fell behind)\n\n", n)
				}
				if it.note != "" {
					fmt.Fprintf(w, ": %s\n\n", it.note)
					break
				}
				e := it.e
				data, err := json.Marshal(e)
				if err != nil {
					continue
				}
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Kind, data)
			}
			fl.Flush()
		}
	}
}
