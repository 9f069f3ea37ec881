package refhub

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
)

// The hub answers a face reference request only when the requesting
// device sealed it for itself and it is current; the face goes out
// encrypted to the request's key, and "none" when nothing is enrolled.
func TestHandleFaceRef(t *testing.T) {
	ring := txreport.NewKeyring()
	signer := func(id string) *txreport.Signer {
		key, cert, err := devkey.Generate(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := ring.Add(cert); err != nil {
			t.Fatal(err)
		}
		s, err := txreport.NewSigner(key, cert)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	k1, k2 := signer("kiosk-1"), signer("kiosk-2")
	enrolled := &hubstore.MemoryEnrolments{}
	enrolled.Enrol("EID-1", []byte("the enrolled face"))
	now := time.Now()
	h := &Hub{opts: Options{Keyring: ring, Enrolments: enrolled, Now: func() time.Time { return now }}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(s *txreport.Signer, device string, req hub.FaceRefRequest) outcome {
		t.Helper()
		b, err := s.Seal(req)
		if err != nil {
			t.Fatal(err)
		}
		return h.handleFaceRef(context.Background(), device, b)
	}
	req := hub.FaceRefRequest{ID: "r1", Terminal: "kiosk-1", EIDNumber: "EID-1", Key: priv.PublicKey().Bytes(), Expires: now.Add(time.Minute)}
	out := ask(k1, "kiosk-1", req)
	resp, ok := out.reply.(hub.FaceRefResponse)
	if !ok || out.sub != hub.TopicFaceRefRsp {
		t.Fatalf("no answer: %+v", out)
	}
	face, err := hub.OpenFaceRef(priv, req, resp)
	if err != nil || string(face) != "the enrolled face" {
		t.Fatalf("answer opens to %q, %v", face, err)
	}
	none := req
	none.EIDNumber = "EID-2"
	if out := ask(k1, "kiosk-1", none); out.reply == nil || out.reply.(hub.FaceRefResponse).Found {
		t.Fatalf("nobody enrolled: %+v", out)
	}
	expired := req
	expired.Expires = now.Add(-time.Second)
	far := req
	far.Expires = now.Add(time.Hour)
	for name, out := range map[string]outcome{
		"another device's seal": ask(k2, "kiosk-1", req),
		"another device's name": ask(k1, "kiosk-2", req),
		"expired":               ask(k1, "kiosk-1", expired),
		"far expiry":            ask(k1, "kiosk-1", far),
		"unsealed":              h.handleFaceRef(context.Background(), "kiosk-1", []byte(`{"id":"r1"}`)),
	} {
		if out.reply != nil {
			t.Errorf("%s: answered %+v", name, out.reply)
		}
	}
}
