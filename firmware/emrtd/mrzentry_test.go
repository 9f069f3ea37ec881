package emrtd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// The ICAO 9303-11 Appendix D sample: L898902C3 6, 740812 2, 120415 9.
func sampleEntry() MRZEntry {
	return MRZEntry{DocumentNumber: "L898902C3", DocumentNumberCheck: "6", Birth: "740812", BirthCheck: "2", Expiry: "120415", ExpiryCheck: "9"}
}

func TestMRZEntryPassword(t *testing.T) {
	pw, err := sampleEntry().Password()
	if err != nil {
		t.Fatal(err)
	}
	if pw.Kind != MRZ || pw.MRZ.DocumentNumber != "L898902C3" || pw.MRZ.DateOfBirth != "740812" || pw.MRZ.DateOfExpiry != "120415" {
		t.Fatalf("password %#v has other fields", pw.MRZ.DocumentNumber)
	}
	// A shorter number typed with or without its '<' fillers and in
	// lower case is the same number (fillers weigh 0 in the check digit).
	e := sampleEntry()
	e.DocumentNumber, e.DocumentNumberCheck = "l898902c3", "6"
	if _, err := e.Password(); err != nil {
		t.Fatalf("lower case: %v", err)
	}
	e.DocumentNumber, e.DocumentNumberCheck = "AB12<<<<<", "8" // 10·7 + 11·3 + 1·1 + 2·7 = 118
	pw, err = e.Password()
	if err != nil || pw.MRZ.DocumentNumber != "AB12" {
		t.Fatalf("fillers: %v %q", err, pw.MRZ.DocumentNumber)
	}
}

// Each field is judged on its own and in the zone's order; the error
// names the field and the problem, never the text typed.
func TestMRZEntryFieldErrors(t *testing.T) {
	for _, tc := range []struct {
		name           string
		mod            func(*MRZEntry)
		field, problem string
	}{
		{"document check digit", func(e *MRZEntry) { e.DocumentNumberCheck = "5" }, MRZFieldDocumentNumber, "check_digit"},
		{"document typo", func(e *MRZEntry) { e.DocumentNumber = "L898902C8" }, MRZFieldDocumentNumber, "check_digit"},
		{"document empty", func(e *MRZEntry) { e.DocumentNumber = "" }, MRZFieldDocumentNumber, "format"},
		{"document symbol", func(e *MRZEntry) { e.DocumentNumber = "L8989-2C3" }, MRZFieldDocumentNumber, "format"},
		{"document too long", func(e *MRZEntry) { e.DocumentNumber = strings.Repeat("1", 23) }, MRZFieldDocumentNumber, "format"},
		{"document check missing", func(e *MRZEntry) { e.DocumentNumberCheck = "" }, MRZFieldDocumentNumber, "format"},
		{"birth check digit", func(e *MRZEntry) { e.BirthCheck = "3" }, MRZFieldBirth, "check_digit"},
		{"birth month 13", func(e *MRZEntry) { e.Birth = "741312" }, MRZFieldBirth, "format"},
		{"birth short", func(e *MRZEntry) { e.Birth = "74081" }, MRZFieldBirth, "format"},
		{"birth day 00", func(e *MRZEntry) { e.Birth = "740800" }, MRZFieldBirth, "format"},
		{"expiry check digit", func(e *MRZEntry) { e.ExpiryCheck = "0" }, MRZFieldExpiry, "check_digit"},
		{"expiry letters", func(e *MRZEntry) { e.Expiry = "12O415" }, MRZFieldExpiry, "format"},
		{"expiry check letter", func(e *MRZEntry) { e.ExpiryCheck = "X" }, MRZFieldExpiry, "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sampleEntry()
			tc.mod(&e)
			_, err := e.Password()
			var fe *MRZFieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Problem != tc.problem {
				t.Fatalf("got %v, want %s %s", err, tc.field, tc.problem)
			}
			if !errors.Is(err, ErrMRZEntry) {
				t.Fatalf("%v is not ErrMRZEntry", err)
			}
			if strings.ContainsAny(err.Error(), "0123456789") {
				t.Fatalf("error shows typed text: %v", err)
			}
		})
	}
}

// The typed MRZ never shows: JSON log handler, text handler, format verbs
// and JSON encoding print no digit of it.
func TestMRZEntryNeverLogged(t *testing.T) {
	e := sampleEntry()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("entry", "mrz", e)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("entry", "mrz", e)
	j, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", e, e, e, e) + string(j)
	for _, s := range []string{"L898902", "740812", "120415"} {
		if strings.Contains(out, s) {
			t.Fatalf("MRZ field %q shown: %s", s, out)
		}
	}
	e.Wipe()
	if e != (MRZEntry{}) {
		t.Fatal("Wipe left fields")
	}
}
