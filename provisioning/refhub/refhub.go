// Package refhub is the reference bank hub: a small, complete counterpart
// of kioskd's transaction protocol for integrators and tests, not a core
// banking system. It subscribes to every kiosk through an MQTT shared
// subscription (several instances share the load), verifies each report's
// device signature, applies each transaction once (deduplicating on the
// transaction id), authorizes payments against per-transaction and daily
// limits, stores everything through a hubstore.Store (bbolt for one
// machine, PostgreSQL shared by every instance) and acknowledges.
package refhub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// maxAuthLifetime bounds how far ahead an authorization request may
// expire (kiosks wait seconds, not minutes).
const maxAuthLifetime = 5 * time.Minute

// Options configure a Hub.
type Options struct {
	Brokers  []string
	ClientID string // unique per instance; default "refhub-" + random
	Group    string // shared subscription group; default "refhub"
	Prefix   string // topic prefix; default "kiosk/v1"
	Username string
	Password string
	TLS      *tls.Config
	Keyring  *txreport.Keyring
	// Signer seals authorization responses and report acks (docs/mqtt.md,
	// "Signed authorization", "Acknowledgement"); nil sends them
	// unsigned, which kiosks that were given hub.auth_cert ignore.
	Signer  *txreport.Signer
	Store   hubstore.Store
	Limits  hubstore.Limits
	Workers int // default 2
	Logger  *slog.Logger
	Now     func() time.Time
}

// Stats count what the hub did.
type Stats struct {
	Applied      uint64 `json:"applied"`
	Duplicates   uint64 `json:"duplicates"`
	Rejected     uint64 `json:"rejected"`
	AuthApproved uint64 `json:"auth_approved"`
	AuthDeclined uint64 `json:"auth_declined"`
	AuthExpired  uint64 `json:"auth_expired"`
	Dropped      uint64 `json:"dropped"`
}

// Hub is one reference hub instance.
type Hub struct {
	opts  Options
	log   *slog.Logger
	work  chan mqtt.Message
	conn  mqtt.Client
	stats struct {
		applied, dups, rejected, authOK, authNo, authExpired, dropped atomic.Uint64
	}
	connected chan struct{}
	once      sync.Once
}

// New checks options.
func New(opts Options) (*Hub, error) {
	if len(opts.Brokers) == 0 {
		return nil, errors.New("refhub: no broker")
	}
	if opts.Keyring == nil || opts.Store == nil {
		return nil, errors.New("refhub: keyring and store are required")
	}
	if opts.ClientID == "" {
		opts.ClientID = "refhub-" + hub.NewID()[:8]
	}
	if opts.Group == "" {
		opts.Group = "refhub"
	}
	if opts.Prefix == "" {
		opts.Prefix = "kiosk/v1"
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{opts: opts, log: log, work: make(chan mqtt.Message, 4096), connected: make(chan struct{})}, nil
}

// Stats returns the counters.
func (h *Hub) Stats() Stats {
	s := &h.stats
	return Stats{
		Applied: s.applied.Load(), Duplicates: s.dups.Load(), Rejected: s.rejected.Load(),
		AuthApproved: s.authOK.Load(), AuthDeclined: s.authNo.Load(), AuthExpired: s.authExpired.Load(),
		Dropped: s.dropped.Load(),
	}
}

// Online reports whether the broker link is up now.
func (h *Hub) Online() bool { return h.conn != nil && h.conn.IsConnectionOpen() }

// Connected is closed after the first successful connection and subscription.
func (h *Hub) Connected() <-chan struct{} { return h.connected }

// Filters are the shared subscriptions ($share/<group>/<filter>, MQTT 5
// §4.8.2, which mosquitto also offers to MQTT 3.1.1 clients).
func (h *Hub) Filters() []string {
	p := "$share/" + h.opts.Group + "/" + h.opts.Prefix + "/+/"
	return []string{p + hub.TopicTx, p + hub.TopicAuthReq}
}

// Run serves until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	o := mqtt.NewClientOptions()
	for _, b := range h.opts.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(h.opts.ClientID)
	o.SetUsername(h.opts.Username)
	o.SetPassword(h.opts.Password)
	if h.opts.TLS != nil {
		o.SetTLSConfig(h.opts.TLS)
	}
	o.SetProtocolVersion(4)
	o.SetCleanSession(true) // kiosks resend whatever is not acknowledged
	o.SetAutoReconnect(true)
	o.SetConnectRetry(true)
	o.SetConnectRetryInterval(500 * time.Millisecond)
	o.SetMaxReconnectInterval(5 * time.Second)
	o.SetConnectTimeout(5 * time.Second)
	o.SetWriteTimeout(5 * time.Second)
	o.SetKeepAlive(10 * time.Second)
	o.SetOrderMatters(false)
	o.SetDefaultPublishHandler(h.enqueue)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		// Subscribe in OnConnect so subscriptions come back after every
		// reconnect. Never wait in this callback on paho's own goroutine
		// for long: bounded waits only.
		for _, f := range h.Filters() {
			tok := c.Subscribe(f, 1, h.enqueue)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				h.log.Error("refhub: subscribe failed", "filter", f, "err", tok.Error())
				return
			}
		}
		h.log.Info("refhub connected", "client", h.opts.ClientID, "filters", h.Filters())
		h.once.Do(func() { close(h.connected) })
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { h.log.Warn("refhub connection lost", "err", err) })
	h.conn = mqtt.NewClient(o)
	h.conn.Connect() // ConnectRetry: keeps trying in the background

	var wg sync.WaitGroup
	for range h.opts.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-h.work:
					h.handle(ctx, m)
				}
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	h.conn.Disconnect(250)
	return nil
}

