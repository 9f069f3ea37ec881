package hubqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/provisioning/rabbittest"
)

func TestTopicKeys(t *testing.T) {
	for _, tc := range []struct {
		topic, key string
		ok         bool
	}{
		{"kiosk/v1/dev1/tx", "kiosk.v1.dev1.tx", true},
		{"kiosk/v1/dev1/auth/resp", "kiosk.v1.dev1.auth.resp", true},
		{"kiosk/v1/dev.1/tx", "", false}, // "." would split a level
		{"kiosk/v1/+/tx", "", false},
		{"kiosk/v1/#", "", false},
		{"kiosk/v1/a*b/tx", "", false},
		{"kiosk//dev1/tx", "", false},
		{"", "", false},
	} {
		key, err := TopicToKey(tc.topic)
		if (err == nil) != tc.ok || key != tc.key {
			t.Errorf("TopicToKey(%q) = %q, %v", tc.topic, key, err)
		}
		if tc.ok && KeyToTopic(key) != tc.topic {
			t.Errorf("KeyToTopic(%q) = %q", key, KeyToTopic(key))
		}
	}
	if k, err := FilterToKey("kiosk/v1/+/auth/req"); err != nil || k != "kiosk.v1.*.auth.req" {
		t.Errorf("FilterToKey = %q, %v", k, err)
	}
	subs := []string{"tx", "auth/req"}
	for _, tc := range []struct {
		topic, dev, sub string
		ok              bool
	}{
		{"kiosk/v1/dev1/tx", "dev1", "tx", true},
		{"kiosk/v1/dev1/auth/req", "dev1", "auth/req", true},
		{"kiosk/v1/dev1/tx/x", "", "", false},
		{"kiosk/v1/dev/1/tx", "", "", false},
		{"kiosk/v1//tx", "", "", false},
		{"kiosk/v2/dev1/tx", "", "", false},
		{"kiosk/v1/dev1", "", "", false},
		{"kiosk/v1/+/tx", "", "", false},
	} {
		dev, sub, ok := split(tc.topic, "kiosk/v1", subs)
		if ok != tc.ok || dev != tc.dev || sub != tc.sub {
			t.Errorf("split(%q) = %q, %q, %v", tc.topic, dev, sub, ok)
		}
	}
	if _, err := New(Options{URLs: []string{"amqp://x/"}, Prefix: "a.b"}); err == nil {
		t.Error("New accepted a prefix with a dot")
	}
}

// TestDisconnected: without a reachable node Run keeps retrying until its
// context ends, and Publish waits for a connection until its own does.
func TestDisconnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "amqp://guest:guest@" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there now
	cl, err := New(Options{URLs: []string{url}, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx, func(context.Context, Msg) { t.Error("handler called") }) }()
	pctx, pcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer pcancel()
	if err := cl.Publish(pctx, "kiosk/v1/dev1/tx-ack", []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish without a connection: %v", err)
	}
	if err := cl.Publish(pctx, "kiosk/v1/dev.1/tx-ack", []byte("x")); !errors.Is(err, ErrTopic) {
		t.Errorf("Publish to an unroutable topic: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, ok := cl.Connected(); ok || cl.Stats().Connects != 0 {
		t.Errorf("connected to nothing: %+v", cl.Stats())
	}
}

// TestCluster runs every scenario against one 3-node cluster (a cluster
// takes about 15 s to start here); the node kill comes last.
func TestCluster(t *testing.T) {
	c := rabbittest.Start(t, 3)
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, c) })
	t.Run("ShareWork", func(t *testing.T) { testShareWork(t, c) })
	t.Run("Malformed", func(t *testing.T) { testMalformed(t, c) })
	t.Run("DeadConsumer", func(t *testing.T) { testDeadConsumer(t, c) })
	t.Run("KioskAway", func(t *testing.T) { testKioskAway(t, c) })
	t.Run("NodeKilled", func(t *testing.T) { testNodeKilled(t, c) })
}

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// run starts a client's Run and stops it at the end of the test; stop
// cancels it earlier and waits for Run to return.
func run(t *testing.T, opts Options, h Handler) (cl *Client, stop func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = logger(t)
	}
	opts.RetryMin, opts.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cl, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-cl.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("consumer not ready after 30s")
	}
	return cl, stop
}

// mqttClient connects a paho client (MQTT 3.1.1) to url.
func mqttClient(t *testing.T, url, id string, clean bool) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	cl := mqtt.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

func publish(t *testing.T, cl mqtt.Client, topic, payload string) {
	t.Helper()
	tok := cl.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt publish %s: %v", topic, tok.Error())
	}
}

