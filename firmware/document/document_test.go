package document_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/bankissuer"
	"kiosk/provisioning/issuer"
)

type inProcess struct{ h cardreader.CardHandler }

func (t inProcess) Transmit(_ context.Context, capdu []byte) ([]byte, error) {
	return t.h.Process(capdu), nil
}

// The driver comes from the card: a bank eID card and an ICAO chip, read
// through the same call with the same request, each by its own driver.
func TestDriverFromCard(t *testing.T) {
	a, err := bankissuer.NewAuthority("Test eID Authority", false)
	if err != nil {
		t.Fatal(err)
	}
	im, err := a.Issue(bankissuer.Holder{Name: "LI SI", EIDNumber: "EID-4401-0002", PIN: "1357"}, bankcard.ProfileGood)
	if err != nil {
		t.Fatal(err)
	}
	bank, err := bankcard.New(im, bankcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	btrust, err := a.Trust()
	if err != nil {
		t.Fatal(err)
	}

	photo, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	cimg, ctrust, err := issuer.Issue(issuer.Options{DocNumber: "L898902C3", Surname: "ERIKSSON", Given: "ANNA", Nationality: "UTO",
		Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456", Photo: photo,
		ChipAuth: &issuer.CAParams{ExplicitParams: true}, ActiveAuth: issuer.AAECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	chip, err := vcard.New(cimg, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}

	req := document.Request{
		EMRTD:   emrtd.Options{Password: emrtd.Password{Kind: emrtd.CAN, Secret: "123456"}, Trust: ctrust.Store(), ATR: chip.ATR()},
		BankEID: bankeid.Options{PIN: "1357", Trust: btrust, Transaction: bankeid.Challenge{KioskID: "k1", TransactionID: "t1"}},
	}
	for _, c := range []struct {
		card   cardreader.CardHandler
		kind   document.Kind
		face   bool
		signed bool
		holder string
		proves []document.Proof
	}{
		{bank, document.KindBankEID, false, true, "EID-4401-0002", []document.Proof{document.ProofPossession, document.ProofPINKnowledge, document.ProofTransactionSigned}},
		{chip, document.KindEMRTD, true, false, "UTO:L898902C3", []document.Proof{document.ProofIssuerSignedData, document.ProofGenuineChip}},
	} {
		d, err := document.Read(context.Background(), inProcess{c.card}, req)
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		if d.Kind() != c.kind || !d.Passed() {
			t.Fatalf("%s: kind %s, passed %v %v", c.kind, d.Kind(), d.Passed(), d.Failures())
		}
		if (d.Face() != nil) != c.face || (d.TransactionSignature() != nil) != c.signed {
			t.Errorf("%s: face %v, signature %v", c.kind, d.Face() != nil, d.TransactionSignature() != nil)
		}
		if d.Holder().ID != c.holder || !slices.Equal(d.Proves(), c.proves) {
			t.Errorf("%s: holder %+v proves %v", c.kind, d.Holder(), d.Proves())
		}
		d.Wipe()
		if f := d.Face(); f != nil && f.Image != nil {
			t.Errorf("%s: face image kept after Wipe", c.kind)
		}
	}
}
