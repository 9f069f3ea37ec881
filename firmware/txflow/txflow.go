// Package txflow joins a decided transaction to the bank hub: online
// authorization with an offline fallback, signing, the durable outbox and
// the sender that delivers reports until the hub acknowledges them.
//
// Wiring (kioskd):
//
//	h, _ := hub.New(hubOpts)
//	ob, _ := outbox.Open(dir+"/outbox.db", outbox.Options{...})
//	lg, _ := offline.Open(dir+"/offline.db", offline.Limits{...})
//	signer, _ := txreport.LoadSigner(keyFile, certFile)
//	flow, _ := txflow.New(txflow.Options{Hub: h, Outbox: ob, Offline: lg, Signer: signer})
//	go h.Run(ctx); go flow.Run(ctx) // New before h.Run: it registers the ack route
//	a, _ := flow.Authorize(ctx, txflow.Payment{...}) // then show nothing yet
//	_ = flow.Commit(ctx, report)                      // fsynced; now show the result
package txflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/offline"
	"kiosk/firmware/outbox"
	"kiosk/firmware/txreport"
)

// Options wire the flow. Hub, Outbox and Signer are required; a nil
// Offline declines every payment the hub cannot authorize.
type Options struct {
	Hub     *hub.Client
	Outbox  *outbox.Outbox
	Offline *offline.Ledger
	Signer  *txreport.Signer
	// HubKeys holds the certificates whose signatures on authorization
	// responses and report acks the kiosk accepts. Requests are always
	// signed with Signer; with HubKeys nil responses and acks are taken
	// unverified, which only simulation allows (config: hub.auth_cert).
	HubKeys *txreport.Keyring
	// AuthTimeout bounds an online authorization (default 5s); after it
	// the payment is decided offline.
	AuthTimeout time.Duration
	// ResendAfter is how long the sender waits for a hub ack before it
	// publishes a report again on the same connection (default 10s).
	ResendAfter time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
	// OnDelivered is called (must not block) when the hub acknowledged a
	// report and it left the outbox.
	OnDelivered func(txID string)
}

// Payment is what the session asks to authorize.
type Payment struct {
	TxID     string
	Merchant string
	Amount   int64  // minor units
	Currency string // ISO 4217
}

// Authorization is the verdict. Reason is a machine code when declined.
type Authorization struct {
	Approved bool   `json:"approved"`
	Reason   string `json:"reason,omitempty"`
	Online   bool   `json:"online"`
	Ref      string `json:"ref,omitempty"` // hub reference (online approvals)
}

// Decline reasons of the flow itself (offline reasons: package offline;
// online reasons: whatever the hub says).
const (
	ReasonOutboxFull = "outbox_full" // the report could not be kept: nothing is approved
)

// Status is the health view.
type Status struct {
	Connected  bool           `json:"connected"`
	Outbox     outbox.Stats   `json:"outbox"`
	OldestAgeS float64        `json:"oldest_age_s"`
	Offline    offline.Status `json:"offline,omitzero"`
	Published  uint64         `json:"published"`
	Delivered  uint64         `json:"delivered"`
	LastAck    time.Time      `json:"last_ack,omitzero"`
	// AcksRefused counts acks that changed nothing because they did not
	// verify or named another terminal or another report (forged,
	// replayed from elsewhere, mismatched); AckRefusal is the last reason.
	AcksRefused uint64 `json:"acks_refused"`
	AckRefusal  string `json:"ack_refusal,omitempty"`
	// AcksStale counts valid acks for reports no longer queued: the hub
	// acknowledging a resend twice, or an old ack replayed.
	AcksStale uint64 `json:"acks_stale"`
	// HubRefused counts reports the hub refused for good (hub.AckRefused):
	// dropped from the outbox, not delivered; LastHubRefused names the last.
	HubRefused     uint64 `json:"hub_refused"`
	LastHubRefused string `json:"last_hub_refused,omitempty"`
	Alarm          string `json:"alarm,omitempty"` // outbox_high, outbox_full
	SenderError    string `json:"sender_error,omitempty"`
}

