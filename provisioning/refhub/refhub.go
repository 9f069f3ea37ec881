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

	"kiosk/firmware/bankeid"
	"kiosk/firmware/enrollwire"
	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubqueue"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/registrar"
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
	// ResolveAt, when set, is asked for a report whose certificate the
	// keyring refuses now: the certificate as it stood at the report's
	// decision time (devtrust.Trust.ResolveAt).
	ResolveAt func(fp string, at time.Time) (txreport.Device, bool)
	// RefusedForGood, when set, says a refused report's certificate was
	// revoked or expired (devtrust.Trust.RefusedForGood): such a report
	// gets a sealed AckRefused so the kiosk stops resending it.
	RefusedForGood func(fp, device string) bool
	// Signer seals authorization responses and report acks (docs/mqtt.md,
	// "Signed authorization", "Acknowledgement"); nil sends them
	// unsigned, which kiosks that were given hub.auth_cert ignore.
	Signer *txreport.Signer
	Store  hubstore.Store
	Limits hubstore.Limits
	// Queue, when set, is where the work comes from instead of MQTT
	// shared subscriptions: RabbitMQ's shared quorum queue over AMQP
	// (docs/scale.md), with replies published through it too. Brokers
	// and the MQTT settings are then unused; the queue's own Workers run
	// the handler.
	Queue   *hubqueue.Client
	Workers int // default 2
	// Registrar, when set, answers enrollment requests on
	// <prefix>/provision/+/csr (MQTT only: the AMQP queue carries no
	// provisioning topics).
	Registrar *registrar.Registrar
	// BankEIDTrust is the eID authorities whose holder signatures the hub
	// accepts (package bankeid). A report carrying a holder signature is
	// applied only when it verifies: the certificate chains to one of
	// them and is not revoked, and it signed this report's challenge
	// (terminal, tx id, amount, currency). nil: such reports are refused.
	BankEIDTrust *bankeid.Trust
	// Enrolments, when set, answers kiosks' face reference requests
	// (hub.TopicFaceRefReq): the face the bank enrolled for an eID
	// identity, encrypted to the requesting kiosk and sealed by the hub.
	// Every hubstore.Store implements it (kioskhub passes its store).
	Enrolments hubstore.Enrolments
	// ObserveAuth, when set, is told how long each authorization took
	// from receipt to the decision (metrics). It must not block.
	ObserveAuth func(time.Duration)
	Logger      *slog.Logger
	Now         func() time.Time
}

// Stats count what the hub did.
type Stats struct {
	Applied    uint64 `json:"applied"`
	Duplicates uint64 `json:"duplicates"`
	Rejected   uint64 `json:"rejected"`
	// RefusedForGood: rejected reports acknowledged as refused (their
	// certificate revoked or expired), so the kiosk stops resending.
	RefusedForGood uint64 `json:"refused_for_good"`
	AuthApproved   uint64 `json:"auth_approved"`
	AuthDeclined   uint64 `json:"auth_declined"`
	AuthExpired    uint64 `json:"auth_expired"`
	Dropped        uint64 `json:"dropped"`
	ReplyFailed    uint64 `json:"reply_failed"` // answers the broker did not take (the kiosk resends or decides offline)
}

// Hub is one reference hub instance.
type Hub struct {
	opts  Options
	log   *slog.Logger
	work  chan mqtt.Message
	conn  mqtt.Client
	stats struct {
		applied, dups, rejected, refusedForGood, authOK, authNo, authExpired, dropped, replyFailed atomic.Uint64
	}
	connected chan struct{}
	once      sync.Once
}

// New checks options.
func New(opts Options) (*Hub, error) {
	if len(opts.Brokers) == 0 && opts.Queue == nil {
		return nil, errors.New("refhub: no broker and no queue")
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
		Applied: s.applied.Load(), Duplicates: s.dups.Load(), Rejected: s.rejected.Load(), RefusedForGood: s.refusedForGood.Load(),
		AuthApproved: s.authOK.Load(), AuthDeclined: s.authNo.Load(), AuthExpired: s.authExpired.Load(),
		Dropped: s.dropped.Load(), ReplyFailed: s.replyFailed.Load(),
	}
}

