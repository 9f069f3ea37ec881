package emrtd

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/lds"
)

// MRZ entry fields, as named to the screen in MRZFieldError.Field.
const (
	MRZFieldDocumentNumber = "document_number"
	MRZFieldBirth          = "birth"
	MRZFieldExpiry         = "expiry"
)

// MRZFieldError says which typed MRZ field is wrong and how: Problem is
// "format" (characters or length) or "check_digit" (the check digit typed
// does not match the field, 9303-3 §4.9). It never carries what was typed.
type MRZFieldError struct {
	Field   string
	Problem string
}

func (e *MRZFieldError) Error() string {
	if e.Problem == "check_digit" {
		return fmt.Sprintf("mrz entry: %s: the check digit does not match", e.Field)
	}
	return fmt.Sprintf("mrz entry: %s: malformed", e.Field)
}

// ErrMRZEntry is wrapped by every MRZFieldError (errors.Is).
var ErrMRZEntry = errors.New("mrz entry invalid")

// Unwrap lets errors.Is(err, ErrMRZEntry) hold.
func (e *MRZFieldError) Unwrap() error { return ErrMRZEntry }

// MRZEntry is the MRZ as the holder types it from the printed zone: the
// document number, date of birth and date of expiry, each with the check
// digit printed after it (9303-3 §4.9; TD3 layout 9303-4 §4.2.2, TD1
// 9303-5 §4.2.2). These fields are the BAC and PACE-MRZ password (9303-11
// §4.3.2, §4.4.1): String, LogValue and GoString hide them, JSON leaves
// them out.
type MRZEntry struct {
	DocumentNumber      string `json:"-"` // 1–22 MRZ characters, '<' fillers allowed
	DocumentNumberCheck string `json:"-"` // one digit
	Birth               string `json:"-"` // YYMMDD
	BirthCheck          string `json:"-"`
	Expiry              string `json:"-"` // YYMMDD
	ExpiryCheck         string `json:"-"`
}

// String hides the fields.
func (e MRZEntry) String() string { return "MRZ:***" }

// LogValue implements slog.LogValuer.
func (e MRZEntry) LogValue() slog.Value { return slog.StringValue(e.String()) }

// GoString keeps %#v from printing the fields.
func (e MRZEntry) GoString() string { return e.String() }

// Password validates every field and its check digit, in the order the
// zone prints them, and returns the MRZ password. The first wrong field
// is returned as a *MRZFieldError.
func (e MRZEntry) Password() (Password, error) {
	doc := strings.TrimRight(strings.ToUpper(e.DocumentNumber), "<")
	if err := checkMRZField(MRZFieldDocumentNumber, doc, e.DocumentNumberCheck, validDocNumber); err != nil {
		return Password{}, err
	}
	if err := checkMRZField(MRZFieldBirth, e.Birth, e.BirthCheck, validDate); err != nil {
		return Password{}, err
	}
	if err := checkMRZField(MRZFieldExpiry, e.Expiry, e.ExpiryCheck, validDate); err != nil {
		return Password{}, err
	}
	return Password{Kind: MRZ, MRZ: bac.Key{DocumentNumber: doc, DateOfBirth: e.Birth, DateOfExpiry: e.Expiry}}, nil
}

// Wipe drops the typed fields (strings cannot be zeroed in Go; this at
// least ends this copy's references to them).
func (e *MRZEntry) Wipe() { *e = MRZEntry{} }

func checkMRZField(name, v, check string, valid func(string) bool) error {
	if !valid(v) {
		return &MRZFieldError{Field: name, Problem: "format"}
	}
	if len(check) != 1 || check[0] < '0' || check[0] > '9' {
		return &MRZFieldError{Field: name, Problem: "format"}
	}
	cd, err := lds.CheckDigit(v)
	if err != nil {
		return &MRZFieldError{Field: name, Problem: "format"}
	}
	if cd != check[0] {
		return &MRZFieldError{Field: name, Problem: "check_digit"}
	}
	return nil
}

// validDocNumber: 1–22 characters A–Z, 0–9, '<' inside (a TD1 number
// longer than 9 continues in the optional data, 9303-5 §4.2.2 note j).
func validDocNumber(s string) bool {
	if s == "" || len(s) > 22 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c == '<') {
			return false
		}
	}
	return true
}

// validDate: YYMMDD with a real month and a day 01–31 (9303-3 §4.5 prints
// dates this way; the day is not checked against the month, as the chip
// itself is the judge of the rest).
func validDate(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < 6; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	mm := int(s[2]-'0')*10 + int(s[3]-'0')
	dd := int(s[4]-'0')*10 + int(s[5]-'0')
	return mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31
}
