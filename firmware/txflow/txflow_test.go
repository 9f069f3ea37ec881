package txflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/offline"
	"kiosk/firmware/outbox"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

const device = "kiosk-t1"

type kiosk struct {
	flow   *Flow
	hub    *hub.Client
	outbox *outbox.Outbox
	ledger *offline.Ledger
	signer *txreport.Signer

	mu        sync.Mutex
	delivered map[string]time.Time
}

type kioskOpts struct {
	maxRecords  int
	limits      offline.Limits
	authTimeout time.Duration
}

// hubSigner is the reference hubs' authorization-signing key, which every
// test kiosk trusts (hub.auth_cert in kioskd).
var hubSigner = sync.OnceValues(func() (*txreport.Signer, error) {
	key, cert, err := devkey.Generate("test-hub", time.Hour)
	if err != nil {
		return nil, err
	}
	return txreport.NewSigner(key, cert)
})

func testHubSigner(t testing.TB) *txreport.Signer {
	t.Helper()
	s, err := hubSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startKiosk(t testing.TB, brokers []string, ko kioskOpts) *kiosk {
	t.Helper()
	dir := t.TempDir()
	key, cert, err := devkey.Generate(device, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := txreport.NewSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Options{
		Brokers: brokers, DeviceID: device, TopicPrefix: "kiosk/v1",
		ConnectTimeout: 2 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond, KeepAlive: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{MaxRecords: ko.maxRecords})
	if err != nil {
		t.Fatal(err)
	}
	if ko.limits == (offline.Limits{}) {
		ko.limits = offline.Limits{Floor: 5000, Cap: 8000, Currency: "CHF"}
	}
	lg, err := offline.Open(filepath.Join(dir, "offline.db"), ko.limits)
	if err != nil {
		t.Fatal(err)
	}
	k := &kiosk{hub: h, outbox: ob, ledger: lg, signer: signer, delivered: map[string]time.Time{}}
	if ko.authTimeout == 0 {
		ko.authTimeout = 2 * time.Second
	}
	hubKeys := txreport.NewKeyring()
	if err := hubKeys.Add(testHubSigner(t).Certificate()); err != nil {
		t.Fatal(err)
	}
	k.flow, err = New(Options{
		Hub: h, Outbox: ob, Offline: lg, Signer: signer, HubKeys: hubKeys, AuthTimeout: ko.authTimeout, ResendAfter: time.Second,
		OnDelivered: func(id string) {
			k.mu.Lock()
			k.delivered[id] = time.Now()
			k.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	wg.Go(func() { _ = k.flow.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("hub client or sender did not stop after cancel")
		}
		ob.Close()
		lg.Close()
	})
	return k
}

func (k *kiosk) waitConnected(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !k.hub.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("kiosk not connected: %+v", k.hub.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (k *kiosk) waitDrained(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for k.outbox.Stats().Depth > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outbox not drained: %+v", k.flow.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type hubSide struct {
	store *hubstore.Bolt
	ring  *txreport.Keyring
	hubs  []*refhub.Hub
	stop  func() // stops the hub instances (idempotent)
}

func startHubs(t testing.TB, brokers []string, n int, limits hubstore.Limits, trust ...*txreport.Signer) *hubSide {
	t.Helper()
	store, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	return startHubsOn(t, store, brokers, n, limits, trust...)
}

// startHubsOn is startHubs on an existing hub store.
func startHubsOn(t testing.TB, store *hubstore.Bolt, brokers []string, n int, limits hubstore.Limits, trust ...*txreport.Signer) *hubSide {
	t.Helper()
	hs := &hubSide{store: store, ring: txreport.NewKeyring()}
	for _, s := range trust {
		if err := hs.ring.Add(s.Certificate()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		h, err := refhub.New(refhub.Options{Brokers: brokers, ClientID: "refhub-" + strconv.Itoa(i), Keyring: hs.ring, Signer: testHubSigner(t), Store: store, Limits: limits})
		if err != nil {
			t.Fatal(err)
		}
		hs.hubs = append(hs.hubs, h)
		wg.Go(func() { _ = h.Run(ctx) })
		select {
		case <-h.Connected():
		case <-time.After(10 * time.Second):
			t.Fatal("reference hub did not connect")
		}
	}
	hs.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(hs.stop)
	return hs
}

func (hs *hubSide) stats() refhub.Stats {
	var s refhub.Stats
	for _, h := range hs.hubs {
		x := h.Stats()
		s.Applied += x.Applied
		s.Duplicates += x.Duplicates
		s.Rejected += x.Rejected
	}
	return s
}

func report(txID string, amount int64, auth Authorization) *txreport.Report {
	now := time.Now()
	r := &txreport.Report{
		V: txreport.Version, TxID: txID, Terminal: device, Merchant: "Test Shop", Kind: "payment",
		Amount: amount, Currency: "CHF", Started: txreport.Timestamp(now.Add(-10 * time.Second)), Decided: txreport.Timestamp(now),
		DocHash:  txreport.DocumentHash([]byte("test-salt-123456"), "D", "T22000129"),
		Checks:   []txreport.Check{{Name: "passive_authentication", OK: true}},
		Scores:   []txreport.Score{txreport.NewScore("match", 0.8, 0.6), txreport.NewScore("liveness", 0.9, 0.7), txreport.NewScore("consent", 1, 1)},
		Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOnline, Ref: auth.Ref},
	}
	if !auth.Online {
		r.Auth.Mode = txreport.AuthOffline
	}
	if !auth.Approved {
		r.Decision, r.Reasons = txreport.Declined, []string{auth.Reason}
	}
	return r
}

func commit(t testing.TB, k *kiosk, txID string, amount int64) {
	t.Helper()
	if err := k.flow.Commit(context.Background(), report(txID, amount, Authorization{Approved: true, Online: true, Ref: "A-x"})); err != nil {
		t.Fatal(err)
	}
}

// Reports committed while the broker restarts and while the line is cut
// all reach the hub exactly once; redeliveries are recognised as
// duplicates, acknowledged again and not applied twice.
func TestDeliveryExactlyOnceAcrossRestartAndCut(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	px := mqtttest.StartProxy(t, "127.0.0.1:"+strconv.Itoa(b.Port))
	k := startKiosk(t, []string{px.URL()}, kioskOpts{})
	hs := startHubs(t, []string{b.URL()}, 1, hubstore.Limits{}, k.signer)
	k.waitConnected(t)

	var ids []string
	add := func(n int) {
		for range n {
			id := fmt.Sprintf("tx-%03d", len(ids))
			ids = append(ids, id)
			commit(t, k, id, 100)
		}
	}
	add(10)
	b.Stop() // hub and kiosk both lose the broker
	add(10)  // committed while the broker is down
	b.Start()
	add(5)
	px.Cut(true) // the kiosk's line is cut (no clean disconnect)
	add(10)
	time.Sleep(300 * time.Millisecond)
	px.Restore()
	add(5)
	k.waitDrained(t, 30*time.Second)

	txs, err := hubstore.All(context.Background(), hs.store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tx := range txs {
		got = append(got, tx.TxID)
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Fatalf("hub holds %d transactions %v, want %d", len(got), got, len(ids))
	}
	st := hs.stats()
	if st.Applied != uint64(len(ids)) {
		t.Fatalf("applied %d, want %d", st.Applied, len(ids))
	}

	// A redelivery of an applied report (as QoS 1 allows): re-acked as a
	// duplicate, not applied again.
	env, err := k.signer.Sign(report("tx-000", 100, Authorization{Approved: true, Online: true, Ref: "A-x"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.hub.Publish(context.Background(), hub.TopicTx, 1, false, env); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hs.stats().Duplicates <= st.Duplicates {
		if time.Now().After(deadline) {
			t.Fatal("duplicate not detected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	txs, _ = hubstore.All(context.Background(), hs.store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
	if len(txs) != len(ids) || hs.stats().Applied != uint64(len(ids)) {
		t.Fatalf("duplicate applied: %d held, %d applied", len(txs), hs.stats().Applied)
	}
	t.Logf("delivered %d, hub duplicates %d, kiosk published %d", len(ids), hs.stats().Duplicates, k.flow.Status().Published)
}

func TestOnlineAuthorizationLimits(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{})
	startHubs(t, []string{b.URL()}, 1, hubstore.Limits{MaxTx: 10000, MaxDaily: 15000}, k.signer)
	k.waitConnected(t)
	for _, s := range []struct {
		tx     string
		amount int64
		want   string
	}{
		{"p1", 8000, ""},
		{"p2", 12000, hubstore.ReasonOverTxLimit},
		{"p3", 7000, ""},
		{"p1", 8000, ""}, // asked again: same answer, not counted twice
		{"p4", 1, hubstore.ReasonOverDailyLimit},
	} {
		a, err := k.flow.Authorize(context.Background(), Payment{TxID: s.tx, Merchant: "Shop", Amount: s.amount, Currency: "CHF"})
		if err != nil {
			t.Fatal(err)
		}
		if !a.Online || a.Approved != (s.want == "") || a.Reason != s.want || (a.Approved && a.Ref == "") {
			t.Fatalf("%s %d: %+v, want reason %q", s.tx, s.amount, a, s.want)
		}
	}
}

// The hub does not answer (no hub process) → timeout → offline floor
// limit and cap; the broker gone entirely → offline at once. Offline
// approvals are delivered when the hub is back, and the cap frees up.
func TestOfflineFallback(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{authTimeout: time.Second})
	k.waitConnected(t)
	ctx := context.Background()
	start := time.Now()
	a, err := k.flow.Authorize(ctx, Payment{TxID: "o1", Amount: 4000, Currency: "CHF"})
	if err != nil || !a.Approved || a.Online {
		t.Fatalf("silent hub, under floor: %+v %v", a, err)
	}
	if el := time.Since(start); el < time.Second || el > 5*time.Second {
		t.Fatalf("timeout took %s", el)
	}
	if a, _ := k.flow.Authorize(ctx, Payment{TxID: "o2", Amount: 5001, Currency: "CHF"}); a.Approved || a.Reason != offline.ReasonOverFloor {
		t.Fatalf("over floor: %+v", a)
	}
	b.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for k.hub.Status().Connected && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start = time.Now()
	a, _ = k.flow.Authorize(ctx, Payment{TxID: "o3", Amount: 4000, Currency: "CHF"})
	// At once: well under the hub timeout it would otherwise wait.
	if !a.Approved || a.Online || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("broker down, within cap: %+v after %s", a, time.Since(start))
	}
	if a, _ := k.flow.Authorize(ctx, Payment{TxID: "o4", Amount: 1, Currency: "CHF"}); a.Approved || a.Reason != offline.ReasonCapReached {
		t.Fatalf("broker down, over cap: %+v", a)
	}
	for _, id := range []string{"o1", "o3"} {
		if err := k.flow.Commit(ctx, report(id, 4000, Authorization{Approved: true})); err != nil {
			t.Fatal(err)
		}
	}
	if st := k.flow.Status(); st.Offline.Exposure != 8000 || st.Outbox.Depth != 2 {
		t.Fatalf("status while offline: %+v", st)
	}
	b.Start()
	hs := startHubs(t, []string{b.URL()}, 1, hubstore.Limits{}, k.signer)
	k.waitDrained(t, 15*time.Second)
	if st := k.flow.Status(); st.Offline.Exposure != 0 || st.Delivered != 2 {
		t.Fatalf("after delivery: %+v", st)
	}
	txs, _ := hubstore.All(context.Background(), hs.store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
	if len(txs) != 2 || txs[0].AuthMode != txreport.AuthOffline {
		t.Fatalf("hub holds %+v", txs)
	}
}

func TestOutboxFullAlarm(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	b.Stop()
	k := startKiosk(t, []string{b.URL()}, kioskOpts{maxRecords: 5})
	ctx := context.Background()
	for i := range 4 {
		commit(t, k, "f"+strconv.Itoa(i), 10)
	}
	if st := k.flow.Status(); st.Alarm != "outbox_high" {
		t.Fatalf("at 80%%: %+v", st)
	}
	if a, _ := k.flow.Authorize(ctx, Payment{TxID: "x1", Amount: 10, Currency: "CHF"}); a.Approved || a.Reason != offline.ReasonOutboxFull {
		t.Fatalf("offline approval at 80%%: %+v", a)
	}
	commit(t, k, "f4", 10)
	if a, _ := k.flow.Authorize(ctx, Payment{TxID: "x2", Amount: 10, Currency: "CHF"}); a.Approved || a.Reason != ReasonOutboxFull {
		t.Fatalf("authorization when full: %+v", a)
	}
	if err := k.flow.Commit(ctx, report("f5", 10, Authorization{Approved: true, Online: true})); !errors.Is(err, outbox.ErrFull) {
		t.Fatalf("commit when full: %v", err)
	}
	if st := k.flow.Status(); st.Alarm != "outbox_full" || st.OldestAgeS <= 0 {
		t.Fatalf("status when full: %+v", st)
	}
}

// Two hub instances share the load through $share/refhub/...: each
// report is applied once, and both instances take part.
func TestSharedSubscriptionTwoHubs(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{})
	hs := startHubs(t, []string{b.URL()}, 2, hubstore.Limits{}, k.signer)
	k.waitConnected(t)
	const n = 40
	for i := range n {
		commit(t, k, fmt.Sprintf("s-%02d", i), 100)
	}
	k.waitDrained(t, 20*time.Second)
	a, c := hs.hubs[0].Stats(), hs.hubs[1].Stats()
	if a.Applied+c.Applied != n || a.Applied == 0 || c.Applied == 0 {
		t.Fatalf("applied %d + %d, want %d shared between both", a.Applied, c.Applied, n)
	}
	txs, _ := hubstore.All(context.Background(), hs.store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
	if len(txs) != n {
		t.Fatalf("hub holds %d", len(txs))
	}
	t.Logf("instance 0 applied %d, instance 1 applied %d", a.Applied, c.Applied)
}

// A report from a device the hub does not know is rejected and not
// acknowledged: it stays in the outbox until the hub trusts the device.
func TestUnknownDeviceNotAcked(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{})
	hs := startHubs(t, []string{b.URL()}, 1, hubstore.Limits{}) // trusts nobody
	k.waitConnected(t)
	commit(t, k, "u1", 100)
	deadline := time.Now().Add(5 * time.Second)
	for hs.stats().Rejected == 0 {
		if time.Now().After(deadline) {
			t.Fatal("report not rejected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if d := k.outbox.Stats().Depth; d != 1 {
		t.Fatalf("rejected report left the outbox (depth %d)", d)
	}
	if err := hs.ring.Add(k.signer.Certificate()); err != nil {
		t.Fatal(err)
	}
	k.waitDrained(t, 10*time.Second) // resent after ResendAfter, now accepted
	if txs, _ := hubstore.All(context.Background(), hs.store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20); len(txs) != 1 {
		t.Fatalf("hub holds %d", len(txs))
	}
}

// Decision-to-hub-ack latency over loopback mosquitto: from Commit
// (signed, fsynced) to the hub's ack removing the record.
func BenchmarkDecisionToHubAck(b *testing.B) {
	br := mqtttest.StartMosquitto(b)
	k := startKiosk(b, []string{br.URL()}, kioskOpts{maxRecords: 1 << 20})
	startHubs(b, []string{br.URL()}, 1, hubstore.Limits{}, k.signer)
	k.waitConnected(b)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		id := "b-" + strconv.Itoa(i)
		i++
		start := time.Now()
		commit(b, k, id, 100)
		for {
			k.mu.Lock()
			at, ok := k.delivered[id]
			k.mu.Unlock()
			if ok {
				lat = append(lat, at.Sub(start))
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// A genuine report replayed on another kiosk's topic is rejected.
func TestReportOnForeignTopicRejected(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{})
	hs := startHubs(t, []string{b.URL()}, 1, hubstore.Limits{}, k.signer)
	other, err := hub.New(hub.Options{Brokers: []string{b.URL()}, DeviceID: "kiosk-t2", TopicPrefix: "kiosk/v1", ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = other.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); !other.Status().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("second client not connected")
		}
	}
	env, err := k.signer.Sign(report("r1", 100, Authorization{Approved: true, Online: true}))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Publish(ctx, hub.TopicTx, 1, false, env); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); hs.stats().Rejected == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("foreign-topic report not rejected")
		}
	}
	if txs, _ := hubstore.All(context.Background(), hs.store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20); len(txs) != 0 {
		t.Fatalf("applied: %+v", txs)
	}
}

// The hub stores a report but its acknowledgement never reaches the kiosk
// (the hub dies between storing and acking). The kiosk keeps the record
// and publishes it again; a hub on the same store recognises the
// duplicate and acknowledges it, and only then does the record leave the
// outbox: applied once, lost never.
func TestLostAckRedelivered(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{})
	k.waitConnected(t)
	store, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	ring := txreport.NewKeyring()
	if err := ring.Add(k.signer.Certificate()); err != nil {
		t.Fatal(err)
	}

	// The dying hub: stores what it receives and never acknowledges.
	got := make(chan []byte, 16)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("dying-hub"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("dying hub connect: %v", tok.Error())
	}
	if tok := c.Subscribe("kiosk/v1/+/tx", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("dying hub subscribe: %v", tok.Error())
	}
	commit(t, k, "tx-lost-ack", 100)
	var env []byte
	select {
	case env = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("report never published")
	}
	rep, dev, err := ring.Verify(env)
	if err != nil {
		t.Fatal(err)
	}
	if dup, err := store.Apply(context.Background(), rep, env, txreport.Fingerprint(dev.Cert), "dying-hub", time.Now()); err != nil || dup {
		t.Fatalf("apply: dup %v, %v", dup, err)
	}
	c.Disconnect(0)

	// No ack: the record stays, and is published again after ResendAfter.
	deadline := time.Now().Add(10 * time.Second)
	for k.flow.Status().Published < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no resend of the unacknowledged record: %+v", k.flow.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := k.outbox.Stats().Depth; d != 1 {
		t.Fatalf("unacknowledged record left the outbox (depth %d)", d)
	}

	hs := startHubsOn(t, store, []string{b.URL()}, 1, hubstore.Limits{}, k.signer)
	k.waitDrained(t, 10*time.Second)
	st := hs.stats()
	if st.Applied != 0 || st.Duplicates == 0 {
		t.Fatalf("second hub: applied %d, duplicates %d; want the resend recognised as a duplicate", st.Applied, st.Duplicates)
	}
	txs, err := hubstore.All(context.Background(), store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 1 || txs[0].TxID != "tx-lost-ack" {
		t.Fatalf("hub holds %+v, want tx-lost-ack once", txs)
	}
}

// Authorization is signed both ways. The hub refuses a request the device
// did not sign; the kiosk ignores an approval the hub did not sign (a
// rogue publisher on its response topic), waits for the real answer, and
// without one decides offline.
func TestSignedAuthorization(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{authTimeout: time.Second})
	hs := startHubs(t, []string{b.URL()}, 1, hubstore.Limits{MaxTx: 3000}, k.signer)
	k.waitConnected(t)

	// A real answer, signed: a decline over the hub's limit proves it came
	// from the hub and not from the offline rules (which would approve).
	if a, err := k.flow.Authorize(context.Background(), Payment{TxID: "s1", Merchant: "Shop", Amount: 4000, Currency: "CHF"}); err != nil ||
		!a.Online || a.Approved || a.Reason != hubstore.ReasonOverTxLimit {
		t.Fatalf("signed round trip: %+v %v", a, err)
	}

	// The hub ignores an unsigned request, and one signed by another key
	// under the device's name.
	rogue := mqttClient(t, b.URL(), "rogue")
	req := hub.AuthRequest{ID: "rogue-1", TxID: "r1", Terminal: device, Merchant: "Shop", Amount: 100, Currency: "CHF", Expires: time.Now().Add(time.Minute)}
	plain, _ := json.Marshal(req)
	key, cert, err := devkey.Generate(device, time.Hour) // right name, wrong key
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := txreport.NewSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := impostor.Seal(req)
	if err != nil {
		t.Fatal(err)
	}
	before := hs.stats()
	for _, p := range [][]byte{plain, forged} {
		if tok := rogue.Publish("kiosk/v1/"+device+"/auth/req", 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for hs.stats().Rejected < before.Rejected+2 {
		if time.Now().After(deadline) {
			t.Fatalf("hub did not reject both requests: %+v", hs.stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := hs.stats(); st.AuthApproved != before.AuthApproved || st.AuthDeclined != before.AuthDeclined {
		t.Fatalf("hub answered a request the device did not sign: %+v", st)
	}

	// The hub is gone; a rogue answers every request at once with an
	// approval: unsigned, signed by a stranger, and a genuine hub-signed
	// approval of another amount (as if carried over from a small
	// payment). The kiosk takes none: the request times out and the
	// offline rules decide (this amount is over the offline floor, so:
	// declined).
	var rogueAnswers atomic.Int32
	hs.stop()
	if tok := rogue.Subscribe("kiosk/v1/+/auth/req", 1, func(c mqtt.Client, m mqtt.Message) {
		var env txreport.Sealed
		var r hub.AuthRequest
		if json.Unmarshal(m.Payload(), &env) != nil || json.Unmarshal(env.Body, &r) != nil {
			return
		}
		resp := hub.AuthResponse{ID: r.ID, TxID: r.TxID, Terminal: r.Terminal, Amount: r.Amount, Currency: r.Currency, Approved: true, Ref: "ROGUE"}
		unsigned, _ := json.Marshal(resp)
		stranger, _ := impostor.Seal(resp)
		small := resp
		small.Amount = 1
		carried, _ := testHubSigner(t).Seal(small)
		for _, p := range [][]byte{unsigned, stranger, carried} {
			c.Publish("kiosk/v1/"+device+"/auth/resp", 1, false, p)
			rogueAnswers.Add(1)
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	start := time.Now()
	a, err := k.flow.Authorize(context.Background(), Payment{TxID: "s2", Merchant: "Shop", Amount: 6000, Currency: "CHF"})
	if err != nil || a.Online || a.Approved || a.Reason != offline.ReasonOverFloor || a.Ref == "ROGUE" {
		t.Fatalf("with only rogue answers: %+v %v", a, err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("decided after %s, before the 1 s timeout: a rogue answer was taken", el)
	}
	if n := rogueAnswers.Load(); n < 3 {
		t.Fatalf("the rogue answered %d times: the test did not test", n)
	}
}

func mqttClient(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// The codec's two response paths: with hub keys only a response a trusted
// hub signed decodes; without (simulation) a sealed response's body and a
// plain one both do.
func TestAuthCodecDecodeResponse(t *testing.T) {
	want := hub.AuthResponse{ID: "c1", TxID: "t1", Terminal: device, Amount: 100, Currency: "CHF", Approved: true, Ref: "A-1"}
	sealed, err := testHubSigner(t).Seal(want)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	keys := txreport.NewKeyring()
	if err := keys.Add(testHubSigner(t).Certificate()); err != nil {
		t.Fatal(err)
	}
	verifying := authCodec{hubs: keys}
	if got, err := verifying.DecodeResponse(sealed); err != nil || got != want {
		t.Fatalf("verified, signed: %+v %v", got, err)
	}
	if got, err := verifying.DecodeResponse(plain); err == nil {
		t.Fatalf("verified, unsigned: accepted %+v", got)
	}
	for name, b := range map[string][]byte{"sealed": sealed, "plain": plain} {
		if got, err := (authCodec{}).DecodeResponse(b); err != nil || got != want {
			t.Fatalf("unverified, %s: %+v %v", name, got, err)
		}
	}
}

// Acks are sealed by the hub and name the terminal and the report. A rogue
// publisher on the kiosk's ack topic changes nothing: an unsigned ack, one
// sealed by a stranger, a hub-sealed ack for another terminal or naming
// another report, and garbage are each refused and counted, the report
// stays queued and its offline exposure stays held. The hub's own ack then
// removes it; the same ack replayed afterwards is only counted as stale.
func TestForgedAcksChangeNothing(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{authTimeout: 300 * time.Millisecond})
	k.waitConnected(t)

	// No hub yet: the payment is approved offline and its report waits.
	a, err := k.flow.Authorize(context.Background(), Payment{TxID: "ack-1", Merchant: "Shop", Amount: 1200, Currency: "CHF"})
	if err != nil || !a.Approved || a.Online {
		t.Fatalf("offline approval: %+v %v", a, err)
	}
	if err := k.flow.Commit(context.Background(), report("ack-1", 1200, a)); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := k.outbox.Get("ack-1")
	if err != nil || !ok {
		t.Fatalf("outbox get: %v %v", ok, err)
	}
	hash, err := txreport.ReportHash(rec.Payload)
	if err != nil {
		t.Fatal(err)
	}
	other, err := k.signer.Sign(report("ack-2", 1200, a))
	if err != nil {
		t.Fatal(err)
	}
	otherHash, err := txreport.ReportHash(other)
	if err != nil {
		t.Fatal(err)
	}
	if otherHash == hash {
		t.Fatal("two reports hash alike")
	}
	key, cert, err := devkey.Generate("test-hub", time.Hour) // the hub's name, another key
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := txreport.NewSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	good := hub.TxAck{TxID: "ack-1", Terminal: device, ReportSHA256: hash, Status: "applied"}
	plain, _ := json.Marshal(good)
	byStranger, _ := stranger.Seal(good)
	elsewhere := good
	elsewhere.Terminal = "kiosk-other"
	forOther, _ := testHubSigner(t).Seal(elsewhere)
	mismatched := good
	mismatched.ReportSHA256 = otherHash
	wrongReport, _ := testHubSigner(t).Seal(mismatched)
	forged := [][]byte{plain, byStranger, forOther, wrongReport, []byte(`{"tx_id":"ack-1"`)}

	exposure := k.ledger.Status().Exposure
	if exposure != 1200 {
		t.Fatalf("offline exposure %d, want 1200", exposure)
	}
	rogue := mqttClient(t, b.URL(), "rogue")
	for _, p := range forged {
		if tok := rogue.Publish("kiosk/v1/"+device+"/tx-ack", 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for k.flow.Status().AcksRefused < uint64(len(forged)) {
		if time.Now().After(deadline) {
			t.Fatalf("forged acks not all refused: %+v", k.flow.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := k.flow.Status()
	if st.AcksRefused != uint64(len(forged)) || st.Delivered != 0 || st.Outbox.Depth != 1 || st.AckRefusal == "" {
		t.Fatalf("after forged acks: %+v", st)
	}
	if has, _ := k.outbox.Has("ack-1"); !has {
		t.Fatal("a forged ack removed the report")
	}
	if e := k.ledger.Status().Exposure; e != exposure {
		t.Fatalf("a forged ack released offline exposure: %d → %d", exposure, e)
	}

	// The real hub: its ack (captured on the way) removes the report.
	acks := make(chan []byte, 4)
	if tok := rogue.Subscribe("kiosk/v1/"+device+"/tx-ack", 1, func(_ mqtt.Client, m mqtt.Message) { acks <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	startHubs(t, []string{b.URL()}, 1, hubstore.Limits{}, k.signer)
	k.waitDrained(t, 10*time.Second)
	if e := k.ledger.Status().Exposure; e != 0 {
		t.Fatalf("offline exposure %d after the hub's ack, want 0", e)
	}
	var genuine []byte
	select {
	case genuine = <-acks:
	case <-time.After(5 * time.Second):
		t.Fatal("the hub's ack was not seen")
	}
	var got hub.TxAck
	ring := txreport.NewKeyring()
	if err := ring.Add(testHubSigner(t).Certificate()); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Open(genuine, &got); err != nil || got != good {
		t.Fatalf("hub ack %+v (%v), want %+v", got, err, good)
	}
	before := k.flow.Status()
	if tok := rogue.Publish("kiosk/v1/"+device+"/tx-ack", 1, false, genuine); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	deadline = time.Now().Add(10 * time.Second)
	for k.flow.Status().AcksStale == before.AcksStale {
		if time.Now().After(deadline) {
			t.Fatalf("replayed ack not counted: %+v", k.flow.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := k.flow.Status(); st.AcksRefused != before.AcksRefused || st.Delivered != 1 {
		t.Fatalf("after the replay: %+v", st)
	}
}

// A report the hub refuses for good (hub.AckRefused, sealed by the hub,
// naming exactly the queued report) leaves the outbox and is counted; it
// is not counted delivered.
func TestRefusedAckDropsReport(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	k := startKiosk(t, []string{b.URL()}, kioskOpts{authTimeout: 300 * time.Millisecond})
	k.waitConnected(t)
	a, err := k.flow.Authorize(context.Background(), Payment{TxID: "ref-1", Merchant: "Shop", Amount: 700, Currency: "CHF"})
	if err != nil || !a.Approved {
		t.Fatalf("offline approval: %+v %v", a, err)
	}
	if err := k.flow.Commit(context.Background(), report("ref-1", 700, a)); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := k.outbox.Get("ref-1")
	if err != nil || !ok {
		t.Fatalf("outbox get: %v %v", ok, err)
	}
	hash, err := txreport.ReportHash(rec.Payload)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := testHubSigner(t).Seal(hub.TxAck{TxID: "ref-1", Terminal: device, ReportSHA256: hash, Status: hub.AckRefused})
	if err != nil {
		t.Fatal(err)
	}
	c := mqttClient(t, b.URL(), "hub-like")
	if tok := c.Publish("kiosk/v1/"+device+"/tx-ack", 1, false, ack); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	deadline := time.Now().Add(10 * time.Second)
	for k.flow.Status().HubRefused == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("refused ack not taken: %+v", k.flow.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := k.flow.Status()
	if st.Outbox.Depth != 0 || st.Delivered != 0 || st.LastHubRefused != "ref-1" {
		t.Fatalf("after a refused ack: %+v", st)
	}
}
