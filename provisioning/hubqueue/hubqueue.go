// Package hubqueue is the hub's work source on RabbitMQ, whose MQTT plugin
// (3.10) has no shared subscriptions: hub instances share the kiosks'
// reports and authorization requests by consuming one durable quorum queue
// over AMQP 0-9-1, and answer through the same topic exchange the MQTT
// plugin publishes to, so kiosks receive the replies on their MQTT
// subscriptions.
//
// Topology (declared by every instance, idempotently):
//
//	MQTT PUBLISH kiosk/v1/<dev>/tx ──▶ amq.topic ──(kiosk.v1.*.tx, kiosk.v1.*.auth.req)──▶ quorum queue "kiosk-hub"
//	                                                                                          │ manual acks, prefetch
//	hub instances (AMQP) ◀────────────────────────────────────────────────────────────────────┘
//	hub reply kiosk.v1.<dev>.tx-ack ──▶ amq.topic ──▶ the kiosk's MQTT subscription queue ──▶ MQTT QoS 1
//
// A message is acknowledged to the broker only when the handler says it is
// done with it; the unacknowledged work of an instance that dies (or whose
// node dies) goes back to the queue and to another instance. The quorum
// queue is replicated on the cluster's nodes and survives the loss of a
// minority of them.
package hubqueue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"kiosk/firmware/hub"
	"kiosk/internal/backoff"
)

// Options configure a Client. Every instance sharing a queue must declare
// it with the same Queue, DeliveryLimit and bindings (RabbitMQ refuses a
// declaration whose arguments differ from the existing queue's).
type Options struct {
	// URLs are AMQP URLs of the cluster's nodes
	// (amqp://user:pass@host:5672/vhost, amqps:// with TLS). A connection
	// goes to the first that answers, starting after the node last lost.
	URLs []string
	TLS  *tls.Config
	// Queue is the shared queue; default "kiosk-hub".
	Queue string
	// Exchange is the MQTT plugin's topic exchange (mqtt.exchange);
	// default "amq.topic".
	Exchange string
	// Prefix is the MQTT topic prefix; default "kiosk/v1".
	Prefix string
	// Topics are the sub-topics consumed under <Prefix>/<device>/;
	// default tx and auth/req.
	Topics []string
	// Prefetch bounds the unacknowledged messages held by the instance;
	// default 16.
	Prefetch int
	// Workers run the handler concurrently; default 4.
	Workers int
	// DeliveryLimit drops a message delivered more often than this
	// (a handler that crashes its instance on it must not take down every
	// instance in turn); default 20, negative for none.
	DeliveryLimit int
	// RetryMin and RetryMax bound the reconnection back-off (exponential,
	// jittered); defaults 200 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// DialTimeout bounds one connection attempt; default 3 s.
	DialTimeout time.Duration
	// Heartbeat detects a silent peer; default 10 s.
	Heartbeat time.Duration
	// ConfirmTimeout bounds the wait for the broker's publisher confirm;
	// default 5 s.
	ConfirmTimeout time.Duration
	// Name is sent as the connection name (shown by rabbitmqctl);
	// default "hubqueue".
	Name   string
	Logger *slog.Logger
}

// Handler handles one message. It must settle it, with Ack when done with
// it (handled, or deliberately dropped) or Nack; a message it leaves
// unsettled is requeued when it returns. It runs on one of Workers
// goroutines and may Publish.
type Handler func(ctx context.Context, m Msg)

// Msg is one delivery.
type Msg struct {
	Topic       string // MQTT topic, <prefix>/<device>/<sub>
	Device      string
	Sub         string // one of Options.Topics
	Payload     []byte
	Redelivered bool // delivered before, possibly to another instance

	d       *amqp.Delivery
	settled *atomic.Bool
	stats   *counters
}

// Ack tells the broker the message is done with: it is removed from the
// queue. An error means the channel it came on is gone, and the broker
// redelivers it.
func (m Msg) Ack() error {
	if !m.settled.CompareAndSwap(false, true) {
		return errors.New("hubqueue: message settled twice")
	}
	if err := m.d.Ack(false); err != nil {
		return fmt.Errorf("hubqueue: ack: %w", err)
	}
	m.stats.acked.Add(1)
	return nil
}

// Nack gives the message back: to the queue (and possibly another
// instance) with requeue, dropped without.
func (m Msg) Nack(requeue bool) error {
	if !m.settled.CompareAndSwap(false, true) {
		return errors.New("hubqueue: message settled twice")
	}
	if err := m.d.Nack(false, requeue); err != nil {
		return fmt.Errorf("hubqueue: nack: %w", err)
	}
	m.stats.nacked.Add(1)
	return nil
}

