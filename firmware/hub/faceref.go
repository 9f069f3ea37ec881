package hub

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// Face reference topics below <prefix>/<device>/ (docs/mqtt.md, "Face
// reference"): a kiosk reading a document that carries no face (a bank
// eID) asks the bank for the face it enrolled for that eID identity.
const (
	TopicFaceRefReq = "faceref/req"  // kiosk → hub: FaceRefRequest sealed by the device key, QoS 1
	TopicFaceRefRsp = "faceref/resp" // hub → kiosk: FaceRefResponse sealed by the hub, QoS 1
)

// MaxFaceRef bounds an enrolled face reference (a JPEG of the face): the
// sealed response must stay within txreport.MaxEnvelope.
const MaxFaceRef = 40 << 10

// FaceRefRequest asks for the enrolled face of EIDNumber. Key is a fresh
// P-256 public key (uncompressed point) the kiosk made for this request
// only: the device's signature on the request binds it to the device, and
// the answer is encrypted to it, so only this kiosk, in this session, can
// read the face.
type FaceRefRequest struct {
	ID        string    `json:"id"`
	Terminal  string    `json:"terminal_id"`
	EIDNumber string    `json:"eid_number"`
	Key       []byte    `json:"key"`
	Expires   time.Time `json:"expires"`
}

// FaceRefResponse answers a FaceRefRequest with the same ID. Found false:
// the bank holds no face for that identity (no ciphertext). Otherwise the
// face is ECIES-encrypted to the request's key: ECDH P-256 with the hub's
// one-time Ephemeral key, HKDF-SHA256 (salt = Ephemeral || request Key,
// info "kiosk faceref v1") to an AES-256-GCM key, Nonce, and the
// additional data "kiosk faceref v1|ID|terminal|eID number".
type FaceRefResponse struct {
	ID         string `json:"id"`
	Terminal   string `json:"terminal_id"`
	EIDNumber  string `json:"eid_number"`
	Found      bool   `json:"found"`
	Ephemeral  []byte `json:"ephemeral,omitempty"`
	Nonce      []byte `json:"nonce,omitempty"`
	Ciphertext []byte `json:"ciphertext,omitempty"`
}

// ErrFaceRef is wrapped by every face reference sealing or opening error.
var ErrFaceRef = errors.New("hub: face reference")

const faceRefInfo = "kiosk faceref v1"

func faceRefAAD(id, terminal, eid string) []byte {
	return []byte(faceRefInfo + "|" + id + "|" + terminal + "|" + eid)
}

func faceRefAEAD(shared, hubEph, kioskKey []byte) (cipher.AEAD, error) {
	salt := append(append([]byte(nil), hubEph...), kioskKey...)
	key, err := hkdf.Key(sha256.New, shared, salt, faceRefInfo, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealFaceRef encrypts ref to the request's key (the hub side).
func SealFaceRef(req FaceRefRequest, ref []byte) (FaceRefResponse, error) {
	resp := FaceRefResponse{ID: req.ID, Terminal: req.Terminal, EIDNumber: req.EIDNumber, Found: true}
	if len(ref) == 0 || len(ref) > MaxFaceRef {
		return resp, fmt.Errorf("%w: %d bytes (1 to %d)", ErrFaceRef, len(ref), MaxFaceRef)
	}
	kioskPub, err := ecdh.P256().NewPublicKey(req.Key)
	if err != nil {
		return resp, fmt.Errorf("%w: request key: %v", ErrFaceRef, err)
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return resp, err
	}
	shared, err := eph.ECDH(kioskPub)
	if err != nil {
		return resp, fmt.Errorf("%w: %v", ErrFaceRef, err)
	}
	defer clear(shared)
	resp.Ephemeral = eph.PublicKey().Bytes()
	aead, err := faceRefAEAD(shared, resp.Ephemeral, req.Key)
	if err != nil {
		return resp, err
	}
	resp.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(resp.Nonce); err != nil {
		return resp, err
	}
	resp.Ciphertext = aead.Seal(nil, resp.Nonce, ref, faceRefAAD(req.ID, req.Terminal, req.EIDNumber))
	return resp, nil
}

// OpenFaceRef decrypts a response to req with the request's private key
// (the kiosk side), after checking that it answers req. The face is
// returned in a new buffer the caller clears after use.
func OpenFaceRef(priv *ecdh.PrivateKey, req FaceRefRequest, resp FaceRefResponse) ([]byte, error) {
	if resp.ID != req.ID || resp.Terminal != req.Terminal || resp.EIDNumber != req.EIDNumber {
		return nil, fmt.Errorf("%w: the response answers another request", ErrFaceRef)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), req.Key) {
		return nil, fmt.Errorf("%w: not the request's key", ErrFaceRef)
	}
	if !resp.Found {
		return nil, nil
	}
	hubPub, err := ecdh.P256().NewPublicKey(resp.Ephemeral)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %v", ErrFaceRef, err)
	}
	shared, err := priv.ECDH(hubPub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFaceRef, err)
	}
	defer clear(shared)
	aead, err := faceRefAEAD(shared, resp.Ephemeral, req.Key)
	if err != nil {
		return nil, err
	}
	if len(resp.Nonce) != aead.NonceSize() || len(resp.Ciphertext) > MaxFaceRef+aead.Overhead() {
		return nil, fmt.Errorf("%w: nonce or ciphertext size", ErrFaceRef)
	}
	ref, err := aead.Open(nil, resp.Nonce, resp.Ciphertext, faceRefAAD(req.ID, req.Terminal, req.EIDNumber))
	if err != nil {
		return nil, fmt.Errorf("%w: does not decrypt: %v", ErrFaceRef, err)
	}
	return ref, nil
}
