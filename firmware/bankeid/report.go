package bankeid

import (
	"crypto/x509/pkix"
	"encoding/asn1"
)

// Check is one step's outcome (the same shape as emrtd.Check).
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason"`
}

// Identity is who the eID certificate names. It is personal data: it goes
// to staff and the bank, never to logs.
type Identity struct {
	// Number is the eID number (the certificate subject's serialNumber
	// attribute): one per person, the key the bank enrols the face under.
	Number    string `json:"eid_number"`
	Name      string `json:"name"`
	Country   string `json:"country,omitempty"`
	Authority string `json:"authority"`
	// CertificateSerial is the certificate's serial number (hex).
	CertificateSerial string `json:"certificate_serial"`
	KeyAlgorithm      string `json:"key_algorithm"`
}

// Evidence is the holder's own act: the card's signature over the
// transaction challenge with the certificate that verifies it. It goes
// into the signed report; the hub verifies it again (VerifyEvidence).
type Evidence struct {
	Profile     string `json:"profile"`
	Algorithm   string `json:"algorithm"` // SM2-SM3 or ECDSA-P256-SM3
	Challenge   []byte `json:"challenge"` // the encoded Challenge (M)
	Signature   []byte `json:"signature"` // ASN.1 ECDSA-Sig-Value
	Certificate []byte `json:"certificate"`
}

// Report is the outcome of Read.
type Report struct {
	Document string   `json:"document"` // always "bankeid"
	Profile  string   `json:"profile"`
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"`
	Checks   []Check  `json:"checks"`
	// PINRetriesLeft after the read when the card said (63Cx).
	PINRetriesLeft *int      `json:"pin_retries_left,omitempty"`
	Identity       *Identity `json:"identity,omitempty"`
	Evidence       *Evidence `json:"evidence,omitempty"`
	APDUs          int       `json:"apdus"`
}

func (r *Report) pass(name, reason string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Reason: reason})
}

func (r *Report) fail(name, code, reason string) {
	r.Checks = append(r.Checks, Check{Name: name, Code: code, Reason: reason})
	r.Failures = append(r.Failures, code)
	r.Passed = false
}

// oidSerialNumber is X.520 serialNumber (2.5.4.5).
var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

func serialNumberOf(n pkix.Name) string {
	if n.SerialNumber != "" {
		return n.SerialNumber
	}
	for _, a := range n.Names {
		if a.Type.Equal(oidSerialNumber) {
			if s, ok := a.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}
