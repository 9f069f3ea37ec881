package refhub

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
)

func signer(t *testing.T, cn string) *txreport.Signer {
	t.Helper()
	k, c, err := devkey.Generate(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := txreport.NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The hub's sealed presence: a kiosk that sees every hub instance offline
// gets ErrHubOffline from Authorize at once; a forged "online" changes
// nothing; a new instance brings the hub back.
func TestHubPresence(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	auth := signer(t, "hub-auth")
	keys := txreport.NewKeyring()
	if err := keys.Add(auth.Certificate()); err != nil {
		t.Fatal(err)
	}
	startHub := func(id string) (stop func()) {
		store, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := New(Options{Brokers: []string{b.URL()}, ClientID: id, Keyring: txreport.NewKeyring(), Store: store, Signer: auth})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = h.Run(ctx) }()
		select {
		case <-h.Connected():
		case <-time.After(20 * time.Second):
			t.Fatal("hub did not connect")
		}
		return func() { cancel(); <-done; store.Close() }
	}
	stop1 := startHub("hub-1")

	c, err := hub.New(hub.Options{Brokers: []string{b.URL()}, DeviceID: "kiosk-p1", TopicPrefix: "kiosk/v1", RetryMax: time.Second,
		OpenHubPresence: func(p []byte) (hub.Presence, error) {
			var pr hub.Presence
			_, err := keys.Open(p, &pr)
			return pr, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the link", func() bool { return c.Status().Connected })
	if c.HubOffline() {
		t.Fatal("hub offline while it runs")
	}

	stop1()
	waitFor("the hub's offline presence", c.HubOffline)
	actx, acancel := context.WithTimeout(context.Background(), time.Minute)
	defer acancel()
	if _, err := c.Authorize(actx, hub.AuthRequest{TxID: "t1", Amount: 100, Currency: "CNY"}, nil); !errors.Is(err, hub.ErrHubOffline) {
		t.Fatalf("authorize with the hub offline: %v", err)
	}

	// A forged "online" (sealed by a key the kiosk does not trust, and an
	// unsealed one) changes nothing.
	rogue := signer(t, "hub-auth")
	forged, err := rogue.Seal(hub.Presence{State: "online", Session: uint64(time.Now().UnixMilli()) + 1000})
	if err != nil {
		t.Fatal(err)
	}
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("rogue"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	for _, p := range [][]byte{forged, []byte(`{"state":"online","session":99999999999999}`)} {
		if tok := pub.Publish("kiosk/v1/_hub/presence/hub-1", 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// A genuine marker published after them on the same connection: once
	// it is seen, the forgeries were handled, and hub-1 is still offline.
	marker, err := auth.Seal(hub.Presence{State: "offline", Session: 1})
	if err != nil {
		t.Fatal(err)
	}
	if tok := pub.Publish("kiosk/v1/_hub/presence/marker", 1, false, marker); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitFor("the marker", func() bool { _, ok := c.HubInstances()["marker"]; return ok })
	if p := c.HubInstances()["hub-1"]; p.State != "offline" || !c.HubOffline() {
		t.Fatalf("a forged presence was taken: %+v", p)
	}
	stop2 := startHub("hub-2")
	defer stop2()
	waitFor("the second instance", func() bool { return !c.HubOffline() })
}
