package emrtd

import (
	"context"
	"slices"
	"strings"
	"testing"

	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/provisioning/issuer"
)

// paceCAM is a modern document whose chip does PACE-CAM (AES-128 on
// brainpoolP256r1, the chip authentication key on the same curve).
func paceCAM(o *issuer.Options) {
	modern(o)
	o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHCAMAES128, ParameterID: issuer.ParamBrainpoolP256}
}

func readImage(t *testing.T, img *cardimage.Image, opts Options) *Report {
	t.Helper()
	card, err := vcard.New(img, vcard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Password, opts.ATR = Password{Kind: CAN, Secret: "123456"}, card.ATR()
	r, err := Read(context.Background(), &handlerTransport{h: card}, opts)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return r
}

func passedCheck(r *Report, name string) bool {
	return slices.ContainsFunc(r.Checks, func(c Check) bool { return c.Name == name && c.OK })
}

// A PACE-CAM chip proves itself in the mapping: EF.CardSecurity passes
// passive authentication, CA_IC proves its key, and that counts as chip
// authentication for every policy; Chip Authentication does not run again.
func TestPACECAMGenuine(t *testing.T) {
	img, trust := issue(t, paceCAM)
	if img.CardSecurity == nil {
		t.Fatal("the issuer wrote no EF.CardSecurity")
	}
	for _, policy := range []Policy{PolicyAny, PolicyCA} {
		r := readImage(t, img, Options{Trust: trust, RequireChipAuthenticity: policy})
		if !r.Passed {
			t.Fatalf("%s: refused: %v %+v", policy, r.Failures, r.Checks)
		}
		if r.Access.Mapping != "CAM" || !passedCheck(r, checkCardSecurity) || !passedCheck(r, checkCA) {
			t.Fatalf("%s: access %+v, checks %+v", policy, r.Access, r.Checks)
		}
		ca := r.ChipAuthentication
		if !ca.OK || !ca.Ran || ca.Protocol != "id-PACE-ECDH-CAM-AES-CBC-CMAC-128" || ca.Key != "BrainpoolP256r1" {
			t.Fatalf("%s: chip authentication %+v", policy, ca)
		}
		if !r.ActiveAuthentication.OK {
			t.Fatalf("%s: active authentication did not run after CAM: %+v", policy, r.ActiveAuthentication)
		}
		if r.Document.DocumentNumber != "C01X00T47" {
			t.Fatalf("%s: DG1 not read: %+v", policy, r.Document)
		}
	}
}

// Every way a PACE-CAM chip can fail ends in its own reason, before any
// personal data is read.
func TestPACECAMRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*issuer.Options)
		img  func(*cardimage.Image)
		code string
	}{
		// DO'8A' altered on the way (vcard profile pace-cam-tampered).
		{"tampered mapping data", paceCAM, func(im *cardimage.Image) { im.Meta.Profile = vcard.ProfilePACECAMTampered }, CodeCAMFailed},
		// A chip without the issuer's key: its CA_IC proves another key.
		{"cloned chip", func(o *issuer.Options) { paceCAM(o); o.ClonedCA = true }, nil, CodeCAMFailed},
		// EF.CardSecurity's signature broken.
		{"card security altered", paceCAM, func(im *cardimage.Image) {
			im.CardSecurity = append([]byte(nil), im.CardSecurity...)
			im.CardSecurity[len(im.CardSecurity)-1] ^= 0x01
		}, CodeCardSecurityInvalid},
		{"no card security", paceCAM, func(im *cardimage.Image) { im.CardSecurity = nil }, CodeCardSecurityUnreadable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, trust := issue(t, tc.mod)
			if tc.img != nil {
				tc.img(img)
			}
			r := readImage(t, img, Options{Trust: trust})
			if r.Passed || !slices.Contains(r.Failures, tc.code) {
				t.Fatalf("passed %v, failures %v, want %s; checks %+v", r.Passed, r.Failures, tc.code, r.Checks)
			}
			if r.Document.DocumentNumber != "" || r.Face != nil {
				t.Fatalf("personal data read from a refused chip: %+v", r.Document)
			}
		})
	}
}

// A PACE-CAM chip without DG14: the chip proves itself by CAM alone, and
// the signed EF.CardSecurity vouches for EF.CardAccess in DG14's place.
func TestPACECAMWithoutDG14(t *testing.T) {
	img, trust := issue(t, func(o *issuer.Options) {
		paceCAM(o)
		o.PACEWithoutDG14, o.ActiveAuth = true, ""
	})
	if _, ok := img.Files[0x010E]; ok || img.CardSecurity == nil {
		t.Fatal("the issuer wrote DG14, or no EF.CardSecurity")
	}
	r := readImage(t, img, Options{Trust: trust})
	if !r.Passed || !r.ChipAuthentication.OK {
		t.Fatalf("refused: %v %+v", r.Failures, r.Checks)
	}
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.Name == checkCardAccessAuth })
	if i < 0 || !r.Checks[i].OK || !strings.Contains(r.Checks[i].Reason, "EF.CardSecurity") {
		t.Fatalf("EF.CardAccess not checked against EF.CardSecurity: %+v", r.Checks)
	}
}
