package lds

import (
	"encoding/asn1"
	"errors"
)

// OIDSecurityObject is id-SecurityObject (BSI TR-03110-3 §A.1.2.5:
// bsi-de applications(3) eID(2) 1), the eContentType of EF.CardSecurity.
var OIDSecurityObject = asn1.ObjectIdentifier{0, 4, 0, 127, 0, 7, 3, 2, 1}

// CardSecurity is EF.CardSecurity (FID 011D in the master file, 9303-10
// §3.11.3; 9303-11 §9.2.2): a CMS SignedData (RFC 5652), signed by a
// document signer, over the chip's SecurityInfos — for PACE-CAM the
// PACEInfo and the ChipAuthenticationPublicKeyInfo whose key the chip
// proves in the mapping (9303-11 §4.4.3.5.2).
type CardSecurity struct {
	// Signed is the SignedData; Signed.Content is the DER SecurityInfos.
	Signed *SOD
	// Infos are the SecurityInfos parsed (the DG14 type serves both files:
	// the same SET OF SecurityInfo).
	Infos *DG14
}

// ErrNotCardSecurity: the SignedData's content is not SecurityInfos.
var ErrNotCardSecurity = errors.New("lds: not an EF.CardSecurity")

// ParseCardSecurity parses EF.CardSecurity as read: a ContentInfo holding
// SignedData with eContentType id-SecurityObject (BER converted to DER,
// as for EF.SOD). Every SecurityInfo must be well-formed.
func ParseCardSecurity(b []byte) (*CardSecurity, error) {
	sd, err := ParseSignedData(b)
	if err != nil {
		return nil, err
	}
	if !sd.ContentType.Equal(OIDSecurityObject) {
		return nil, malformed("EF.CardSecurity eContentType %v is not id-SecurityObject: %v", sd.ContentType, ErrNotCardSecurity)
	}
	infos, err := parseSecurityInfos(sd.Content, "EF.CardSecurity")
	if err != nil {
		return nil, err
	}
	return &CardSecurity{Signed: sd, Infos: infos}, nil
}