// Online reports whether the broker link is up now.
func (h *Hub) Online() bool {
	if h.opts.Queue != nil {
		_, ok := h.opts.Queue.Connected()
		return ok
	}
	return h.conn != nil && h.conn.IsConnectionOpen()
}

// Connected is closed after the first successful connection and subscription.
func (h *Hub) Connected() <-chan struct{} { return h.connected }

// Filters are the shared subscriptions ($share/<group>/<filter>, MQTT 5
// §4.8.2, which mosquitto also offers to MQTT 3.1.1 clients).
func (h *Hub) Filters() []string {
	if h.opts.Queue != nil {
		return h.opts.Queue.BindingKeys()
	}
	share := "$share/" + h.opts.Group + "/"
	p := share + h.opts.Prefix + "/+/"
	f := []string{p + hub.TopicTx, p + hub.TopicAuthReq}
	if h.opts.Enrolments != nil {
		f = append(f, p+hub.TopicFaceRefReq)
	}
	if h.opts.Registrar != nil {
		f = append(f, share+h.opts.Registrar.Filter(), share+h.opts.Registrar.RenewFilter())
	}
	return f
}

// Run serves until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	if h.opts.Queue != nil {
		return h.runQueue(ctx)
	}
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
	// The hub's own presence (docs/mqtt.md, "Hub presence"): sealed, so
	// only the hub can make kiosks decide offline at once. One session
	// number per run: a will of this run never outranks its "online".
	presenceTopic := h.opts.Prefix + "/" + hub.HubPresenceLevel + "/presence/" + h.opts.ClientID
	session := uint64(h.opts.Now().UnixMilli())
	if h.opts.Signer != nil {
		will, err := h.opts.Signer.Seal(hub.Presence{State: "offline", Session: session})
		if err != nil {
			return fmt.Errorf("refhub: presence: %w", err)
		}
		o.SetBinaryWill(presenceTopic, will, 1, true)
	}
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
		if h.opts.Signer != nil {
			if online, err := h.opts.Signer.Seal(hub.Presence{State: "online", Session: session, Time: h.opts.Now().UTC()}); err == nil {
				tok := c.Publish(presenceTopic, 1, true, online)
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					h.log.Warn("refhub: presence not published", "err", tok.Error())
				}
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
	if h.opts.Signer != nil && h.conn.IsConnectionOpen() {
		// A clean stop says so itself (the will covers a crash).
		if off, err := h.opts.Signer.Seal(hub.Presence{State: "offline", Session: session, Time: h.opts.Now().UTC()}); err == nil {
			h.conn.Publish(presenceTopic, 1, true, off).WaitTimeout(2 * time.Second)
		}
	}
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
	if device == enrollwire.ProvisionLevel {
		if h.opts.Registrar != nil {
			if r := h.opts.Registrar.Handle(ctx, m.Topic(), m.Payload()); r.Topic != "" {
				h.publish(ctx, r.Topic, r.Payload)
			}
		}
		return
	}
	if rest == enrollwire.TopicRenew {
		if h.opts.Registrar != nil {
			if r := h.opts.Registrar.HandleRenew(ctx, device, m.Payload()); r.Topic != "" {
				h.publish(ctx, r.Topic, r.Payload)
			}
		}
		return
	}
	// Over MQTT the broker has had its PUBACK already: an outcome that
	// asks for a retry is left to the kiosk, which resends what it has no
	// ack for.
	if o := h.process(ctx, device, rest, m.Payload()); o.reply != nil {
		h.reply(ctx, device, o.sub, o.reply)
	}
}

