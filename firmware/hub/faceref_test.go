package hub

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"
)

func TestFaceRefSealOpen(t *testing.T) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req := FaceRefRequest{ID: "r1", Terminal: "kiosk-1", EIDNumber: "EID-1", Key: priv.PublicKey().Bytes(), Expires: time.Now()}
	face := bytes.Repeat([]byte{0xFF, 0xD8, 7}, 1000)
	resp, err := SealFaceRef(req, face)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(resp.Ciphertext, face[:64]) {
		t.Fatal("the face is in the clear")
	}
	got, err := OpenFaceRef(priv, req, resp)
	if err != nil || !bytes.Equal(got, face) {
		t.Fatalf("open: %v", err)
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	for name, f := range map[string]func() error{
		"another key": func() error {
			r := req
			r.Key = other.PublicKey().Bytes()
			_, err := OpenFaceRef(other, r, resp)
			return err
		},
		"another identity": func() error {
			r, s := req, resp
			r.EIDNumber, s.EIDNumber = "EID-2", "EID-2"
			_, err := OpenFaceRef(priv, r, s)
			return err
		},
		"another request": func() error { s := resp; s.ID = "r2"; _, err := OpenFaceRef(priv, req, s); return err },
		"altered": func() error {
			s := resp
			s.Ciphertext = append([]byte(nil), resp.Ciphertext...)
			s.Ciphertext[3] ^= 1
			_, err := OpenFaceRef(priv, req, s)
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := SealFaceRef(req, make([]byte, MaxFaceRef+1)); err == nil {
		t.Error("an oversized face was sealed")
	}
	none, err := OpenFaceRef(priv, req, FaceRefResponse{ID: "r1", Terminal: "kiosk-1", EIDNumber: "EID-1"})
	if err != nil || none != nil {
		t.Errorf("not found: %v %v", none, err)
	}
}

// FuzzOpenFaceRef: any response (from the network, after the hub's seal)
// opens only when it is the genuine answer, and never panics.
func FuzzOpenFaceRef(f *testing.F) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	req := FaceRefRequest{ID: "r1", Terminal: "kiosk-1", EIDNumber: "EID-1", Key: priv.PublicKey().Bytes()}
	good, err := SealFaceRef(req, []byte("face"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Ephemeral, good.Nonce, good.Ciphertext, true)
	f.Add([]byte{4}, []byte{}, []byte{}, true)
	f.Fuzz(func(t *testing.T, eph, nonce, ct []byte, found bool) {
		resp := FaceRefResponse{ID: req.ID, Terminal: req.Terminal, EIDNumber: req.EIDNumber, Found: found, Ephemeral: eph, Nonce: nonce, Ciphertext: ct}
		ref, err := OpenFaceRef(priv, req, resp)
		if err == nil && ref != nil && !(bytes.Equal(eph, good.Ephemeral) && bytes.Equal(nonce, good.Nonce) && bytes.Equal(ct, good.Ciphertext)) {
			t.Fatalf("a forged response opened to %q", ref)
		}
	})
}
