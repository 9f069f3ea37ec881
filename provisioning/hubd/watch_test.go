package hubd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/jobwire"
	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubd"
	"kiosk/provisioning/pgtest"
)

// Two kioskhub instances on one PostgreSQL database and one mosquitto,
// which shares the kiosks' job statuses out between them: a watcher on
// each instance's GET /fleet/events sees the job created once, and every
// status event either instance emitted exactly once, every device's
// terminal status among them, whichever instance consumed it. When the
// database connections are cut, each stream says that events of other
// instances may be missing, and the next job is again seen whole on both.
func TestFleetWatchAcrossInstances(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	ids := []string{"kiosk-w1", "kiosk-w2", "kiosk-w3", "kiosk-w4"}
	f := newFleetKeys(t, ids)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var addrs []string
	for i := range 2 {
		addr := freeAddr(t)
		cfg, err := hubd.Parse(fmt.Appendf(nil, `instance = "watch-%d"
mode = "simulation"
[store]
kind = "postgres"
dsn = %q
max_conns = 4
[mqtt]
brokers = [%q]
%s`, i, dsn, b.URL(), f.conf(addr)))
		if err != nil {
			t.Fatal(err)
		}
		runHub(t, ctx, &wg, cfg)
		addrs = append(addrs, addr)
	}
	for _, a := range addrs {
		waitEventsShared(t, a)
	}
	var ws []*sseWatch
	for _, a := range addrs {
		ws = append(ws, watchEvents(t, ctx, &wg, a, f.token))
	}
	startJobKiosks(t, ctx, &wg, b.URL(), f, ids)
	// Every instance sees the kiosks' presence itself: it is not relayed,
	// so each kiosk comes online once on each stream.
	for i, w := range ws {
		w.follow(t, fmt.Sprintf("instance %d", i), "", ids)
	}
	api := func(method, addr, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
		}
		return out
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n := bytes.Count(api("GET", addrs[0], "/fleet/devices", ""), []byte(`"online":true`)); n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("kiosks not online")
		}
	}
	devices, _ := json.Marshal(ids)
	// The succeeded statuses each instance consumed (and counted: the
	// job outcome counters stay per instance).
	counted := 0
	consumed := func() (split []int, total int) {
		for _, a := range addrs {
			m := regexp.MustCompile(`kioskhub_job_outcomes_total\{status="succeeded"\} (\d+)`).FindSubmatch(api("GET", a, "/metrics", ""))
			n := 0
			if m != nil {
				n, _ = strconv.Atoi(string(m[1]))
			}
			split = append(split, n)
			total += n
		}
		return split, total
	}
	job := func(id string) {
		t.Helper()
		api("POST", addrs[0], "/fleet/jobs", fmt.Sprintf(`{"id":%q,"kind":"ping","devices":%s,"ttl":"5m"}`, id, devices))
		seen := make([]int, len(ws))
		for i, w := range ws {
			seen[i] = w.follow(t, fmt.Sprintf("instance %d", i), id, ids)
		}
		// Each stream carries every status event any instance emitted,
		// no more: one terminal status per device (a repeated or late
		// status changes nothing and is no event), never twice because
		// it was relayed.
		split, total := consumed()
		want := total - counted
		counted = total
		t.Logf("%s: succeeded statuses consumed per instance (cumulative): %v", id, split)
		if want != len(ids) {
			t.Fatalf("%s: instances counted %d succeeded statuses, want %d (one per device)", id, want, len(ids))
		}
		for i, w := range ws {
			w.catchUp(t, fmt.Sprintf("instance %d", i), id, seen[i], want)
		}
	}
	job("watch-a")

	// Every database connection of both instances is cut (listeners
	// included): each stream is told, and the next job is seen whole.
	u, _ := url.Parse(dsn)
	if n, err := pg.TerminateConnections(ctx, strings.TrimPrefix(u.Path, "/")); err != nil || n == 0 {
		t.Fatalf("terminated %d connections: %v", n, err)
	}
	for i, w := range ws {
		select {
		case note := <-w.notes:
			if !strings.Contains(note, "events of other instances from ") || !strings.Contains(note, "may be missing (this hub's listener reconnected)") {
				t.Fatalf("instance %d: note %q", i, note)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("instance %d: no note of the listener's reconnection", i)
		}
	}
	for _, a := range addrs {
		waitEventsShared(t, a)
		if m := api("GET", a, "/metrics", ""); !bytes.Contains(m, []byte("kioskhub_fleet_events_listener_reconnects_total 1")) {
			t.Errorf("%s: reconnection not counted", a)
		}
	}
	// The pools' other connections were cut too: idle for over a second,
	// pgxpool checks them before use instead of failing a job on one.
	time.Sleep(1100 * time.Millisecond)
	job("watch-b")
}