// runQueue serves the shared quorum queue: a message is acked to the
// broker only once handled and its reply confirmed, so an instance that
// dies mid-way leaves it to another.
func (h *Hub) runQueue(ctx context.Context) error {
	go func() {
		select {
		case <-h.opts.Queue.Ready():
			h.log.Info("refhub consuming", "client", h.opts.ClientID, "bindings", h.Filters())
			h.once.Do(func() { close(h.connected) })
		case <-ctx.Done():
		}
	}()
	return h.opts.Queue.Run(ctx, func(ctx context.Context, m hubqueue.Msg) {
		o := h.process(ctx, m.Device, m.Sub, m.Payload)
		if !o.retry && o.reply != nil {
			b, err := h.encode(o.reply)
			if err == nil {
				err = h.opts.Queue.Publish(ctx, h.opts.Prefix+"/"+m.Device+"/"+o.sub, b)
			}
			if err != nil {
				// The work is stored; only the answer is lost, as when an
				// MQTT ack is: the kiosk resends a report it has no ack
				// for (and gets "duplicate") and decides an unanswered
				// authorization offline. Requeueing would spin while the
				// broker refuses.
				h.stats.replyFailed.Add(1)
				h.log.Warn("refhub: reply not sent", "topic", o.sub, "device", m.Device, "err", err)
			}
		}
		var err error
		if o.retry {
			// The store failed: give it a moment before the next try.
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			err = m.Nack(true)
		} else {
			// Also what was refused (forged, malformed): it must not loop.
			err = m.Ack()
		}
		if err != nil {
			h.log.Warn("refhub: settle", "err", err)
		}
	})
}

// outcome is what handling one message came to: a reply to send on
// <prefix>/<device>/<sub>, or none (refused, late), or retry (the store
// failed: handle it again later).
type outcome struct {
	sub   string
	reply any
	retry bool
}

func (h *Hub) process(ctx context.Context, device, rest string, payload []byte) outcome {
	switch rest {
	case hub.TopicTx:
		return h.handleTx(ctx, device, payload)
	case hub.TopicAuthReq:
		return h.handleAuth(ctx, device, payload)
	case hub.TopicFaceRefReq:
		if h.opts.Enrolments != nil {
			return h.handleFaceRef(ctx, device, payload)
		}
	}
	return outcome{}
}

func (h *Hub) handleTx(ctx context.Context, device string, payload []byte) outcome {
	r, dev, err := h.opts.Keyring.Verify(payload)
	if errors.Is(err, txreport.ErrUnknownDevice) && h.opts.ResolveAt != nil {
		r, dev, err = h.verifyAtDecision(payload, err)
	}
	if err == nil && r.Terminal != device {
		err = fmt.Errorf("%w: topic device %q, report %q", txreport.ErrWrongDevice, device, r.Terminal)
	}
	if err == nil && r.HolderSignature != nil {
		err = h.verifyHolder(r)
	}
	if err != nil {
		// Not acknowledged: a forged or corrupted report must not make
		// the kiosk forget the real one.
		h.stats.rejected.Add(1)
		h.log.Warn("refhub: report rejected", "device", device, "err", err)
		return h.refuseForGood(device, payload)
	}
	dup, err := h.opts.Store.Apply(ctx, r, payload, txreport.Fingerprint(dev.Cert), h.opts.ClientID, h.opts.Now())
	if err != nil {
		h.log.Error("refhub: store", "tx", r.TxID, "err", err)
		return outcome{retry: true} // no ack: the kiosk resends
	}
	// A decommissioned kiosk's certificates are revoked before its last
	// report is acknowledged: the ack tells it the hub has let it go.
	if r.Kind == txreport.KindEvent && r.Service == txreport.EventDecommission && h.opts.Registrar != nil {
		if err := h.opts.Registrar.Decommission(ctx, device); err != nil {
			h.log.Error("refhub: decommission", "device", device, "err", err)
			return outcome{retry: true}
		}
	}
	// The first report under a renewed certificate retires the old one.
	if h.opts.Registrar != nil && !(r.Kind == txreport.KindEvent && r.Service == txreport.EventTamperAlarm) {
		if err := h.opts.Registrar.Used(ctx, device, txreport.Fingerprint(dev.Cert)); err != nil {
			h.log.Error("refhub: retire superseded certificates", "device", device, "err", err)
			// Applied already; the next report tries again.
		}
	}
	// A verified tamper alarm revokes the certificate that signed it (and
	// earlier ones) before the ack.
	if r.Kind == txreport.KindEvent && r.Service == txreport.EventTamperAlarm && h.opts.Registrar != nil {
		if err := h.opts.Registrar.TamperAlarm(ctx, device, txreport.Fingerprint(dev.Cert)); err != nil {
			h.log.Error("refhub: tamper alarm revocation", "device", device, "err", err)
			return outcome{retry: true}
		}
	}
	hash, err := txreport.ReportHash(payload)
	if err != nil { // cannot happen after Verify; never ack what is not named
		h.log.Error("refhub: report hash", "tx", r.TxID, "err", err)
		return outcome{}
	}
	ack := hub.TxAck{TxID: r.TxID, Terminal: device, ReportSHA256: hash, Status: "applied"}
	if dup {
		ack.Status = "duplicate"
		h.stats.dups.Add(1)
	} else {
		h.stats.applied.Add(1)
	}
	return outcome{sub: hub.TopicTxAck, reply: ack}
}