// Stats count what the client did.
type Stats struct {
	Connects  uint64 `json:"connects"`
	Delivered uint64 `json:"delivered"`
	Acked     uint64 `json:"acked"`     // acks sent (on a live channel)
	Nacked    uint64 `json:"nacked"`    // nacks sent (on a live channel)
	Unsettled uint64 `json:"unsettled"` // left unsettled by the handler, requeued
	Malformed uint64 `json:"malformed"` // routing key not <prefix>.<device>.<topic>, dropped
	Published uint64 `json:"published"`
	Refused   uint64 `json:"refused"` // publishes the broker nacked (each attempt)
}

type counters struct {
	connects, delivered, acked, nacked, unsettled, malformed, published, refused atomic.Uint64
}

// refusedAttempts bounds the publishes of one message the broker refuses.
const refusedAttempts = 4

// ErrNotConnected is returned by Publish when no connection came up in
// time.
var ErrNotConnected = errors.New("hubqueue: not connected")

// ErrRefused is returned by Publish when the broker refused (nacked) the
// message on every attempt: a queue it routes to has no leader.
var ErrRefused = errors.New("refused by the broker")

// errChannelClosed: the publishing channel closed before the broker
// confirmed (closed by the broker, or by another publish's refusal).
var errChannelClosed = errors.New("the channel closed before the broker confirmed")

// Client consumes the shared queue and publishes replies.
type Client struct {
	opts Options
	log  *slog.Logger
	keys []string // binding keys

	stats counters
	ready chan struct{}
	once  sync.Once

	mu      sync.Mutex
	sess    *session      // nil while disconnected
	changed chan struct{} // closed and replaced when sess changes
	next    int           // index of the URL to try first
}

// session is one connection: a consuming channel and a publishing one in
// confirm mode.
type session struct {
	url   string
	conn  *amqp.Connection
	pubMu sync.Mutex
	pub   *amqp.Channel
}

// New checks options and fills defaults.
func New(opts Options) (*Client, error) {
	if len(opts.URLs) == 0 {
		return nil, errors.New("hubqueue: no AMQP URL")
	}
	if opts.Queue == "" {
		opts.Queue = "kiosk-hub"
	}
	if opts.Exchange == "" {
		opts.Exchange = "amq.topic"
	}
	if opts.Prefix == "" {
		opts.Prefix = "kiosk/v1"
	}
	if len(opts.Topics) == 0 {
		opts.Topics = []string{hub.TopicTx, hub.TopicAuthReq}
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 16
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.DeliveryLimit == 0 {
		opts.DeliveryLimit = 20
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 200 * time.Millisecond
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(5*time.Second, opts.RetryMin)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 3 * time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 10 * time.Second
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = 5 * time.Second
	}
	if opts.Name == "" {
		opts.Name = "hubqueue"
	}
	c := &Client{opts: opts, log: opts.Logger, ready: make(chan struct{}), changed: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if _, err := TopicToKey(opts.Prefix); err != nil {
		return nil, fmt.Errorf("hubqueue: prefix: %w", err)
	}
	for _, t := range opts.Topics {
		k, err := FilterToKey(opts.Prefix + "/+/" + t)
		if err != nil {
			return nil, fmt.Errorf("hubqueue: topic %q: %w", t, err)
		}
		c.keys = append(c.keys, k)
	}
	return c, nil
}

// BindingKeys are the routing keys the queue is bound with.
func (c *Client) BindingKeys() []string { return c.keys }

// Ready is closed once the first consumer is running.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Connected reports whether a connection is up, and to which URL.
func (c *Client) Connected() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return "", false
	}
	return c.sess.url, true
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Connects: s.connects.Load(), Delivered: s.delivered.Load(), Acked: s.acked.Load(),
		Nacked: s.nacked.Load(), Unsettled: s.unsettled.Load(), Malformed: s.malformed.Load(),
		Published: s.published.Load(), Refused: s.refused.Load(),
	}
}