// waitEventsShared waits until the instance's health says its watch
// stream carries the other instances' events.
func waitEventsShared(t *testing.T, addr string) {
	t.Helper()
	var h hubd.Health
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			h = hubd.Health{}
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Events == "ok" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fleet events not shared: %+v (%v)", addr, h, err)
		}
	}
}

// sseWatch is one operator's GET /fleet/events stream: events, and the
// comment lines that say some may be missing.
type sseWatch struct {
	events chan fleet.Event
	notes  chan string
}

// watchEvents opens the stream and returns once the hub has subscribed
// it (its first comment line has arrived); the stream ends with ctx.
func watchEvents(t *testing.T, ctx context.Context, wg *sync.WaitGroup, addr, token string) *sseWatch {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/fleet/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("events: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || sc.Text() != ": kioskhub fleet events" {
		resp.Body.Close()
		t.Fatalf("events stream starts with %q (%v)", sc.Text(), sc.Err())
	}
	w := &sseWatch{events: make(chan fleet.Event, 256), notes: make(chan string, 16)}
	wg.Go(func() {
		defer resp.Body.Close()
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "data: "):
				var e fleet.Event
				if err := json.Unmarshal([]byte(line[len("data: "):]), &e); err != nil {
					t.Errorf("event %s: %v", line, err)
					continue
				}
				select {
				case w.events <- e:
				case <-ctx.Done():
					return
				}
			case strings.HasPrefix(line, ": ") && line != ": keepalive":
				select {
				case w.notes <- line[2:]:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	return w
}

// follow reads the stream until job's creation and every device's
// terminal status are in (job "": every device's presence), then a
// little longer, and fails unless the creation came once, every status
// is succeeded and every device came online once. It returns how many
// terminal statuses it read.
func (w *sseWatch) follow(t *testing.T, who, job string, ids []string) int {
	t.Helper()
	created := 0
	final := map[string][]string{}
	take := func(e fleet.Event) {
		switch {
		case !slices.Contains(ids, e.Device) && e.Kind != "job":
		case job == "" && e.Kind == "presence":
			final[e.Device] = append(final[e.Device], e.Status)
		case job == "" || e.JobID != job:
		case e.Kind == "job" && e.Status == "created":
			created++
		case e.Kind == "status" && jobwire.Terminal(e.Status):
			final[e.Device] = append(final[e.Device], e.Status)
		}
	}
	want := jobwire.StatusSucceeded
	if job == "" {
		created, want = 1, "online"
	}
	for deadline := time.After(20 * time.Second); created == 0 || len(final) < len(ids); {
		select {
		case e := <-w.events:
			take(e)
		case note := <-w.notes:
			t.Fatalf("%s: %s", who, note)
		case <-deadline:
			t.Fatalf("%s saw job %s created %d time(s), terminal statuses %v; want every one of %v", who, job, created, final, ids)
		}
	}
	// Duplicates (an instance delivering its own event twice) would
	// follow at once.
	for settle := time.After(300 * time.Millisecond); ; {
		select {
		case e := <-w.events:
			take(e)
			continue
		case <-settle:
		}
		break
	}
	if created != 1 {
		t.Errorf("%s saw job %s created %d times", who, job, created)
	}
	n := 0
	for _, id := range ids {
		st := final[id]
		n += len(st)
		if len(st) != 1 || slices.ContainsFunc(st, func(s string) bool { return s != want }) {
			t.Errorf("%s: %s's events for job %q: %v, want [%s]", who, id, job, st, want)
		}
	}
	return n
}

// catchUp reads job's terminal statuses beyond the seen ones until there
// are want, and fails on more.
func (w *sseWatch) catchUp(t *testing.T, who, job string, seen, want int) {
	t.Helper()
	for deadline := time.After(5 * time.Second); seen < want; {
		select {
		case e := <-w.events:
			if e.Kind == "status" && e.JobID == job && jobwire.Terminal(e.Status) {
				seen++
			}
		case <-deadline:
			t.Fatalf("%s: %d terminal statuses of %s, the instances emitted %d", who, seen, job, want)
		}
	}
	if seen != want {
		t.Errorf("%s: %d terminal statuses of %s, the instances emitted %d", who, seen, job, want)
	}
}
