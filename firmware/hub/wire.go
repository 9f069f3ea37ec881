package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Transaction topics below <prefix>/<device>/ (docs/mqtt.md).
const (
	TopicTx      = "tx"        // kiosk → hub: signed report envelope (txreport.Envelope), QoS 1
	TopicTxAck   = "tx-ack"    // hub → kiosk: TxAck, QoS 1
	TopicAuthReq = "auth/req"  // kiosk → hub: AuthRequest, QoS 1
	TopicAuthRsp = "auth/resp" // hub → kiosk: AuthResponse, QoS 1
)

// HubPresenceLevel is the topic level of the hub's own presence:
// <prefix>/_hub/presence/<instance>, retained, sealed by the hub's
// authorization key, with a sealed "offline" last will (docs/mqtt.md, "Hub
// presence"). A device id cannot start with '_', so it never clashes.
const HubPresenceLevel = "_hub"

// TxAck is the hub's acknowledgement of a transaction report, sealed with
// the hub's key (docs/mqtt.md, "Acknowledgement"). It names the terminal
// and the SHA-256 of the report it stored, so it cannot be carried over to
// another kiosk or another report; the kiosk deletes a report from its
// outbox only on an ack that verifies and names exactly that report.
type TxAck struct {
	TxID         string `json:"tx_id"`
	Terminal     string `json:"terminal_id"`
	ReportSHA256 string `json:"report_sha256"` // txreport.ReportHash of the envelope
	Status       string `json:"status"`        // applied (first time), duplicate (already held) or refused (AckRefused)
}

// AckRefused is a TxAck status: the hub refuses the report for good (its
// certificate was revoked or had expired when the report was decided).
// The kiosk drops it from the outbox and counts it, instead of resending
// it forever.
const AckRefused = "refused"

// AuthRequest asks the hub to authorize a payment. ID correlates the
// response; the hub ignores requests received after Expires.
type AuthRequest struct {
	ID       string    `json:"id"`
	TxID     string    `json:"tx_id"`
	Terminal string    `json:"terminal_id"`
	Merchant string    `json:"merchant"`
	Amount   int64     `json:"amount"`
	Currency string    `json:"currency"`
	Expires  time.Time `json:"expires"`
}

// AuthResponse answers an AuthRequest with the same ID. It repeats the
// terminal, amount and currency it decided on, so a signed answer cannot
// be carried over to another kiosk or another amount.
type AuthResponse struct {
	ID       string `json:"id"`
	TxID     string `json:"tx_id"`
	Terminal string `json:"terminal_id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Approved bool   `json:"approved"`
	Reason   string `json:"reason,omitempty"` // machine code when declined
	Ref      string `json:"ref,omitempty"`    // hub authorization reference
}

// ErrAuthTimeout is returned by Authorize when no response came in time.
var ErrAuthTimeout = errors.New("hub: authorization timed out")

// NewID returns a random 128-bit hex id for correlation and transaction ids.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AuthCodec encodes authorization requests and decodes responses. nil
// means plain JSON; txflow's signs each request with the device key and
// accepts only responses the hub signed (docs/mqtt.md, "Signed
// authorization").
type AuthCodec interface {
	EncodeRequest(AuthRequest) ([]byte, error)
	DecodeResponse([]byte) (AuthResponse, error)
}

// Authorize sends req (filling ID, Terminal and Expires when empty) and
// waits for a matching response that codec accepts until ctx ends or
// req.Expires passes; a response codec refuses (unsigned, forged) is
// logged and the wait goes on. ErrNotConnected when the link is down,
// ErrAuthTimeout when no acceptable answer came, ErrHubOffline when the
// hub said (sealed) it is offline, before or during the wait: all mean
// "decide offline".
func (c *Client) Authorize(ctx context.Context, req AuthRequest, codec AuthCodec) (AuthResponse, error) {
	if c.HubOffline() {
		return AuthResponse{}, ErrHubOffline
	}
	hubDown := c.hubDownCh()
	if req.ID == "" {
		req.ID = NewID()
	}
	if req.Terminal == "" {
		req.Terminal = c.opts.DeviceID
	}
	if req.Expires.IsZero() {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = c.opts.Now().Add(10 * time.Second)
		}
		req.Expires = dl.UTC()
	}
	ctx, cancel := context.WithDeadline(ctx, req.Expires)
	defer cancel()
	ch := make(chan []byte, 4)
	c.mu.Lock()
	c.pendingAuth[req.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pendingAuth, req.ID)
		c.mu.Unlock()
	}()
	var b []byte
	var err error
	if codec != nil {
		b, err = codec.EncodeRequest(req)
	} else {
		b, err = json.Marshal(req)
	}
	if err != nil {
		return AuthResponse{}, fmt.Errorf("hub: auth request: %w", err)
	}
	if err := c.Publish(ctx, TopicAuthReq, 1, false, b); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return AuthResponse{}, ErrAuthTimeout
		}
		return AuthResponse{}, fmt.Errorf("hub: send auth request: %w", err)
	}
	for {
		select {
		case raw := <-ch:
			var r AuthResponse
			if codec != nil {
				r, err = codec.DecodeResponse(raw)
			} else {
				err = json.Unmarshal(raw, &r)
			}
			if err == nil && (r.ID != req.ID || r.TxID != req.TxID || r.Terminal != req.Terminal || r.Amount != req.Amount || r.Currency != req.Currency) {
				err = fmt.Errorf("response for another request (id %q, tx %q, terminal %q, %d %s)", r.ID, r.TxID, r.Terminal, r.Amount, r.Currency)
			}
			if err != nil {
				c.log.Warn("hub: auth response refused", "tx", req.TxID, "err", err)
				continue
			}
			return r, nil
		case <-hubDown:
			return AuthResponse{}, ErrHubOffline
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return AuthResponse{}, ErrAuthTimeout
			}
			return AuthResponse{}, ctx.Err()
		}
	}
}

// onAuthResponse runs in paho's router: it must not block. It only finds
// the waiting request by the response's id (in a signed response, the
// body's) and hands the payload over; the waiter decodes and verifies it.
// Responses for unknown ids (late, duplicate) are dropped.
func (c *Client) onAuthResponse(payload []byte) {
	var probe struct {
		ID   string          `json:"id"`
		Body json.RawMessage `json:"body"`
	}
	err := json.Unmarshal(payload, &probe)
	if err == nil && len(probe.Body) > 0 {
		err = json.Unmarshal(probe.Body, &probe)
	}
	if err != nil || probe.ID == "" {
		c.log.Warn("hub: malformed auth response", "err", err)
		return
	}
	c.mu.Lock()
	ch := c.pendingAuth[probe.ID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- payload:
		default: // a flood of answers for one id: the first few suffice
		}
	}
}