// Run connects, declares the queue and its bindings, and hands every
// delivery to h until ctx ends, reconnecting (to another node when one
// is lost) with back-off. In-flight handlers finish before Run returns;
// what they leave unacknowledged the broker redelivers. Call it once; it
// returns nil when ctx ends.
func (c *Client) Run(ctx context.Context, h Handler) error {
	for attempt := 0; ; {
		if ctx.Err() != nil {
			return nil
		}
		s, deliveries, err := c.connect(ctx)
		if err != nil {
			attempt++
			d := backoff.Exp(c.opts.RetryMin, c.opts.RetryMax, attempt)
			c.log.Warn("hubqueue: no connection", "attempt", attempt, "retry_in", d, "err", err)
			if !backoff.Sleep(ctx, d) {
				return nil
			}
			continue
		}
		attempt = 0
		c.stats.connects.Add(1)
		c.setSession(s)
		c.once.Do(func() { close(c.ready) })
		c.log.Info("hubqueue: consuming", "url", redact(s.url), "queue", c.opts.Queue, "keys", c.keys)
		err = c.serve(ctx, s, deliveries, h)
		c.setSession(nil)
		_ = s.conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("hubqueue: connection lost", "url", redact(s.url), "err", err)
		attempt++
		if !backoff.Sleep(ctx, backoff.Exp(c.opts.RetryMin, c.opts.RetryMax, attempt)) {
			return nil
		}
	}
}

func (c *Client) setSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s == nil && c.sess != nil {
		// Next time start with the node after the one just lost.
		for i, u := range c.opts.URLs {
			if u == c.sess.url {
				c.next = (i + 1) % len(c.opts.URLs)
			}
		}
	}
	c.sess = s
	close(c.changed)
	c.changed = make(chan struct{})
}

// connect tries every URL once, starting at c.next.
func (c *Client) connect(ctx context.Context) (*session, <-chan amqp.Delivery, error) {
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	var errs []error
	for i := range c.opts.URLs {
		idx := (start + i) % len(c.opts.URLs)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		s, d, err := c.open(ctx, c.opts.URLs[idx])
		if err == nil {
			return s, d, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", redact(c.opts.URLs[idx]), err))
	}
	return nil, nil, errors.Join(errs...)
}

func (c *Client) open(ctx context.Context, url string) (*session, <-chan amqp.Delivery, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.opts.Name)
	dialer := &net.Dialer{Timeout: c.opts.DialTimeout}
	conn, err := amqp.DialConfig(url, amqp.Config{
		Heartbeat:       c.opts.Heartbeat,
		TLSClientConfig: c.opts.TLS,
		Properties:      props,
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
			defer cancel()
			conn, err := dialer.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake must not hang on a half-dead node either;
			// amqp091 clears the deadline once connected.
			if err := conn.SetDeadline(time.Now().Add(c.opts.DialTimeout)); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	s := &session{url: url, conn: conn}
	d, err := c.declareAndConsume(s)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return s, d, nil
}

func (c *Client) declareAndConsume(s *session) (<-chan amqp.Delivery, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	args := amqp.Table{"x-queue-type": "quorum"}
	if c.opts.DeliveryLimit > 0 {
		args["x-delivery-limit"] = int64(c.opts.DeliveryLimit)
	}
	if _, err := ch.QueueDeclare(c.opts.Queue, true, false, false, false, args); err != nil {
		return nil, fmt.Errorf("declare queue %s: %w", c.opts.Queue, err)
	}
	for _, k := range c.keys {
		if err := ch.QueueBind(c.opts.Queue, k, c.opts.Exchange, false, nil); err != nil {
			return nil, fmt.Errorf("bind %s to %s with %s: %w", c.opts.Queue, c.opts.Exchange, k, err)
		}
	}
	if err := ch.Qos(c.opts.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	d, err := ch.Consume(c.opts.Queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", c.opts.Queue, err)
	}
	if err := c.openPub(s); err != nil {
		return nil, err
	}
	return d, nil
}

// openPub opens the session's publishing channel in confirm mode; called
// again when the broker closed it (a channel-level error leaves the
// connection and the consumer up, and every confirm after it would read
// as a refusal).
func (c *Client) openPub(s *session) error {
	pub, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("publishing channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	closed := pub.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e, ok := <-closed; ok && e != nil {
			c.log.Warn("hubqueue: publishing channel closed by the broker; reopened on the next publish", "err", e)
		}
	}()
	s.pub = pub
	return nil
}

// serve runs the workers until the deliveries end (the channel or the
// connection closed) or ctx does.
func (c *Client) serve(ctx context.Context, s *session, deliveries <-chan amqp.Delivery, h Handler) error {
	closed := s.conn.NotifyClose(make(chan *amqp.Error, 1))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for {
				select {
				case <-sctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						cancel()
						return
					}
					c.handle(ctx, d, h)
				}
			}
		})
	}
	var err error
	select {
	case <-sctx.Done():
	case e, ok := <-closed:
		if ok && e != nil {
			err = e
		} else {
			err = errors.New("connection closed")
		}
	}
	cancel()
	wg.Wait()
	if err == nil && ctx.Err() == nil {
		err = errors.New("consumer cancelled")
	}
	return err
}

