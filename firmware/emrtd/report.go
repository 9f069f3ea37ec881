package emrtd

import (
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
)

// Check is one verification step's outcome.
type Check struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Code     string `json:"code,omitempty"` // stable machine code when not OK
	Reason   string `json:"reason"`
	Required bool   `json:"required"`
	// Warning: passed by policy with a reservation named by Code (e.g.
	// crl_missing).
	Warning bool `json:"warning,omitempty"`
}

// AccessInfo says how the chip was opened.
type AccessInfo struct {
	Protocol    string `json:"protocol"` // PACE or BAC
	Password    string `json:"password"` // CAN, PIN or MRZ
	OID         string `json:"oid,omitempty"`
	Mapping     string `json:"mapping,omitempty"`
	Cipher      string `json:"cipher"`
	Curve       string `json:"curve,omitempty"`
	ParameterID int    `json:"parameter_id,omitempty"`
	RetriesLeft *int   `json:"pin_retries_left,omitempty"`
}

// Document is what DG1 says. It is personal data: reports go to staff
// and, reduced, to the bank, never to logs.
type Document struct {
	Type           string `json:"type,omitempty"`
	IssuingState   string `json:"issuing_state,omitempty"`
	DocumentNumber string `json:"document_number,omitempty"`
	Surname        string `json:"surname,omitempty"`
	GivenNames     string `json:"given_names,omitempty"`
	Nationality    string `json:"nationality,omitempty"`
	Birth          string `json:"birth,omitempty"` // YYMMDD
	Sex            string `json:"sex,omitempty"`
	Expiry         string `json:"expiry,omitempty"` // YYMMDD
	LDSVersion     string `json:"lds_version,omitempty"`
	Signer         string `json:"document_signer,omitempty"`
	// DG11 and DG12 when the chip has them (9303-10 §4.7.11, §4.7.12).
	Details         *lds.DG11 `json:"personal_details,omitempty"`
	DocumentDetails *lds.DG12 `json:"document_details,omitempty"`
}

func (d *Document) fromMRZ(m *lds.MRZ) {
	d.Type, d.IssuingState, d.DocumentNumber = m.DocumentCode, m.IssuingState, m.DocumentNumber
	d.Surname, d.GivenNames, d.Nationality = m.Surname, m.GivenNames, m.Nationality
	d.Birth, d.Sex, d.Expiry = m.Birth, m.Sex, m.Expiry
}

// Face is the chip photo. It lives in memory only; Wipe clears it.
type Face struct {
	Image  []byte `json:"-"`
	Format string `json:"format"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// ChipAuthenticity reports Chip Authentication (9303-11 §6.2) or Active
// Authentication (§6.1): whether it ran, its verdict, and why.
type ChipAuthenticity struct {
	Ran      bool   `json:"ran"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"`
	Code     string `json:"code,omitempty"`
	Reason   string `json:"reason"`
	// Chip Authentication: protocol (e.g. id-CA-ECDH-AES-CBC-CMAC-128),
	// its OID, the new secure messaging cipher, the chip key's curve or
	// group, its keyId.
	Protocol string `json:"protocol,omitempty"`
	OID      string `json:"oid,omitempty"`
	Cipher   string `json:"cipher,omitempty"`
	Key      string `json:"key,omitempty"`
	KeyID    *int   `json:"key_id,omitempty"`
	// Active Authentication: signature algorithm (e.g. ECDSA-SHA256,
	// RSA-ISO9796-2-SHA1), the challenge (hex) and whether it was bound
	// to the transaction.
	Algorithm        string `json:"algorithm,omitempty"`
	Challenge        string `json:"challenge,omitempty"`
	TransactionBound bool   `json:"transaction_bound,omitempty"`
}

// Report is the outcome of one inspection.
type Report struct {
	Passed         bool               `json:"passed"`
	Failures       []string           `json:"failures"` // codes of failed required checks
	Access         AccessInfo         `json:"access"`
	Document       Document           `json:"document"`
	Face           *Face              `json:"face,omitempty"`
	Checks         []Check            `json:"checks"`
	DataGroups     []string           `json:"files_read"`
	ExtendedLength bool               `json:"extended_length"`
	APDUs          int                `json:"apdus"`
	BytesOut       int                `json:"bytes_out"`
	BytesIn        int                `json:"bytes_in"`
	PhasesMS       map[string]float64 `json:"ms"`
	// Anti-cloning (9303-11 §6): what ran and why.
	ChipAuthentication   *ChipAuthenticity `json:"chip_authentication"`
	ActiveAuthentication *ChipAuthenticity `json:"active_authentication"`
	// Revocation is the CRL status of the document signer and CSCA;
	// nil when passive authentication did not get as far as the CSCA.
	Revocation *pa.Revocation `json:"revocation"`

	dg2 []byte // the buffer Face.Image aliases
}

func (r *Report) add(c Check) {
	r.Checks = append(r.Checks, c)
	r.recompute()
}

// recompute sets Passed: every required check ran OK, and the checks that
// prove the document (access, PA, face) are all present. Failing closed:
// an inspection cut short has not passed.
func (r *Report) recompute() {
	need := map[string]bool{"access_control": false, "passive_authentication": false, "dg1_mrz": false, "dg2_face": false}
	r.Failures = []string{}
	ok := true
	for _, c := range r.Checks {
		if _, want := need[c.Name]; want && c.OK {
			need[c.Name] = true
		}
		if c.Required && !c.OK {
			ok = false
			r.Failures = append(r.Failures, c.Code)
		}
	}
	for _, seen := range need {
		ok = ok && seen
	}
	r.Passed = ok
}

// Wipe overwrites the face image and the DG2 it came from. Call it as soon
// as the face has been matched.
func (r *Report) Wipe() {
	clear(r.dg2)
	if r.Face != nil {
		clear(r.Face.Image)
		r.Face.Image = nil
	}
	r.dg2 = nil
}
