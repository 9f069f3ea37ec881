package txreport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Sealed is a signed JSON object other than a transaction report: the
// authorization request a kiosk sends and the response a hub returns
// (docs/mqtt.md, "Signed authorization"). Body is the object's canonical
// encoding; Alg, Sig and Cert are as in Envelope.
type Sealed struct {
	Body json.RawMessage `json:"body"`
	Alg  string          `json:"alg"`
	Sig  string          `json:"sig"`
	Cert string          `json:"cert"`
}

// Seal signs the JSON encoding of v (which must fall in the canonical
// subset: integers only, no control characters) and returns the Sealed
// bytes.
func (s *Signer) Seal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("txreport: seal: %w", err)
	}
	body, err := Canonical(raw)
	if err != nil {
		return nil, fmt.Errorf("txreport: seal: %w", err)
	}
	sig, fp, err := s.sign(body)
	if err != nil {
		return nil, fmt.Errorf("txreport: seal: %w", err)
	}
	return json.Marshal(Sealed{Body: body, Alg: Alg, Sig: sig, Cert: fp})
}

// Open verifies Sealed bytes from the network against the keyring and
// decodes the body into v, refusing unknown fields. It returns the signer.
func (k *Keyring) Open(b []byte, v any) (Device, error) {
	if len(b) > MaxEnvelope {
		return Device{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	var env Sealed
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return Device{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Alg != Alg || len(env.Body) == 0 || env.Body[0] != '{' {
		return Device{}, fmt.Errorf("%w: alg %q or body", ErrMalformed, env.Alg)
	}
	dev, ok := k.device(env.Cert)
	if !ok {
		return Device{}, fmt.Errorf("%w: %s", ErrUnknownDevice, env.Cert)
	}
	// An authorization is live traffic: a signer whose certificate has
	// expired (or is not yet valid) signs nothing that counts.
	if now := time.Now(); now.Before(dev.Cert.NotBefore) || now.After(dev.Cert.NotAfter) {
		return dev, fmt.Errorf("%w: certificate of %s valid %s to %s", ErrUnknownDevice, dev.ID,
			dev.Cert.NotBefore.UTC().Format(time.RFC3339), dev.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	body, err := verified(dev, env.Body, env.Sig, "body")
	if err != nil {
		return dev, err
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return dev, fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	return dev, nil
}