// verifyHolder checks a report's holder signature (bank eID) against
// the eID authorities at the report's decision time.
func (h *Hub) verifyHolder(r *txreport.Report) error {
	if h.opts.BankEIDTrust == nil {
		return errors.New("holder signature, but no eID authority is configured")
	}
	at, err := time.Parse(time.RFC3339Nano, r.Decided)
	if err != nil {
		return fmt.Errorf("holder signature: decided %q: %w", r.Decided, err)
	}
	hs := r.HolderSignature
	ev := &bankeid.Evidence{Profile: hs.Profile, Algorithm: hs.Algorithm, Challenge: hs.Challenge, Signature: hs.Signature, Certificate: hs.Certificate}
	if _, err := bankeid.VerifyEvidence(ev, h.opts.BankEIDTrust, at,
		bankeid.Challenge{KioskID: r.Terminal, TransactionID: r.TxID, Amount: r.Amount, Currency: r.Currency}); err != nil {
		return fmt.Errorf("holder signature: %w", err)
	}
	return nil
}

// refuseForGood acknowledges a report with AckRefused when its
// certificate is one the device CA issued to this device and is revoked
// or expired: resending cannot help. The ack names the exact payload's
// hash, so it can only remove that payload from the kiosk's outbox;
// anything else (forged, unknown) stays unanswered.
func (h *Hub) refuseForGood(device string, payload []byte) outcome {
	if h.opts.RefusedForGood == nil {
		return outcome{}
	}
	env, err := txreport.ParseEnvelope(payload)
	if err != nil || !h.opts.RefusedForGood(strings.ToLower(env.Cert), device) {
		return outcome{}
	}
	var claim struct {
		TxID     string `json:"tx_id"`
		Terminal string `json:"terminal_id"`
	}
	hash, herr := txreport.ReportHash(payload)
	if json.Unmarshal(env.Report, &claim) != nil || claim.TxID == "" || claim.Terminal != device || herr != nil {
		return outcome{}
	}
	h.stats.refusedForGood.Add(1)
	return outcome{sub: hub.TopicTxAck, reply: hub.TxAck{TxID: claim.TxID, Terminal: device, ReportSHA256: hash, Status: hub.AckRefused}}
}

// verifyAtDecision verifies a report with its certificate as it stood
// when the report was decided (signed while valid, expired or revoked
// since). The unverified Decided only picks the time; the signature
// then covers it.
func (h *Hub) verifyAtDecision(payload []byte, nowErr error) (*txreport.Report, txreport.Device, error) {
	env, err := txreport.ParseEnvelope(payload)
	if err != nil {
		return nil, txreport.Device{}, nowErr
	}
	var claim struct {
		Decided string `json:"decided"`
	}
	if json.Unmarshal(env.Report, &claim) != nil {
		return nil, txreport.Device{}, nowErr
	}
	at, err := time.Parse(time.RFC3339Nano, claim.Decided)
	if err != nil {
		return nil, txreport.Device{}, nowErr
	}
	kr := txreport.NewKeyring()
	kr.SetResolver(func(fp string) (txreport.Device, bool) { return h.opts.ResolveAt(fp, at) })
	r, dev, err := kr.Verify(payload)
	if err != nil {
		return nil, dev, nowErr
	}
	return r, dev, nil
}