// subscribe forwards what cl receives on filter to the returned channel
// (never blocking paho's goroutine).
func subscribe(t *testing.T, cl mqtt.Client, filter string) <-chan mqtt.Message {
	t.Helper()
	ch := make(chan mqtt.Message, 1024)
	tok := cl.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case ch <- m:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe %s: %v", filter, tok.Error())
	}
	return ch
}

// testRoundTrip: a kiosk publishes on node 1, the hub consumes on node 2
// and replies, the kiosk's subscription on node 3 receives the reply.
func testRoundTrip(t *testing.T, c *rabbittest.Cluster) {
	hubc := make(chan *Client, 1)
	handler := func(ctx context.Context, m Msg) {
		cl := <-hubc
		hubc <- cl
		if m.Device != "dev1" || m.Sub != "tx" || m.Topic != "kiosk/v1/dev1/tx" {
			t.Errorf("message %+v", m)
		}
		if err := cl.Publish(ctx, "kiosk/v1/"+m.Device+"/tx-ack", append([]byte("ack:"), m.Payload...)); err != nil {
			t.Errorf("publish reply: %v", err)
			_ = m.Nack(true)
			return
		}
		if err := m.Ack(); err != nil {
			t.Errorf("ack: %v", err)
		}
	}
	cl, _ := run(t, Options{URLs: []string{c.Node(1).AMQPURL()}, Workers: 1}, handler)
	hubc <- cl
	if got := cl.BindingKeys(); !slices.Equal(got, []string{"kiosk.v1.*.tx", "kiosk.v1.*.auth.req"}) {
		t.Errorf("binding keys %v", got)
	}

	// The kiosk: a persistent session (quorum subscription queue) on
	// node 3, publishing on node 1.
	sub := mqttClient(t, c.Node(2).MQTTURL(), "dev1", false)
	replies := subscribe(t, sub, "kiosk/v1/dev1/tx-ack")
	pub := mqttClient(t, c.Node(0).MQTTURL(), "dev1-pub", true)

	const n = 100
	var rtts []time.Duration
	for i := range n {
		want := fmt.Sprintf("ack:report-%d", i)
		begin := time.Now()
		publish(t, pub, "kiosk/v1/dev1/tx", fmt.Sprintf("report-%d", i))
		select {
		case m := <-replies:
			rtts = append(rtts, time.Since(begin))
			if string(m.Payload()) != want || m.Topic() != "kiosk/v1/dev1/tx-ack" || m.Qos() != 1 {
				t.Fatalf("reply %q on %s at QoS %d, want %q at QoS 1", m.Payload(), m.Topic(), m.Qos(), want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no reply to report %d", i)
		}
	}
	slices.Sort(rtts)
	t.Logf("MQTT→AMQP→MQTT round trip over 3 nodes, %d sequential: p50 %s, p90 %s, max %s",
		n, rtts[n/2].Round(10*time.Microsecond), rtts[n*9/10].Round(10*time.Microsecond), rtts[n-1].Round(10*time.Microsecond))

	// What the queues are: the shared one and the kiosk's durable
	// subscription are quorum queues.
	out, err := c.Ctl(0, "list_queues", "name", "type", "--formatter", "json")
	if err != nil {
		t.Fatalf("list_queues: %v\n%s", err, out)
	}
	for _, q := range []string{"kiosk-hub", "mqtt-subscription-dev1qos1"} {
		if !strings.Contains(out, `"name":"`+q+`","type":"quorum"`) {
			t.Errorf("%s is not a quorum queue: %s", q, out)
		}
	}
	if s := cl.Stats(); s.Delivered != n || s.Acked != n || s.Published != n {
		t.Errorf("stats %+v", s)
	}
}

// tally records which consumer handled which payload.
type tally struct {
	mu  sync.Mutex
	got map[string][]string
}

func (ta *tally) add(who, what string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if ta.got == nil {
		ta.got = map[string][]string{}
	}
	ta.got[what] = append(ta.got[what], who)
}

func (ta *tally) len() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return len(ta.got)
}

func (ta *tally) waitFor(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for ta.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages handled after %s", ta.len(), n, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testShareWork: two instances consume one queue, each message is handled
// by one of them.
func testShareWork(t *testing.T, c *rabbittest.Cluster) {
	var ta tally
	h := func(who string) Handler {
		return func(_ context.Context, m Msg) {
			time.Sleep(time.Millisecond) // some work, so both get some
			ta.add(who, string(m.Payload))
			if err := m.Ack(); err != nil {
				t.Errorf("ack: %v", err)
			}
		}
	}
	opts := Options{Queue: "share", Prefix: "kiosk/share", Prefetch: 4, Workers: 2}
	opts.URLs = []string{c.Node(0).AMQPURL()}
	a, _ := run(t, opts, h("a"))
	opts.URLs = []string{c.Node(2).AMQPURL()}
	b, _ := run(t, opts, h("b"))
	pub := mqttClient(t, c.Node(1).MQTTURL(), "share-pub", true)
	const n = 200
	for i := range n {
		publish(t, pub, fmt.Sprintf("kiosk/share/dev%d/auth/req", i%7), fmt.Sprintf("req-%d", i))
	}
	ta.waitFor(t, n, 20*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate would show now
	per := map[string]int{}
	for what, who := range ta.got {
		if len(who) != 1 {
			t.Errorf("%s handled %d times (%v)", what, len(who), who)
		}
		per[who[0]]++
	}
	t.Logf("%d messages: %v", n, per)
	if per["a"] == 0 || per["b"] == 0 {
		t.Errorf("work not shared: %v", per)
	}
	if sa, sb := a.Stats(), b.Stats(); sa.Delivered+sb.Delivered != n {
		t.Errorf("delivered %d + %d", sa.Delivered, sb.Delivered)
	}
}

// testMalformed: a message in the queue whose routing key is not a
// kiosk's is dropped (acked) with a log, not redelivered for ever, and
// does not reach the handler.
func testMalformed(t *testing.T, c *rabbittest.Cluster) {
	var ta tally
	cl, _ := run(t, Options{URLs: c.AMQPURLs(), Queue: "malformed", Prefix: "kiosk/mal"}, func(_ context.Context, m Msg) {
		ta.add("h", m.Topic)
		_ = m.Ack()
	})
	// Bound by hand with a key the client would never bind: a device id
	// with a dot arrives as one level more.
	conn, err := amqp.Dial(c.Node(0).AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("malformed", "kiosk.mal.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	pub := mqttClient(t, c.Node(0).MQTTURL(), "mal-pub", true)
	publish(t, pub, "kiosk/mal/dev.1/tx", "x")
	publish(t, pub, "kiosk/mal/dev1/other", "x")
	publish(t, pub, "kiosk/mal/dev1/tx", "ok")
	ta.waitFor(t, 1, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for cl.Stats().Malformed < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	s := cl.Stats()
	if s.Malformed != 2 || ta.len() != 1 || ta.got["kiosk/mal/dev1/tx"] == nil {
		t.Errorf("stats %+v, handled %v", s, ta.got)
	}
}

// testDeadConsumer: an instance takes a message and dies without acking
// (its TCP connection cut, as by a crash); the broker gives the message
// to the other instance.
func testDeadConsumer(t *testing.T, c *rabbittest.Cluster) {
	proxy := mqtttest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", c.Node(0).AMQPPort))
	taken := make(chan Msg, 1)
	opts := Options{Queue: "dead", Prefix: "kiosk/dead", Prefetch: 1, Workers: 1}
	opts.URLs = []string{strings.Replace(proxy.URL(), "tcp://", "amqp://guest:guest@", 1) + "/"}
	_, stopX := run(t, opts, func(ctx context.Context, m Msg) {
		taken <- m
		<-ctx.Done() // hangs on it, never acks
	})
	pub := mqttClient(t, c.Node(1).MQTTURL(), "dead-pub", true)
	publish(t, pub, "kiosk/dead/dev9/tx", "orphan")
	var first Msg
	select {
	case first = <-taken:
	case <-time.After(10 * time.Second):
		t.Fatal("first instance got nothing")
	}
	if first.Redelivered {
		t.Error("first delivery marked redelivered")
	}
	got := make(chan Msg, 4)
	opts.URLs = []string{c.Node(2).AMQPURL()}
	y, _ := run(t, opts, func(_ context.Context, m Msg) {
		got <- m
		if err := m.Ack(); err != nil {
			t.Errorf("ack: %v", err)
		}
	})
	select {
	case m := <-got:
		t.Fatalf("second instance got %q while the first held it", m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
	begin := time.Now()
	proxy.Cut(true) // the first instance is gone
	select {
	case m := <-got:
		t.Logf("redelivered to the other instance %s after the cut", time.Since(begin).Round(time.Millisecond))
		if string(m.Payload) != "orphan" || !m.Redelivered {
			t.Errorf("got %q redelivered=%v", m.Payload, m.Redelivered)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("message not redelivered after the first instance died")
	}
	stopX()
	if s := y.Stats(); s.Delivered != 1 {
		t.Errorf("second instance stats %+v", s)
	}
}

// testKioskAway: a reply published while the kiosk is offline waits in its
// persistent session's (quorum) queue and reaches it when it comes back,
// through another node.
func testKioskAway(t *testing.T, c *rabbittest.Cluster) {
	hubc := make(chan *Client, 1)
	cl, _ := run(t, Options{URLs: []string{c.Node(0).AMQPURL()}, Prefix: "kiosk/away"}, func(ctx context.Context, m Msg) {
		cl := <-hubc
		hubc <- cl
		if err := cl.Publish(ctx, "kiosk/away/"+m.Device+"/auth/resp", []byte("resp")); err != nil {
			t.Errorf("publish: %v", err)
		}
		_ = m.Ack()
	})
	hubc <- cl
	kiosk := mqttClient(t, c.Node(2).MQTTURL(), "away1", false)
	subscribe(t, kiosk, "kiosk/away/away1/auth/resp")
	kiosk.Disconnect(100)
	pub := mqttClient(t, c.Node(1).MQTTURL(), "away-pub", true)
	publish(t, pub, "kiosk/away/away1/auth/req", "req")
	deadline := time.Now().Add(10 * time.Second)
	for cl.Stats().Published == 0 {
		if time.Now().After(deadline) {
			t.Fatal("hub did not reply")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Back, through node 1: the session's queue delivers what it holds
	// right after CONNECT, to the default handler.
	got := make(chan mqtt.Message, 1)
	o := mqtt.NewClientOptions().AddBroker(c.Node(0).MQTTURL()).SetClientID("away1").SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			select {
			case got <- m:
			default:
			}
		})
	back := mqtt.NewClient(o)
	if tok := back.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("reconnect: %v", tok.Error())
	}
	defer back.Disconnect(100)
	select {
	case m := <-got:
		if m.Topic() != "kiosk/away/away1/auth/resp" || string(m.Payload()) != "resp" || m.Qos() != 1 {
			t.Errorf("got %q on %s at QoS %d", m.Payload(), m.Topic(), m.Qos())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reply kept for the away kiosk never arrived")
	}
}

// testNodeKilled: the node the instance is connected to (and which leads
// the queue, declared through it) is killed with messages in flight and
// waiting; the instance fails over, nothing in the queue is lost, and
// messages published afterwards arrive.
func testNodeKilled(t *testing.T, c *rabbittest.Cluster) {
	var ta tally
	gate := make(chan struct{})
	opts := Options{Queue: "failover", Prefix: "kiosk/fo", Prefetch: 8, Workers: 2,
		URLs: []string{c.Node(1).AMQPURL(), c.Node(2).AMQPURL(), c.Node(0).AMQPURL()}}
	cl, _ := run(t, opts, func(ctx context.Context, m Msg) {
		select {
		case <-gate:
		case <-ctx.Done():
			return
		}
		if err := m.Ack(); err == nil {
			ta.add("h", string(m.Payload))
		}
	})
	if url, ok := cl.Connected(); !ok || url != c.Node(1).AMQPURL() {
		t.Fatalf("connected to %q", url)
	}
	// Declared through node 2, the queue is led there (client-local
	// leader placement): the kill below takes the leader too.
	out, err := c.Ctl(0, "list_queues", "name", "leader", "members", "--formatter", "json")
	if err != nil {
		t.Fatalf("list_queues: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"name":"failover","leader":"`+c.Node(1).Name+`"`) {
		t.Errorf("queue not led by %s: %s", c.Node(1).Name, out)
	}
	pub := mqttClient(t, c.Node(0).MQTTURL(), "fo-pub", true)
	const n = 30
	for i := range n {
		publish(t, pub, "kiosk/fo/dev1/tx", fmt.Sprintf("before-%d", i))
	}
	time.Sleep(200 * time.Millisecond) // 8 taken (unacked), the rest waiting
	begin := time.Now()
	c.Kill(1)
	close(gate)
	deadline := time.Now().Add(30 * time.Second)
	for {
		url, ok := cl.Connected()
		if ok && url != c.Node(1).AMQPURL() {
			t.Logf("failed over to %s in %s", url, time.Since(begin).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failover after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range n {
		publish(t, pub, "kiosk/fo/dev1/tx", fmt.Sprintf("after-%d", i))
	}
	ta.waitFor(t, 2*n, 30*time.Second)
	t.Logf("all %d messages handled %s after the kill; stats %+v", 2*n, time.Since(begin).Round(time.Millisecond), cl.Stats())
	if s := cl.Stats(); s.Connects < 2 || s.Acked < 2*n {
		t.Errorf("stats %+v", s)
	}
}
