package hub

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/hub/mqtttest"
)

// observer is the hub side of a test: a plain paho client.
type observer struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs map[string][][]byte
}

func newObserver(t *testing.T, broker, filter string) *observer {
	t.Helper()
	o := &observer{msgs: map[string][][]byte{}}
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("observer-" + t.Name()).SetAutoReconnect(true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			o.mu.Lock()
			o.msgs[m.Topic()] = append(o.msgs[m.Topic()], append([]byte(nil), m.Payload()...))
			o.mu.Unlock()
		})
	})
	o.c = mqtt.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	return o
}

func (o *observer) waitPresence(t *testing.T, topic, state string) Presence {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		all := o.msgs[topic]
		o.mu.Unlock()
		if len(all) > 0 {
			var p Presence
			if err := json.Unmarshal(all[len(all)-1], &p); err != nil {
				t.Fatalf("presence payload %q: %v", all[len(all)-1], err)
			}
			if p.State == state {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q presence on %s", state, topic)
	return Presence{}
}

func waitStatus(t *testing.T, c *Client, connected bool) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if s := c.Status(); s.Connected == connected {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("client never reached connected=%v; status %+v", connected, c.Status())
	return Status{}
}

func startClient(t *testing.T, brokers ...string) (*Client, func()) {
	t.Helper()
	c, err := New(Options{
		Brokers: brokers, DeviceID: "kiosk-t1", TopicPrefix: "kiosk/v1",
		ConnectTimeout: 2 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		KeepAlive: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, runClient(t, c)
}

// runClient runs c until the returned stop is called, and checks that
// Run returns.
func runClient(t *testing.T, c *Client) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}

func TestMosquittoPresenceCommandsAndShutdown(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	obs := newObserver(t, b.URL(), "kiosk/v1/kiosk-t1/#")
	c, err := New(Options{
		Brokers: []string{b.URL()}, DeviceID: "kiosk-t1", TopicPrefix: "kiosk/v1",
		ConnectTimeout: 2 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		KeepAlive: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	jobs := c.Route("jobs/notify", 4)
	stop := runClient(t, c)
	st := waitStatus(t, c, true)
	if st.State != "ok" || st.Broker != b.URL() {
		t.Fatalf("status after connect: %+v", st)
	}
	p := obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "online")
	if p.Session != st.Session {
		t.Fatalf("presence session %d, status session %d", p.Session, st.Session)
	}

	// A message on a routed topic reaches its channel.
	if tok := obs.c.Publish("kiosk/v1/kiosk-t1/jobs/notify", 1, false, []byte(`{"id":"c1"}`)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case m := <-jobs:
		if m.Name != "jobs/notify" || string(m.Payload) != `{"id":"c1"}` {
			t.Fatalf("routed message = %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("routed message not delivered")
	}

	// Publish a telemetry message and see it arrive.
	if err := c.Publish(context.Background(), "telemetry/test", 1, false, []byte("42")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		obs.mu.Lock()
		n := len(obs.msgs["kiosk/v1/kiosk-t1/telemetry/test"])
		obs.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("telemetry not received")
		}
		time.Sleep(10 * time.Millisecond)
	}

	stop()
	off := obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "offline")
	if off.Session != p.Session {
		t.Fatalf("offline session %d, want %d", off.Session, p.Session)
	}
	if err := c.Publish(context.Background(), "x", 0, false, nil); err != ErrNotConnected {
		t.Fatalf("publish after stop: %v", err)
	}
}

// A broker that is down at start, then dies under a running client, then
// comes back: the client keeps trying and recovers with a new session.
func TestMosquittoDownAtStartAndRestart(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	b.Stop()
	c, stop := startClient(t, b.URL())
	defer stop()
	time.Sleep(700 * time.Millisecond)
	if s := c.Status(); s.Connected || s.State != "down" || s.Detail == "" {
		t.Fatalf("status with broker down: %+v", s)
	}
	b.Start()
	first := waitStatus(t, c, true)

	b.Stop()
	down := waitStatus(t, c, false)
	if down.Reconnects != 1 {
		t.Fatalf("reconnects = %d, want 1", down.Reconnects)
	}
	b.Start()
	second := waitStatus(t, c, true)
	if second.Session <= first.Session {
		t.Fatalf("session did not grow: %d then %d", first.Session, second.Session)
	}
}

// The will: a kiosk that vanishes without a clean disconnect (a cut
// cable) is marked offline by the broker, with the session number of the
// lost connection; when the line is back the kiosk is online again.
func TestWillMarksVanishedKioskOffline(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	px := mqtttest.StartProxy(t, "127.0.0.1:"+strconv.Itoa(b.Port))
	obs := newObserver(t, b.URL(), "kiosk/v1/kiosk-t1/presence")
	c, stop := startClient(t, px.URL())
	defer stop()
	on := obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "online")
	px.Cut(true)
	off := obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "offline")
	if off.Session != on.Session {
		t.Fatalf("will session %d, want %d", off.Session, on.Session)
	}
	waitStatus(t, c, false)
	px.Restore()
	again := obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "online")
	if again.Session <= on.Session {
		t.Fatalf("session %d not newer than %d", again.Session, on.Session)
	}
}

func TestEmbeddedBroker(t *testing.T) {
	eb, err := StartEmbeddedBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eb.Close()
	obs := newObserver(t, eb.URL(), "kiosk/v1/kiosk-t1/#")
	c, stop := startClient(t, eb.URL())
	waitStatus(t, c, true)
	obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "online")
	stop()
	obs.waitPresence(t, "kiosk/v1/kiosk-t1/presence", "offline")

	if _, err := StartEmbeddedBroker("0.0.0.0:0", nil); err == nil {
		t.Fatal("embedded broker accepted a non-loopback address")
	}
}
