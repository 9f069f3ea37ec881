// Package hub is kioskd's MQTT 3.1.1 link to the bank hub (and fleet
// operators). It owns the connection: presence with a last will, reconnect
// with capped exponential back-off and jitter, routed topics in (signed
// jobs, answers), telemetry out. There are no unsigned commands.
// Topics and payloads are documented in docs/mqtt.md.
package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/internal/backoff"
)

// ErrNotConnected is returned by Publish while the link is down.
var ErrNotConnected = errors.New("hub: not connected")

// Options configure a Client.
type Options struct {
	Brokers        []string // tried in order on every connection attempt
	ClientID       string
	DeviceID       string
	TopicPrefix    string // e.g. "kiosk/v1"
	Username       string
	Password       string
	TLS            *tls.Config
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	RetryMin       time.Duration // first reconnect delay (default 500ms)
	RetryMax       time.Duration // back-off cap
	Logger         *slog.Logger
	// OnState is called after every connection state change. It must not block.
	OnState func(Status)
	// Now is injectable for tests; nil means time.Now.
	Now func() time.Time
	// OpenHubPresence, when set, opens the hub instances' sealed presence
	// (<prefix>/_hub/presence/+) and the client follows it: once every
	// instance it knows is offline, Authorize returns ErrHubOffline at
	// once (and ends a wait under way) instead of waiting out the
	// timeout. Nil: hub presence is not followed.
	OpenHubPresence func(payload []byte) (Presence, error)
}

// ErrHubOffline is returned by Authorize while every hub instance the
// kiosk knows has said (sealed) that it is offline: decide offline now.
var ErrHubOffline = errors.New("hub: the hub is offline")

// Message is a message received on a routed topic.
type Message struct {
	Topic   string // full topic
	Name    string // the subtopic below <prefix>/<device>/
	Payload []byte
}

// Status is the link's health.
type Status struct {
	State      string    `json:"state"` // ok, down
	Detail     string    `json:"detail,omitempty"`
	Connected  bool      `json:"connected"`
	Broker     string    `json:"broker,omitempty"`
	Session    uint64    `json:"session"`
	Reconnects uint64    `json:"reconnects"`
	Since      time.Time `json:"since"`
	Dropped    uint64    `json:"dropped_messages"` // routed messages dropped because their consumer lagged
}

// Presence is the retained payload on <prefix>/<id>/presence. The will
// carries the same session number, so a stale "offline" will that arrives
// after a newer "online" can be recognised and ignored (cf. Sparkplug bdSeq).
type Presence struct {
	State   string    `json:"state"` // online, offline
	Session uint64    `json:"session"`
	Time    time.Time `json:"time,omitzero"`
}

// Client is the hub link. Create with New, run with Run.
type Client struct {
	opts Options
	log  *slog.Logger

	mu          sync.Mutex
	status      Status
	conn        mqtt.Client // current connected client, nil when down
	session     uint64
	changed     chan struct{} // closed and replaced on every state change
	routes      map[string]chan Message
	pendingAuth map[string]chan []byte
	// hubs is the last presence of each hub instance; hubDown is closed
	// while all known instances are offline.
	hubs    map[string]Presence
	hubDown chan struct{}
	// kick asks Run to drop the connection and connect again (a new
	// client certificate).
	kick chan string
}

// New checks options and returns a client that is not yet connected.
func New(opts Options) (*Client, error) {
	if len(opts.Brokers) == 0 {
		return nil, errors.New("hub: no broker configured")
	}
	if opts.DeviceID == "" || opts.TopicPrefix == "" {
		return nil, errors.New("hub: device id and topic prefix are required")
	}
	if opts.ClientID == "" {
		opts.ClientID = opts.DeviceID
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 30 * time.Second
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = 500 * time.Millisecond
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		opts: opts,
		log:  log,
		// Session numbers grow across restarts without storage: the first
		// is the start time in milliseconds.
		session:     uint64(opts.Now().UnixMilli()),
		changed:     make(chan struct{}),
		routes:      map[string]chan Message{},
		pendingAuth: map[string]chan []byte{},
		kick:        make(chan string, 1),
		hubs:        map[string]Presence{},
		hubDown:     make(chan struct{}),
	}
	c.status = Status{State: "down", Detail: "not connected yet", Since: opts.Now()}
	return c, nil
}

// Topic returns <prefix>/<device>/<parts...>.
func (c *Client) Topic(parts ...string) string {
	return c.opts.TopicPrefix + "/" + c.opts.DeviceID + "/" + strings.Join(parts, "/")
}

// DeviceID is the kiosk's id, the <device> of its topics.
func (c *Client) DeviceID() string { return c.opts.DeviceID }

// Status returns the current link state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Changed returns a channel that is closed at the next state change
// (connect, loss, stop): a way to wait for the link without polling.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Route delivers messages on <prefix>/<device>/<subtopic> (subscribed at
// QoS 1 on every connection) to the returned channel, which buffers
// buffer messages; when it is full, messages are dropped and counted, as
// paho's handlers must never block. Call before Run.
func (c *Client) Route(subtopic string, buffer int) <-chan Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.routes[subtopic]
	if !ok {
		ch = make(chan Message, max(buffer, 1))
		c.routes[subtopic] = ch
	}
	return ch
}

