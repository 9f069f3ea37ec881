package daemon

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kiosk/firmware/document"
	"kiosk/firmware/hub"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
)

// hubFaceRefs asks the bank hub for the face it enrolled for a bank eID
// holder (docs/mqtt.md, "Face reference"): a request sealed by the device
// key carrying a one-time P-256 key, an answer sealed by the hub and
// encrypted to that key. The face is decrypted in memory only; the
// session clears it after the match.
type hubFaceRefs struct {
	client  *hub.Client
	signer  *txreport.Signer
	hubs    *txreport.Keyring // whose seal counts; nil: none (refused)
	rsp     <-chan hub.Message
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

var _ session.FaceReferences = (*hubFaceRefs)(nil)

// FaceReference implements session.FaceReferences.
func (f *hubFaceRefs) FaceReference(ctx context.Context, holder document.Holder) ([]byte, error) {
	if f.hubs == nil {
		// An unverified answer could be anyone's face: never match one.
		return nil, errors.New("face references need the hub's certificate (hub.auth_cert)")
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	req := hub.FaceRefRequest{ID: hub.NewID(), Terminal: f.client.DeviceID(), EIDNumber: holder.ID,
		Key: priv.PublicKey().Bytes(), Expires: f.now().Add(f.timeout).UTC()}
	b, err := f.signer.Seal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithDeadline(ctx, req.Expires)
	defer cancel()
	for drained := false; !drained; { // answers to earlier requests
		select {
		case <-f.rsp:
		default:
			drained = true
		}
	}
	if err := f.client.Publish(ctx, hub.TopicFaceRefReq, 1, false, b); err != nil {
		return nil, fmt.Errorf("face reference request: %w", err)
	}
	for {
		select {
		case m := <-f.rsp:
			var resp hub.FaceRefResponse
			if _, err := f.hubs.Open(m.Payload, &resp); err != nil {
				f.log.Warn("face reference answer refused", "err", err)
				continue
			}
			if resp.ID != req.ID {
				continue
			}
			ref, err := hub.OpenFaceRef(priv, req, resp)
			if err != nil {
				return nil, err
			}
			if ref == nil {
				return nil, session.ErrNoFaceReference
			}
			return ref, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("face reference: no answer: %w", ctx.Err())
		}
	}
}