// Flow is safe for concurrent use.
type Flow struct {
	opts Options
	log  *slog.Logger
	acks <-chan hub.Message
	wake chan struct{}

	mu        sync.Mutex
	published uint64
	delivered uint64
	lastAck   time.Time
	senderErr string
	refused   uint64
	refusal   string
	stale     uint64
	// hubRefused: reports the hub refused for good.
	hubRefused     uint64
	lastHubRefused string
}

// New checks options and registers the ack route on the hub client (so
// call it before hub.Run).
func New(o Options) (*Flow, error) {
	if o.Hub == nil || o.Outbox == nil || o.Signer == nil {
		return nil, errors.New("txflow: Hub, Outbox and Signer are required")
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = 5 * time.Second
	}
	if o.ResendAfter <= 0 {
		o.ResendAfter = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Flow{opts: o, log: log, acks: o.Hub.Route(hub.TopicTxAck, 1024), wake: make(chan struct{}, 1)}, nil
}

// Authorize asks the hub; when the hub is unreachable or silent for
// AuthTimeout, it decides offline (floor limit and cap). err is only for
// ctx ending or a storage failure; a decline is not an error.
func (f *Flow) Authorize(ctx context.Context, p Payment) (Authorization, error) {
	lvl := f.opts.Outbox.Level()
	if lvl == outbox.Full {
		return Authorization{Reason: ReasonOutboxFull}, nil
	}
	if f.opts.Hub.Status().Connected {
		actx, cancel := context.WithTimeout(ctx, f.opts.AuthTimeout)
		resp, err := f.opts.Hub.Authorize(actx, hub.AuthRequest{TxID: p.TxID, Merchant: p.Merchant, Amount: p.Amount, Currency: p.Currency},
			authCodec{signer: f.opts.Signer, hubs: f.opts.HubKeys})
		cancel()
		if err == nil {
			return Authorization{Approved: resp.Approved, Reason: resp.Reason, Online: true, Ref: resp.Ref}, nil
		}
		if ctx.Err() != nil {
			return Authorization{}, ctx.Err()
		}
		f.log.Warn("online authorization failed; deciding offline", "tx", p.TxID, "err", err)
	}
	if f.opts.Offline == nil {
		return Authorization{Reason: offline.ReasonDisabled}, nil
	}
	if lvl >= outbox.High {
		// A growing backlog means the hub has been away long: stop
		// adding offline exposure before the outbox fills.
		return Authorization{Reason: offline.ReasonOutboxFull}, nil
	}
	d, err := f.opts.Offline.Approve(p.TxID, p.Amount, p.Currency)
	if err != nil {
		return Authorization{}, fmt.Errorf("offline authorization: %w", err)
	}
	return Authorization{Approved: d.Approved, Reason: d.Reason}, nil
}

// Release gives back an offline approval whose transaction was cancelled
// before Commit (card pulled after authorization).
func (f *Flow) Release(txID string) error {
	if f.opts.Offline == nil {
		return nil
	}
	return f.opts.Offline.Settle(txID)
}

// Commit signs the report and stores it durably (fsynced) before it
// returns; only then may the result be shown. The sender delivers it.
func (f *Flow) Commit(ctx context.Context, r *txreport.Report) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	env, err := f.opts.Signer.Sign(r)
	if err != nil {
		return fmt.Errorf("commit %s: %w", r.TxID, err)
	}
	if err := f.opts.Outbox.Put(r.TxID, env); err != nil {
		return fmt.Errorf("commit %s: %w", r.TxID, err)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// Status returns health data: link, outbox depth and age, alarm.
func (f *Flow) Status() Status {
	st := Status{Connected: f.opts.Hub.Status().Connected, Outbox: f.opts.Outbox.Stats()}
	if !st.Outbox.Oldest.IsZero() {
		st.OldestAgeS = f.opts.Now().Sub(st.Outbox.Oldest).Seconds()
	}
	if f.opts.Offline != nil {
		st.Offline = f.opts.Offline.Status()
	}
	switch st.Outbox.Level {
	case outbox.High:
		st.Alarm = "outbox_high"
	case outbox.Full:
		st.Alarm = "outbox_full"
	}
	f.mu.Lock()
	st.Published, st.Delivered, st.LastAck, st.SenderError = f.published, f.delivered, f.lastAck, f.senderErr
	st.AcksRefused, st.AckRefusal, st.AcksStale = f.refused, f.refusal, f.stale
	st.HubRefused, st.LastHubRefused = f.hubRefused, f.lastHubRefused
	f.mu.Unlock()
	return st
}

// Run is the sender: whenever the link is up it publishes pending
// reports in outbox order (QoS 1), republishes those not acknowledged
// within ResendAfter or after a reconnect, and removes a report when the
// hub acknowledges its transaction id. It returns when ctx ends.
func (f *Flow) Run(ctx context.Context) error {
	sent := map[string]time.Time{} // tx id → last publish on this connection
	var session uint64
	for {
		changed := f.opts.Hub.Changed()
		st := f.opts.Hub.Status()
		next := f.opts.ResendAfter
		if st.Connected {
			if st.Session != session {
				session = st.Session
				clear(sent) // a new connection: the old one's deliveries are uncertain
			}
			var err error
			next, err = f.publishPending(ctx, sent)
			f.setErr(err)
			if err != nil && ctx.Err() == nil {
				f.log.Warn("sender: publish failed", "err", err)
				next = time.Second
			}
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case m := <-f.acks:
			f.handleAck(m, sent, nil)
		case <-f.wake:
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func (f *Flow) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.senderErr = ""
	} else {
		f.senderErr = err.Error()
	}
}

// publishPending walks the outbox in order and publishes what is due. It
// returns how long until the next record becomes due for a resend.
func (f *Flow) publishPending(ctx context.Context, sent map[string]time.Time) (time.Duration, error) {
	next := f.opts.ResendAfter
	var after uint64
	// Acks taken during the walk: their records, read before, are gone.
	// Only this goroutine acks, so no other record leaves meanwhile.
	acked := map[string]bool{}
	for {
		recs, err := f.opts.Outbox.Pending(after, 64)
		if err != nil {
			return next, err
		}
		if len(recs) == 0 {
			return next, nil
		}
		for _, r := range recs {
			after = r.Seq
			// Take acks as they come, so a long backlog is not resent
			// needlessly.
			f.drainAcks(sent, acked)
			if acked[r.TxID] {
				continue
			}
			now := f.opts.Now()
			if last, ok := sent[r.TxID]; ok {
				if due := last.Add(f.opts.ResendAfter).Sub(now); due > 0 {
					next = min(next, due)
					continue
				}
			}
			if err := f.opts.Hub.Publish(ctx, hub.TopicTx, 1, false, r.Payload); err != nil {
				return next, fmt.Errorf("publish %s: %w", r.TxID, err)
			}
			sent[r.TxID] = now
			f.mu.Lock()
			f.published++
			f.mu.Unlock()
		}
	}
}

func (f *Flow) drainAcks(sent map[string]time.Time, acked map[string]bool) {
	for {
		select {
		case m := <-f.acks:
			f.handleAck(m, sent, acked)
		default:
			return
		}
	}
}

// handleAck removes an acknowledged report from the outbox and notes its
// id in acked (when not nil) once it is gone. Only an ack the hub sealed
// (when HubKeys is set), for this terminal and for the exact report in
// the outbox, removes anything: whoever else can publish on the ack topic
// must not make the kiosk forget an undelivered report or release its
// offline exposure (docs/mqtt.md, "Acknowledgement").
func (f *Flow) handleAck(m hub.Message, sent map[string]time.Time, acked map[string]bool) {
	a, err := f.decodeAck(m.Payload)
	if err == nil && a.Terminal != f.opts.Hub.DeviceID() {
		err = fmt.Errorf("ack for terminal %q", a.Terminal)
	}
	if err != nil {
		f.refuseAck(a.TxID, err)
		return
	}
	// Only the report the ack names goes, checked and removed in one
	// outbox transaction.
	var mismatch bool
	found, err := f.opts.Outbox.AckIf(a.TxID, func(r outbox.Record) error {
		h, herr := txreport.ReportHash(r.Payload)
		if herr != nil || h != a.ReportSHA256 {
			mismatch = true
			return fmt.Errorf("ack names report %.16s…, the outbox holds %.16s… (%v)", a.ReportSHA256, h, herr)
		}
		return nil
	})
	if mismatch {
		f.refuseAck(a.TxID, err)
		return
	}
	if err != nil {
		f.log.Error("sender: outbox ack", "tx", a.TxID, "err", err)
		return // the report stays; a later ack removes it
	}
	if !found {
		// Already delivered: a second ack for a resend, or a replay. The
		// offline settle is idempotent and covers a crash between the
		// outbox ack and the settle of an earlier run.
		f.settle(a.TxID)
		f.mu.Lock()
		f.stale++
		f.mu.Unlock()
		return
	}
	delete(sent, a.TxID)
	if acked != nil {
		acked[a.TxID] = true
	}
	f.settle(a.TxID)
	if a.Status == hub.AckRefused {
		// Resending cannot help: the hub will never take it. It is gone
		// from the outbox; the count and the log say so.
		f.log.Error("sender: the hub refused a report for good (its certificate was revoked or expired when it was decided); dropped", "tx", a.TxID)
		f.mu.Lock()
		f.hubRefused++
		f.lastHubRefused = a.TxID
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	f.delivered++
	f.lastAck = f.opts.Now()
	f.mu.Unlock()
	if f.opts.OnDelivered != nil {
		f.opts.OnDelivered(a.TxID)
	}
}

// decodeAck opens a sealed ack with the hub keys; without them
// (simulation) it takes a sealed ack's body or a plain one unverified.
func (f *Flow) decodeAck(b []byte) (hub.TxAck, error) {
	var a hub.TxAck
	if f.opts.HubKeys != nil {
		if _, err := f.opts.HubKeys.Open(b, &a); err != nil {
			return a, fmt.Errorf("ack not sealed by a trusted hub: %w", err)
		}
	} else {
		var env txreport.Sealed
		if err := json.Unmarshal(b, &env); err == nil && len(env.Body) > 0 {
			b = env.Body
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return a, fmt.Errorf("malformed ack: %w", err)
		}
	}
	if a.TxID == "" || a.ReportSHA256 == "" {
		return a, errors.New("ack without tx_id or report_sha256")
	}
	return a, nil
}

func (f *Flow) refuseAck(txID string, err error) {
	f.log.Warn("sender: ack refused; nothing removed", "tx", txID, "err", err)
	f.mu.Lock()
	f.refused++
	f.refusal = err.Error()
	f.mu.Unlock()
}

func (f *Flow) settle(txID string) {
	if f.opts.Offline == nil {
		return
	}
	if err := f.opts.Offline.Settle(txID); err != nil {
		f.log.Error("sender: offline settle", "tx", txID, "err", err)
	}
}

// authCodec signs authorization requests with the device key and checks
// the hub's signature on responses (docs/mqtt.md, "Signed authorization").
type authCodec struct {
	signer *txreport.Signer
	hubs   *txreport.Keyring
}

func (a authCodec) EncodeRequest(r hub.AuthRequest) ([]byte, error) { return a.signer.Seal(r) }

func (a authCodec) DecodeResponse(b []byte) (hub.AuthResponse, error) {
	var r hub.AuthResponse
	if a.hubs != nil {
		_, err := a.hubs.Open(b, &r)
		return r, err
	}
	// Unverified (simulation without hub.auth_cert): a signed response's
	// body or a plain one.
	var env txreport.Sealed
	if err := json.Unmarshal(b, &env); err == nil && len(env.Body) > 0 {
		b = env.Body
	}
	err := json.Unmarshal(b, &r)
	return r, err
}