func (c *Client) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	s := c.status
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.opts.OnState != nil {
		c.opts.OnState(s)
	}
}

// Publish sends a message on <prefix>/<device>/<subtopic> and waits for it
// to be handed to the broker (QoS 1: PUBACK) or for ctx to end.
func (c *Client) Publish(ctx context.Context, subtopic string, qos byte, retained bool, payload []byte) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	tok := conn.Publish(c.Topic(subtopic), qos, retained, payload)
	return waitToken(ctx, tok, c.opts.ConnectTimeout)
}

// waitToken never waits forever on a paho token (a known paho pitfall).
func waitToken(ctx context.Context, tok mqtt.Token, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("hub: no answer from broker within %s", limit)
	}
}

// Reconnect makes Run close the connection cleanly and connect again at
// once, e.g. with a renewed client certificate (TLS settings are read at
// each connection).
func (c *Client) Reconnect(reason string) {
	select {
	case c.kick <- reason:
	default: // one is pending already
	}
}

// Run keeps the link up until ctx ends, then publishes "offline" and
// disconnects cleanly.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		lost := make(chan error, 1)
		conn, err := c.connect(ctx, lost)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			attempt++
			wait := backoff.Exp(c.opts.RetryMin, c.opts.RetryMax, attempt)
			c.log.Warn("hub connection failed", "err", err, "retry_in", wait.Round(time.Millisecond))
			c.setStatus(func(s *Status) {
				if s.Connected || s.State != "down" {
					s.Since = c.opts.Now()
				}
				s.State, s.Connected, s.Detail = "down", false, err.Error()
			})
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
			continue
		}
		attempt = 0
		select {
		case <-ctx.Done():
			c.goOffline(conn)
			return nil
		case reason := <-c.kick:
			c.log.Info("hub: reconnecting", "reason", reason)
			c.goOffline(conn)
			c.setStatus(func(s *Status) { s.Detail = "reconnecting: " + reason; s.Reconnects++ })
		case err := <-lost:
			c.log.Warn("hub connection lost", "err", err)
			c.mu.Lock()
			c.conn = nil
			c.mu.Unlock()
			c.setStatus(func(s *Status) {
				s.State, s.Connected, s.Detail, s.Since = "down", false, "connection lost: "+err.Error(), c.opts.Now()
				s.Reconnects++
			})
			conn.Disconnect(0)
			if !backoff.Sleep(ctx, backoff.Exp(c.opts.RetryMin, c.opts.RetryMax, 1)) {
				return nil
			}
		}
	}
}

func (c *Client) goOffline(conn mqtt.Client) {
	c.mu.Lock()
	session := c.session
	c.conn = nil
	c.mu.Unlock()
	b, _ := json.Marshal(Presence{State: "offline", Session: session, Time: c.opts.Now().UTC()})
	tok := conn.Publish(c.Topic("presence"), 1, true, b)
	if err := waitToken(context.Background(), tok, 2*time.Second); err != nil {
		c.log.Warn("hub: offline presence not sent", "err", err)
	}
	conn.Disconnect(250)
	c.setStatus(func(s *Status) {
		s.State, s.Connected, s.Detail, s.Since = "down", false, "stopped", c.opts.Now()
	})
}

