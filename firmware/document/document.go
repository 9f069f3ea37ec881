// Package document is the one interface the kiosk uses for the identity
// document in the reader, whatever it is: what it proves, who it names,
// the face reference if it carries one, and the holder's signature over
// the transaction if it can make one. Two drivers implement it: emrtd
// (ICAO 9303 passports and ID cards, package emrtd, unchanged) and
// bankeid (PIN-protected eID applications on bank cards, package
// bankeid). The driver is chosen from the card itself (Detect), never
// from configuration.
package document

import (
	"context"
	"errors"
	"fmt"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/bankeid"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/emrtd/apdu"
)

// Kind names a driver.
type Kind string

// The drivers.
const (
	KindEMRTD   Kind = "emrtd"
	KindBankEID Kind = "bankeid"
)

// Proof is one thing a read document proves.
type Proof string

// Proofs the drivers give.
const (
	// ProofIssuerSignedData: the holder data is the issuer's (ICAO
	// passive authentication).
	ProofIssuerSignedData Proof = "issuer_signed_data"
	// ProofGenuineChip: the chip holds the issuer's private key (Chip or
	// Active Authentication), so it is no copy.
	ProofGenuineChip Proof = "genuine_chip"
	// ProofPossession: the card's key, certified by the eID authority and
	// not revoked, signed in this session.
	ProofPossession Proof = "possession"
	// ProofPINKnowledge: the holder entered the card's PIN.
	ProofPINKnowledge Proof = "pin_knowledge"
	// ProofTransactionSigned: the holder's key signed this transaction
	// (non-repudiable evidence, Document.TransactionSignature).
	ProofTransactionSigned Proof = "transaction_signed"
)

// Holder is who the document names: personal data, never for logs.
type Holder struct {
	// ID is the stable identifier of the person: the eID number (bank
	// eID) or issuing state + document number (eMRTD).
	ID        string `json:"id"`
	Name      string `json:"name"`
	Authority string `json:"authority"` // eID authority, or issuing state
}

// Document is a read and verified (or refused) identity document.
type Document interface {
	Kind() Kind
	// Passed is the driver's verdict; Failures its reason codes.
	Passed() bool
	Failures() []string
	// Proves lists what the read proved (empty unless Passed).
	Proves() []Proof
	Holder() Holder
	// Face is the face reference the document carries (the chip photo),
	// nil when it carries none: a bank eID's reference is held by the bank.
	Face() *emrtd.Face
	// TransactionSignature is the holder's signature over the
	// transaction challenge, nil when the document cannot sign.
	TransactionSignature() *bankeid.Evidence
	// Report is the driver's full report (emrtd.Report, bankeid.Report),
	// for staff tools and the session's details.
	Report() any
	// Wipe clears the face reference and other secrets in memory.
	Wipe()
}

// Request holds each driver's options; only the detected driver's are
// used.
type Request struct {
	EMRTD   emrtd.Options
	BankEID bankeid.Options
}

// Detect tells which driver the card needs by SELECTing the bank eID
// application by its AID (ISO/IEC 7816-4 §11.2.2): a card that has it is
// a bank eID card, every other card goes to the ICAO driver (which does
// its own access control). A SELECT of an absent application leaves an
// eMRTD's state alone (6A82, current DF unchanged). Only device failures
// are errors.
func Detect(ctx context.Context, t apdu.Transport) (Kind, error) {
	ch := apdu.NewChannel(t, apdu.Options{})
	err := ch.SelectApplication(ctx, bankeid.AID)
	if err == nil {
		return KindBankEID, nil
	}
	var se *apdu.StatusError
	if errors.As(err, &se) {
		return KindEMRTD, nil
	}
	if isDevice(err) {
		return "", fmt.Errorf("document: detect: %w", err)
	}
	// Garbage instead of a status word: not our application.
	return KindEMRTD, nil
}

