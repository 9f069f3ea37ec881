package lds_test

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"testing"
	"time"

	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/tlv"
	"kiosk/provisioning/issuer"
)

// issuedCardSecurity returns the EF.CardSecurity and DG14 of a PACE-CAM
// test document.
func issuedCardSecurity(t testing.TB) (cs, dg14 []byte) {
	t.Helper()
	var photo bytes.Buffer
	if err := jpeg.Encode(&photo, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	im, _, err := issuer.Issue(issuer.Options{DocNumber: "L898902C3", Surname: "ERIKSSON", Given: "ANNA MARIA",
		Nationality: "UTO", Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456",
		Photo: photo.Bytes(), Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		PACE:     &issuer.PACEParams{OID: issuer.OIDPACEECDHCAMAES128, ParameterID: issuer.ParamBrainpoolP256},
		ChipAuth: &issuer.CAParams{}})
	if err != nil {
		t.Fatal(err)
	}
	return im.CardSecurity, im.Files[0x010E]
}

// EF.CardSecurity: SignedData over id-SecurityObject holding the chip's
// SecurityInfos (the same as DG14's here: the CAM PACEInfo, the
// ChipAuthenticationInfo and its key).
func TestParseCardSecurity(t *testing.T) {
	b, dg14 := issuedCardSecurity(t)
	cs, err := lds.ParseCardSecurity(b)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Signed.ContentType.Equal(lds.OIDSecurityObject) || len(cs.Signed.Signers) != 1 || len(cs.Signed.Certificates) != 1 {
		t.Fatalf("SignedData %+v", cs.Signed)
	}
	if len(cs.Infos.CA) != 1 || len(cs.Infos.CAKeys) != 1 || len(cs.Infos.Other) != 1 {
		t.Fatalf("SecurityInfos %+v", cs.Infos)
	}
	inner, err := tlv.Unwrap(dg14, lds.TagDG14)
	if err != nil || !bytes.Equal(cs.Signed.Content, inner) {
		t.Fatalf("content is not DG14's SecurityInfos (%v)", err)
	}
	// An EF.SOD is a SignedData too, but not over SecurityInfos.
	sod, _, _ := issuedSOD(t, issuer.SigECDSAP256)
	ci, _ := tlv.Unwrap(sod, lds.TagSOD)
	if _, err := lds.ParseCardSecurity(ci); !errors.Is(err, lds.ErrMalformed) {
		t.Fatalf("EF.SOD's SignedData read as EF.CardSecurity: %v", err)
	}
	for _, bad := range [][]byte{nil, {0x30, 0x00}, b[:len(b)/2], append(append([]byte(nil), b...), 0)} {
		if _, err := lds.ParseCardSecurity(bad); err == nil {
			t.Errorf("parsed % X…", bad[:min(len(bad), 8)])
		}
	}
}

func FuzzParseCardSecurity(f *testing.F) {
	b, _ := issuedCardSecurity(f)
	f.Add(b)
	f.Add([]byte{0x30, 0x03, 0x06, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := lds.ParseCardSecurity(b)
		if err != nil {
			return
		}
		if cs.Signed == nil || cs.Infos == nil || !cs.Signed.ContentType.Equal(lds.OIDSecurityObject) || len(cs.Signed.Signers) == 0 {
			t.Fatal("inconsistent EF.CardSecurity")
		}
		if len(cs.Infos.Raw) != len(cs.Infos.CA)+len(cs.Infos.CAKeys)+len(cs.Infos.AA)+len(cs.Infos.Other) {
			t.Fatalf("%d SecurityInfos, %d sorted", len(cs.Infos.Raw), len(cs.Infos.CA)+len(cs.Infos.CAKeys)+len(cs.Infos.AA)+len(cs.Infos.Other))
		}
	})
}