// connect makes one connection attempt over all brokers.
func (c *Client) connect(ctx context.Context, lost chan<- error) (mqtt.Client, error) {
	c.mu.Lock()
	c.session++
	session := c.session
	c.mu.Unlock()

	will, _ := json.Marshal(Presence{State: "offline", Session: session})
	o := mqtt.NewClientOptions()
	for _, b := range c.opts.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(c.opts.ClientID)
	o.SetUsername(c.opts.Username)
	o.SetPassword(c.opts.Password)
	if c.opts.TLS != nil {
		o.SetTLSConfig(c.opts.TLS)
	}
	o.SetProtocolVersion(4) // MQTT 3.1.1
	// A persistent session with a fixed client id keeps QoS 1 commands that
	// arrive while the kiosk is away.
	o.SetCleanSession(false)
	o.SetKeepAlive(c.opts.KeepAlive)
	o.SetPingTimeout(c.opts.ConnectTimeout)
	o.SetConnectTimeout(c.opts.ConnectTimeout)
	o.SetWriteTimeout(c.opts.ConnectTimeout)
	// We reconnect ourselves, with jitter, so a fleet does not reconnect in
	// lock-step after a hub outage.
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetOrderMatters(false)
	o.SetBinaryWill(c.Topic("presence"), will, 1, true)
	// A persistent session delivers queued messages right after CONNACK,
	// before Subscribe has registered a handler: route those too.
	o.SetDefaultPublishHandler(c.dispatch)
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case lost <- err:
		default:
		}
	})
	var lastBroker struct {
		sync.Mutex
		url string
	}
	o.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		if b, ok := n.(mqtt.ConnectionNotificationBroker); ok && b.Broker != nil {
			lastBroker.Lock()
			lastBroker.url = b.Broker.Redacted()
			lastBroker.Unlock()
		}
	})
	conn := mqtt.NewClient(o)
	if err := waitToken(ctx, conn.Connect(), c.opts.ConnectTimeout+time.Second); err != nil {
		conn.Disconnect(0)
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(c.opts.Brokers, ", "), err)
	}
	// Subscribe on every connection (the session may be new on another
	// broker): authorization responses and routed topics.
	filters := []string{c.Topic(TopicAuthRsp)}
	if c.opts.OpenHubPresence != nil {
		filters = append(filters, c.hubPresenceTopic("+"))
	}
	c.mu.Lock()
	for sub := range c.routes {
		filters = append(filters, c.Topic(sub))
	}
	c.mu.Unlock()
	for _, f := range filters {
		if err := waitToken(ctx, conn.Subscribe(f, 1, c.dispatch), c.opts.ConnectTimeout); err != nil {
			conn.Disconnect(0)
			return nil, fmt.Errorf("subscribe to %s: %w", f, err)
		}
	}
	online, _ := json.Marshal(Presence{State: "online", Session: session, Time: c.opts.Now().UTC()})
	if err := waitToken(ctx, conn.Publish(c.Topic("presence"), 1, true, online), c.opts.ConnectTimeout); err != nil {
		conn.Disconnect(0)
		return nil, fmt.Errorf("publish presence: %w", err)
	}
	lastBroker.Lock()
	broker := lastBroker.url
	lastBroker.Unlock()
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	c.setStatus(func(s *Status) {
		s.State, s.Connected, s.Detail, s.Broker, s.Session, s.Since = "ok", true, "", broker, session, c.opts.Now()
	})
	c.log.Info("hub connected", "broker", broker, "session", session)
	return conn, nil
}

// dispatch runs on paho's router for every incoming message. It never
// blocks: messages go to buffered channels, and are dropped (counted)
// when a consumer lags; QoS 1 senders retry what is not answered.
func (c *Client) dispatch(_ mqtt.Client, m mqtt.Message) {
	if inst, ok := strings.CutPrefix(m.Topic(), c.hubPresenceTopic("")); ok && c.opts.OpenHubPresence != nil {
		c.onHubPresence(inst, m.Payload())
		return
	}
	sub, ok := strings.CutPrefix(m.Topic(), c.Topic(""))
	if !ok {
		return
	}
	if sub == TopicAuthRsp {
		c.onAuthResponse(m.Payload())
		return
	}
	msg := Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...)}
	c.mu.Lock()
	ch := c.routes[sub]
	c.mu.Unlock()
	msg.Name = sub
	if ch == nil {
		return
	}
	select {
	case ch <- msg:
	default:
		c.mu.Lock()
		c.status.Dropped++
		c.mu.Unlock()
	}
}

func (c *Client) hubPresenceTopic(instance string) string {
	return c.opts.TopicPrefix + "/" + HubPresenceLevel + "/presence/" + instance
}

// onHubPresence follows one hub instance's presence. An empty payload
// (a retained message cleared) forgets the instance; a presence whose
// session is lower than the instance's last is stale (a late will) and
// ignored; one that does not open is logged and ignored.
func (c *Client) onHubPresence(instance string, payload []byte) {
	if instance == "" || strings.Contains(instance, "/") {
		return
	}
	var p Presence
	if len(payload) > 0 {
		var err error
		if p, err = c.opts.OpenHubPresence(payload); err != nil || (p.State != "online" && p.State != "offline") {
			c.log.Warn("hub: hub presence refused", "instance", instance, "err", err, "state", p.State)
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, seen := c.hubs[instance]
	switch {
	case len(payload) == 0:
		delete(c.hubs, instance)
	case seen && p.Session < old.Session:
		return
	default:
		c.hubs[instance] = p
	}
	down := len(c.hubs) > 0
	for _, h := range c.hubs {
		down = down && h.State != "online"
	}
	select {
	case <-c.hubDown: // closed: the hub was down
		if !down {
			c.hubDown = make(chan struct{})
			c.log.Info("hub: hub online again", "instance", instance)
		}
	default:
		if down {
			close(c.hubDown)
			c.log.Warn("hub: every hub instance is offline: payments are decided offline at once", "instance", instance)
		}
	}
}

// HubOffline reports whether every hub instance the kiosk knows of has
// said it is offline (false when none is known).
func (c *Client) HubOffline() bool {
	c.mu.Lock()
	ch := c.hubDown
	c.mu.Unlock()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// HubInstances returns the last presence of each hub instance known.
func (c *Client) HubInstances() map[string]Presence {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.hubs)
}

// hubDownCh is closed while the hub is offline (see HubOffline).
func (c *Client) hubDownCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hubDown
}