// enqueue runs on paho's router: never block there.
func (h *Hub) enqueue(_ mqtt.Client, m mqtt.Message) {
	select {
	case h.work <- m:
	default:
		h.stats.dropped.Add(1) // not acked → the kiosk sends again
	}
}

// deviceOf splits <prefix>/<device>/<rest>.
func (h *Hub) deviceOf(topic string) (device, rest string, ok bool) {
	s, ok := strings.CutPrefix(topic, h.opts.Prefix+"/")
	if !ok {
		return "", "", false
	}
	device, rest, ok = strings.Cut(s, "/")
	if !ok || device == "" {
		return "", "", false
	}
	return device, rest, true
}

func (h *Hub) handle(ctx context.Context, m mqtt.Message) {
	device, rest, ok := h.deviceOf(m.Topic())
	if !ok {
		return
	}
	switch rest {
	case hub.TopicTx:
		h.handleTx(ctx, device, m.Payload())
	case hub.TopicAuthReq:
		h.handleAuth(ctx, device, m.Payload())
	}
}

func (h *Hub) handleTx(ctx context.Context, device string, payload []byte) {
	r, dev, err := h.opts.Keyring.Verify(payload)
	if err == nil && r.Terminal != device {
		err = fmt.Errorf("%w: topic device %q, report %q", txreport.ErrWrongDevice, device, r.Terminal)
	}
	if err != nil {
		// Not acknowledged: a forged or corrupted report must not make
		// the kiosk forget the real one.
		h.stats.rejected.Add(1)
		h.log.Warn("refhub: report rejected", "device", device, "err", err)
		return
	}
	dup, err := h.opts.Store.Apply(ctx, r, payload, txreport.Fingerprint(dev.Cert), h.opts.ClientID, h.opts.Now())
	if err != nil {
		h.log.Error("refhub: store", "tx", r.TxID, "err", err)
		return // no ack: the kiosk resends
	}
	hash, err := txreport.ReportHash(payload)
	if err != nil { // cannot happen after Verify; never ack what is not named
		h.log.Error("refhub: report hash", "tx", r.TxID, "err", err)
		return
	}
	ack := hub.TxAck{TxID: r.TxID, Terminal: device, ReportSHA256: hash, Status: "applied"}
	if dup {
		ack.Status = "duplicate"
		h.stats.dups.Add(1)
	} else {
		h.stats.applied.Add(1)
	}
	h.reply(ctx, device, hub.TopicTxAck, ack)
}

func (h *Hub) handleAuth(ctx context.Context, device string, payload []byte) {
	// Only a request the device signed may spend its limits.
	var req hub.AuthRequest
	dev, err := h.opts.Keyring.Open(payload, &req)
	if err == nil && (dev.ID != device || req.Terminal != device) {
		err = fmt.Errorf("%w: topic device %q, request %q, certificate %q", txreport.ErrWrongDevice, device, req.Terminal, dev.ID)
	}
	if err == nil && (req.ID == "" || len(req.ID) > 128) {
		err = errors.New("request id missing or longer than 128 characters")
	}
	if err != nil {
		h.stats.rejected.Add(1)
		h.log.Warn("refhub: auth request rejected", "device", device, "err", err)
		return
	}
	// A request lives until its expiry, which must be near: without one a
	// captured request could be answered at any later time.
	if now := h.opts.Now(); req.Expires.IsZero() || req.Expires.After(now.Add(maxAuthLifetime)) {
		h.stats.rejected.Add(1)
		h.log.Warn("refhub: auth request without a near expiry", "device", device, "expires", req.Expires)
		return
	} else if now.After(req.Expires) {
		h.stats.authExpired.Add(1) // the kiosk has decided offline already
		return
	}
	resp, err := h.opts.Store.Authorize(ctx, req, device, h.opts.Limits, h.opts.Now())
	if err != nil {
		h.log.Error("refhub: authorize", "tx", req.TxID, "err", err)
		return
	}
	if resp.Approved {
		h.stats.authOK.Add(1)
	} else {
		h.stats.authNo.Add(1)
	}
	h.reply(ctx, device, hub.TopicAuthRsp, resp)
}

// encode is a reply's payload (an authorization response or a report
// ack): sealed with the hub's key when it has one, plain JSON otherwise,
// which kiosks given hub.auth_cert ignore.
func (h *Hub) encode(v any) ([]byte, error) {
	if h.opts.Signer != nil {
		return h.opts.Signer.Seal(v)
	}
	return json.Marshal(v)
}

func (h *Hub) reply(ctx context.Context, device, sub string, v any) {
	b, err := h.encode(v)
	if err != nil {
		h.log.Error("refhub: reply not encoded", "topic", sub, "err", err)
		return
	}
	tok := h.conn.Publish(h.opts.Prefix+"/"+device+"/"+sub, 1, false, b)
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			h.log.Warn("refhub: reply not sent", "topic", sub, "err", tok.Error())
		}
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		h.log.Warn("refhub: reply not confirmed in 5s", "topic", sub)
	}
}