func (c *Client) handle(ctx context.Context, d amqp.Delivery, h Handler) {
	c.stats.delivered.Add(1)
	m := Msg{
		Topic: KeyToTopic(d.RoutingKey), Payload: d.Body, Redelivered: d.Redelivered,
		d: &d, settled: new(atomic.Bool), stats: &c.stats,
	}
	var ok bool
	m.Device, m.Sub, ok = split(m.Topic, c.opts.Prefix, c.opts.Topics)
	if !ok {
		// Not a kiosk's message (published to the queue by hand, or a
		// device id with a "." that split into more levels): drop it, or
		// it would come back for ever.
		c.stats.malformed.Add(1)
		c.log.Warn("hubqueue: malformed routing key, dropped", "routing_key", d.RoutingKey, "exchange", d.Exchange)
		if err := d.Ack(false); err != nil {
			c.log.Warn("hubqueue: ack of a malformed message", "err", err)
		}
		return
	}
	h(ctx, m)
	if !m.settled.Load() {
		c.stats.unsettled.Add(1)
		c.log.Warn("hubqueue: handler left a message unsettled, requeued", "topic", m.Topic)
		if err := d.Nack(false, true); err != nil {
			c.log.Warn("hubqueue: requeue", "err", err)
		}
	}
}

// Publish sends payload to MQTT subscribers of topic (a reply such as
// <prefix>/<device>/tx-ack) through the exchange, persistent, and waits
// for the broker's confirm. Messages not published over MQTT reach MQTT
// subscribers at the QoS of their subscription (QoS 1 for kiosks), so no
// MQTT header is needed. Without a connection it waits for one until ctx
// ends.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	key, err := TopicToKey(topic)
	if err != nil {
		return err
	}
	for {
		c.mu.Lock()
		s, changed := c.sess, c.changed
		c.mu.Unlock()
		if s != nil {
			err := c.publish(ctx, s, key, payload)
			// A refusal during a leader election clears within about a
			// second: try again on a fresh channel a few times before
			// giving up (the kiosk resends in any case).
			for attempt := 1; retryable(err) && attempt < refusedAttempts; attempt++ {
				if errors.Is(err, ErrRefused) {
					c.stats.refused.Add(1)
				}
				if !backoff.Sleep(ctx, backoff.Exp(c.opts.RetryMin, c.opts.RetryMax, attempt)) {
					break
				}
				err = c.publish(ctx, s, key, payload)
			}
			if err == nil {
				c.stats.published.Add(1)
			} else if errors.Is(err, ErrRefused) {
				c.stats.refused.Add(1)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		case <-changed:
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, ErrRefused) || errors.Is(err, errChannelClosed)
}

func (c *Client) publish(ctx context.Context, s *session, key string, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConfirmTimeout)
	defer cancel()
	s.pubMu.Lock()
	if s.pub.IsClosed() {
		if err := c.openPub(s); err != nil {
			s.pubMu.Unlock()
			return fmt.Errorf("hubqueue: publish %s: %w", key, err)
		}
	}
	pub := s.pub
	conf, err := pub.PublishWithDeferredConfirmWithContext(ctx, c.opts.Exchange, key, false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		Timestamp:    time.Now(),
		Body:         payload,
	})
	s.pubMu.Unlock()
	if err != nil {
		return fmt.Errorf("hubqueue: publish %s: %w", key, err)
	}
	acked, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("hubqueue: publish %s: no confirm: %w", key, err)
	}
	if !acked {
		if pub.IsClosed() {
			return fmt.Errorf("hubqueue: publish %s: %w", key, errChannelClosed)
		}
		// RabbitMQ 3.10 keeps a channel's view of each quorum queue it has
		// published to; a publish made while a target queue had no leader
		// (its node just died) leaves that view refusing every later
		// publish to the queue, for minutes, although the queue elected a
		// new leader. A fresh channel starts with a fresh view.
		s.pubMu.Lock()
		if s.pub == pub {
			_ = pub.Close()
		}
		s.pubMu.Unlock()
		return fmt.Errorf("hubqueue: publish %s: %w", key, ErrRefused)
	}
	return nil
}

// redact is an AMQP URL without its credentials, for logs.
func redact(u string) string {
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return "(unparsable URL)"
	}
	s := fmt.Sprintf("%s://%s:%d", uri.Scheme, uri.Host, uri.Port)
	if uri.Vhost != "/" {
		s += "/" + uri.Vhost
	}
	return s
}
