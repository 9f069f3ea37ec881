package enrollwire

import (
	"encoding/json"
	"fmt"
)

// Offline enrollment, for branches without a link: the kiosk exports its
// CSR to a file (PEM, "CERTIFICATE REQUEST"), bank staff sign it at the
// hub into a Bundle, which comes back on USB. The bundle is signed by the
// device CA's issuing key (ECDSA with SHA-384 over the exact bytes of
// Accepted); the kiosk verifies that signature with the issuing
// certificate in the chain, the chain up to the root, and the root against
// the fingerprint staff read from `kioskctl ca init`.
type Bundle struct {
	V        int             `json:"v"`
	Accepted json.RawMessage `json:"accepted"` // an Accepted, byte for byte as signed
	Alg      string          `json:"alg"`      // ES384
	Sig      []byte          `json:"sig"`      // ASN.1 DER; base64 in JSON
}

// BundleAlg is the bundle signature algorithm.
const BundleAlg = "ES384"

// MaxBundle bounds a bundle file.
const MaxBundle = 256 << 10

// ParseBundle decodes a bundle file without verifying it.
func ParseBundle(b []byte) (*Bundle, *Accepted, error) {
	if len(b) > MaxBundle {
		return nil, nil, fmt.Errorf("%w: bundle of %d bytes", ErrMalformed, len(b))
	}
	var bu Bundle
	if err := strictDecode(b, &bu); err != nil {
		return nil, nil, err
	}
	if bu.V != Version || bu.Alg != BundleAlg || len(bu.Sig) == 0 {
		return nil, nil, fmt.Errorf("%w: bundle version or algorithm", ErrMalformed)
	}
	var a Accepted
	if err := strictDecode(bu.Accepted, &a); err != nil {
		return nil, nil, err
	}
	if !ValidDevice(a.Device) {
		return nil, nil, fmt.Errorf("%w: bundle device %q", ErrMalformed, a.Device)
	}
	return &bu, &a, nil
}