func (h *Hub) handleAuth(ctx context.Context, device string, payload []byte) outcome {
	if h.opts.ObserveAuth != nil {
		start := time.Now()
		defer func() { h.opts.ObserveAuth(time.Since(start)) }()
	}
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
		return outcome{}
	}
	// A request lives until its expiry, which must be near: without one a
	// captured request could be answered at any later time.
	if now := h.opts.Now(); req.Expires.IsZero() || req.Expires.After(now.Add(maxAuthLifetime)) {
		h.stats.rejected.Add(1)
		h.log.Warn("refhub: auth request without a near expiry", "device", device, "expires", req.Expires)
		return outcome{}
	} else if now.After(req.Expires) {
		h.stats.authExpired.Add(1) // the kiosk has decided offline already
		return outcome{}
	}
	resp, err := h.opts.Store.Authorize(ctx, req, device, h.opts.Limits, h.opts.Now())
	if err != nil {
		h.log.Error("refhub: authorize", "tx", req.TxID, "err", err)
		return outcome{retry: true}
	}
	if resp.Approved {
		h.stats.authOK.Add(1)
	} else {
		h.stats.authNo.Add(1)
	}
	return outcome{sub: hub.TopicAuthRsp, reply: resp}
}

// handleFaceRef answers a device-signed face reference request: the
// enrolled face, encrypted to the request's one-time key, sealed by the
// hub (docs/mqtt.md, "Face reference"). The face never leaves the hub in
// the clear and is not logged.
func (h *Hub) handleFaceRef(ctx context.Context, device string, payload []byte) outcome {
	var req hub.FaceRefRequest
	dev, err := h.opts.Keyring.Open(payload, &req)
	if err == nil && (dev.ID != device || req.Terminal != device) {
		err = fmt.Errorf("%w: topic device %q, request %q, certificate %q", txreport.ErrWrongDevice, device, req.Terminal, dev.ID)
	}
	if err == nil && (req.ID == "" || len(req.ID) > 128 || req.EIDNumber == "" || len(req.EIDNumber) > 64) {
		err = errors.New("request id or eID number missing or too long")
	}
	if now := h.opts.Now(); err == nil && (req.Expires.IsZero() || req.Expires.After(now.Add(maxAuthLifetime)) || now.After(req.Expires)) {
		err = errors.New("request expired or without a near expiry")
	}
	if err != nil {
		h.stats.rejected.Add(1)
		h.log.Warn("refhub: face reference request rejected", "device", device, "err", err)
		return outcome{}
	}
	face, err := h.opts.Enrolments.FaceReference(ctx, req.EIDNumber)
	if err != nil {
		h.log.Error("refhub: enrolment store", "device", device, "err", err)
		return outcome{retry: true}
	}
	defer clear(face)
	resp := hub.FaceRefResponse{ID: req.ID, Terminal: req.Terminal, EIDNumber: req.EIDNumber}
	if len(face) > 0 {
		if resp, err = hub.SealFaceRef(req, face); err != nil {
			h.log.Warn("refhub: face reference not sealed", "device", device, "err", err)
			return outcome{}
		}
	}
	return outcome{sub: hub.TopicFaceRefRsp, reply: resp}
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
	h.publish(ctx, h.opts.Prefix+"/"+device+"/"+sub, b)
}

func (h *Hub) publish(ctx context.Context, topic string, b []byte) {
	tok := h.conn.Publish(topic, 1, false, b)
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			h.stats.replyFailed.Add(1)
			h.log.Warn("refhub: reply not sent", "topic", topic, "err", tok.Error())
		}
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		h.log.Warn("refhub: reply not confirmed in 5s", "topic", topic)
	}
}