func isDevice(err error) bool {
	return errors.Is(err, cardreader.ErrCardRemoved) || errors.Is(err, cardreader.ErrTimeout) ||
		errors.Is(err, cardreader.ErrServiceUnavailable) || errors.Is(err, cardreader.ErrClosed) ||
		errors.Is(err, cardreader.ErrNoCard) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// Read detects the card's kind and reads it with its driver. It returns
// an error only for device failures; a refused document is a Document
// that has not Passed.
func Read(ctx context.Context, t apdu.Transport, req Request) (Document, error) {
	kind, err := Detect(ctx, t)
	if err != nil {
		return nil, err
	}
	return ReadAs(ctx, kind, t, req)
}

// ReadAs reads the card with the named driver.
func ReadAs(ctx context.Context, kind Kind, t apdu.Transport, req Request) (Document, error) {
	switch kind {
	case KindBankEID:
		r, err := bankeid.Read(ctx, t, req.BankEID)
		if err != nil {
			return nil, err
		}
		return &BankEID{R: r}, nil
	case KindEMRTD:
		r, err := emrtd.Read(ctx, t, req.EMRTD)
		if err != nil {
			if r != nil {
				r.Wipe()
			}
			return nil, err
		}
		return &EMRTD{R: r}, nil
	}
	return nil, fmt.Errorf("document: unknown kind %q", kind)
}

// EMRTD is the ICAO driver's document.
type EMRTD struct{ R *emrtd.Report }

var _ Document = (*EMRTD)(nil)

// Kind implements Document.
func (*EMRTD) Kind() Kind { return KindEMRTD }

// Passed implements Document.
func (d *EMRTD) Passed() bool { return d.R.Passed }

// Failures implements Document.
func (d *EMRTD) Failures() []string { return d.R.Failures }

// Proves implements Document.
func (d *EMRTD) Proves() []Proof {
	if !d.R.Passed {
		return nil
	}
	p := []Proof{ProofIssuerSignedData}
	for _, ca := range []*emrtd.ChipAuthenticity{d.R.ChipAuthentication, d.R.ActiveAuthentication} {
		if ca != nil && ca.Ran && ca.OK {
			return append(p, ProofGenuineChip)
		}
	}
	return p
}

// Holder implements Document.
func (d *EMRTD) Holder() Holder {
	doc := d.R.Document
	name := doc.GivenNames
	if doc.Surname != "" {
		name = doc.Surname + ", " + doc.GivenNames
	}
	return Holder{ID: doc.IssuingState + ":" + doc.DocumentNumber, Name: name, Authority: doc.IssuingState}
}

// Face implements Document: the chip photo (DG2).
func (d *EMRTD) Face() *emrtd.Face { return d.R.Face }

// TransactionSignature implements Document: an eMRTD signs no
// transaction (Active Authentication's signature is over an 8-byte
// challenge with the chip's key, not the holder's act).
func (*EMRTD) TransactionSignature() *bankeid.Evidence { return nil }

// Report implements Document.
func (d *EMRTD) Report() any { return d.R }

// Wipe implements Document.
func (d *EMRTD) Wipe() { d.R.Wipe() }

// BankEID is the bank eID driver's document.
type BankEID struct{ R *bankeid.Report }

var _ Document = (*BankEID)(nil)

// Kind implements Document.
func (*BankEID) Kind() Kind { return KindBankEID }

// Passed implements Document.
func (d *BankEID) Passed() bool { return d.R.Passed }

// Failures implements Document.
func (d *BankEID) Failures() []string { return d.R.Failures }

// Proves implements Document.
func (d *BankEID) Proves() []Proof {
	if !d.R.Passed {
		return nil
	}
	return []Proof{ProofPossession, ProofPINKnowledge, ProofTransactionSigned}
}

// Holder implements Document.
func (d *BankEID) Holder() Holder {
	if d.R.Identity == nil {
		return Holder{}
	}
	return Holder{ID: d.R.Identity.Number, Name: d.R.Identity.Name, Authority: d.R.Identity.Authority}
}

// Face implements Document: a bank eID carries no face; the bank holds
// the enrolled reference.
func (*BankEID) Face() *emrtd.Face { return nil }

// TransactionSignature implements Document.
func (d *BankEID) TransactionSignature() *bankeid.Evidence {
	if !d.R.Passed {
		return nil
	}
	return d.R.Evidence
}

// Report implements Document.
func (d *BankEID) Report() any { return d.R }

// Wipe implements Document (nothing secret stays in a bank eID report).
func (*BankEID) Wipe() {}
