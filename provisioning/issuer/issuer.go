// Package issuer is a test document issuer: it creates a CSCA (self-signed)
// and a document signer, builds DG1 (MRZ), DG2 (face photo), EF.COM,
// EF.SOD (CMS SignedData over an LDSSecurityObject, 9303-10 §4.6.2) and
// EF.CardAccess (PACEInfo, 9303-11 §9.2.1), and returns a virtual card
// image plus the trust material. It can produce defective documents on
// purpose so the terminal's passive authentication can be tested.
//
// It is for tests and demos only: keys are generated per call and thrown
// away, and the card image stores CAN and PIN in clear.
package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/tlv"
)

// DocType selects the MRZ format of DG1.
type DocType int

// Document types.
const (
	TD3 DocType = iota // passport, 2x44 (default)
	TD1                // identity card, 3x30
)

// SignatureAlg is the document signer's (and CSCA's) signature scheme.
type SignatureAlg string

// Signature algorithms.
const (
	SigECDSAP256 SignatureAlg = "ECDSA-P256" // default
	SigRSA2048   SignatureAlg = "RSA-2048"   // PKCS #1 v1.5, SHA-256
	SigRSAPSS    SignatureAlg = "RSA-PSS"    // RSA-2048, RSASSA-PSS SHA-256, salt 32
	// SigECDSABrainpool: CSCA and DS keys on brainpoolP256r1 (the
	// CSCA's with explicit domain parameters), ecdsa-with-SHA256.
	SigECDSABrainpool SignatureAlg = "ECDSA-brainpoolP256r1"
)

// PACE object identifiers (9303-11 §9.2.1 / BSI TR-03110-3 A.1.1).
const (
	OIDPACEECDHGM3DES   = "0.4.0.127.0.7.2.2.4.2.1"
	OIDPACEECDHGMAES128 = "0.4.0.127.0.7.2.2.4.2.2"
	OIDPACEECDHGMAES192 = "0.4.0.127.0.7.2.2.4.2.3"
	OIDPACEECDHGMAES256 = "0.4.0.127.0.7.2.2.4.2.4"
	OIDPACEDHGM3DES     = "0.4.0.127.0.7.2.2.4.1.1"
	OIDPACEDHGMAES128   = "0.4.0.127.0.7.2.2.4.1.2"
	// OIDPACEECDHCAMAES128 is the Chip Authentication Mapping (9303-11
	// §4.4.3.3.3): the document then needs ChipAuth on the PACE curve,
	// and carries EF.CardSecurity.
	OIDPACEECDHCAMAES128 = "0.4.0.127.0.7.2.2.4.6.2"
)

// PACE parameter ids (9303-11 §9.5.1 standardized domain parameters).
const (
	ParamNISTP256      = 12
	ParamBrainpoolP256 = 13
)

// PACEParams names the PACEInfo written to EF.CardAccess.
type PACEParams struct {
	OID         string
	ParameterID int
}

// Options describe the document to issue.
type Options struct {
	DocType      DocType
	DocNumber    string // A-Z 0-9; TD1 may exceed 9 characters
	IssuingState string // default Nationality
	Surname      string
	Given        string
	Nationality  string // 3 letters, e.g. "UTO"
	Sex          string // M, F, X or empty
	Birth        string // YYMMDD
	Expiry       string // YYMMDD
	CAN          string // 6 digits
	PIN          string // 4..10 digits
	PINRetries   int    // default 3
	Photo        []byte // JPEG or JPEG 2000 (JP2 or J2K)
	SignatureAlg SignatureAlg
	// PACE defaults to id-PACE-ECDH-GM-AES-CBC-CMAC-128 on brainpoolP256r1
	// (parameter id 13); BACOnly writes no EF.CardAccess instead.
	PACE             *PACEParams
	BACOnly          bool
	ShortLengthOnly  bool      // card.json extended_length=false
	Now              time.Time // issuing time; zero means time.Now()
	CountryCodeCerts string    // 2-letter C= of the certificates; default from IssuingState
	// WrongCountry gives the certificates another country than DG1's
	// issuing state (a defect: 9303-12 §7.1.1 binds them).
	WrongCountry bool

	// Defects for tests.
	AlterDGAfterSigning int  // change this DG (1 or 2) after the SOD was signed
	ExpiredDS           bool // DS certificate expired before Now
	UnknownCSCA         bool // the trust material holds a different CSCA of the same name
	DSNoKeyUsage        bool // the DS certificate has no keyUsage extension
	DSIsCA              bool // the DS certificate is a CA (basicConstraints cA, keyCertSign)

	// Chip protocols: Chip Authentication (DG14) and Active Authentication
	// (DG15, plus an ActiveAuthenticationInfo in DG14 for ECDSA). Both
	// data groups are listed in EF.COM and hashed into the SOD.
	ChipAuth   *CAParams
	ActiveAuth AAAlg
	// AAHash is the Active Authentication hash: ECDSA's (default SHA-256)
	// or the ISO/IEC 9796-2 trailer's for RSA (default SHA-1, trailer BC).
	AAHash crypto.Hash
	// Cloned-chip defects: the card holds another private key than the
	// one DG14 (ClonedCA) or DG15 (ClonedAA) publishes.
	ClonedCA, ClonedAA bool
	// A PACE document's DG14 holds the SecurityInfos of EF.CardAccess
	// (9303-11 §9.3, EF.DG14). Defects: CardAccessMismatch signs a DG14
	// whose PACEInfo names another (stronger) cipher than EF.CardAccess
	// offers, as when a man in the middle rewrote EF.CardAccess;
	// PACEWithoutDG14 leaves DG14 out although the chip does PACE (with
	// PACE-CAM: EF.CardSecurity then carries the SecurityInfos; otherwise only
	// without CA and ECDSA AA, which need DG14).
	CardAccessMismatch bool
	PACEWithoutDG14    bool

	// Revocation material (9303-12 §7.1.4): by default the trust
	// material holds a fresh CRL of the CSCA revoking nothing.
	NoCRL      bool // no CRL at all
	StaleCRL   bool // the CRL's nextUpdate has passed
	RevokeDS   bool // the CRL revokes the document signer
	RevokeCSCA bool // the CRL revokes the CSCA certificate itself
	// MasterList delivers the CSCA through a master list (9303-12 §9)
	// signed by a signer of another ("home") CSCA, which is what the
	// trust material then anchors directly.
	MasterList MasterListMode
	// DG11 and DG12 (9303-10 §4.7.11, §4.7.12), written when not nil.
	DG11 *lds.DG11
	DG12 *lds.DG12
}

// MasterListMode selects how the CSCA reaches the terminal.
type MasterListMode string

// Master list modes.
const (
	MasterListNone         MasterListMode = ""              // the CSCA certificate itself
	MasterListGood         MasterListMode = "good"          // in a valid master list
	MasterListBadSignature MasterListMode = "bad-signature" // in a master list whose signature is broken
	// MasterListDSSigned: the master list is signed by a document
	// signer of the home CSCA (no master list signer rights) and adds
	// the document's CSCA, a rogue one the terminal does not trust.
	MasterListDSSigned MasterListMode = "ds-signed"
)

// Trust is the PKI material of an issued document.
type Trust struct {
	CSCA    *x509.Certificate
	CSCAKey crypto.Signer
	DS      *x509.Certificate
	DSKey   crypto.Signer
	// Anchors is what a terminal should trust: the CSCA, or for UnknownCSCA
	// a look-alike CSCA that did not sign the DS, or for master list
	// modes the home CSCA that issued the master list signer.
	Anchors []*x509.Certificate
	// CRL is the CSCA's CRL (DER), nil for NoCRL.
	CRL []byte
	// MasterList is the master list (DER CMS) holding the CSCA, or nil.
	MasterList []byte
}

// Store returns a trust store holding the anchors only.
func (t *Trust) Store() *pa.TrustStore { return pa.NewTrustStore(t.Anchors...) }

// StoreAt returns a trust store as LoadTrustStoreAt would build it from
// WriteDir's files at time at: the anchors, the master list's CSCAs when
// it verifies, the CRL when its CSCA is trusted.
func (t *Trust) StoreAt(at time.Time) *pa.TrustStore {
	s := pa.NewTrustStore(t.Anchors...)
	if t.MasterList != nil {
		_, _ = s.LoadMasterList("masterlist.ml", t.MasterList, at)
	}
	if t.CRL != nil {
		if crl, err := pa.ParseCRL(t.CRL); err == nil {
			_ = s.AddCRL(crl)
		}
	}
	return s
}

// WriteDir writes the anchors as PEM files csca-N.pem into dir, the CRL
// as csca.crl (PEM) and the master list as masterlist.ml (DER).
func (t *Trust) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write trust dir: %w", err)
	}
	if t.CRL != nil {
		b := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: t.CRL})
		if err := os.WriteFile(filepath.Join(dir, "csca.crl"), b, 0o644); err != nil {
			return fmt.Errorf("write trust dir: %w", err)
		}
	}
	if t.MasterList != nil {
		if err := os.WriteFile(filepath.Join(dir, "masterlist.ml"), t.MasterList, 0o644); err != nil {
			return fmt.Errorf("write trust dir: %w", err)
		}
	}
	for i, c := range t.Anchors {
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("csca-%d.pem", i+1)), b, 0o644); err != nil {
			return fmt.Errorf("write trust dir: %w", err)
		}
	}
	return nil
}

// ErrOptions is wrapped by option validation errors.
var ErrOptions = errors.New("invalid issuer options")

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, args...))
}

// Issue creates a document per opts.
func Issue(opts Options) (*cardimage.Image, *Trust, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.SignatureAlg == "" {
		opts.SignatureAlg = SigECDSAP256
	}
	if opts.PINRetries == 0 {
		opts.PINRetries = 3
	}
	if opts.IssuingState == "" {
		opts.IssuingState = opts.Nationality
	}
	if opts.BACOnly && opts.PACE != nil {
		return nil, nil, optErr("BACOnly and PACE are exclusive")
	}
	if !opts.BACOnly && opts.PACE == nil {
		opts.PACE = &PACEParams{OID: OIDPACEECDHGMAES128, ParameterID: ParamBrainpoolP256}
	}
	if len(opts.Photo) == 0 {
		return nil, nil, optErr("no photo")
	}
	if opts.AlterDGAfterSigning != 0 && opts.AlterDGAfterSigning != 1 && opts.AlterDGAfterSigning != 2 {
		return nil, nil, optErr("AlterDGAfterSigning must be 1 or 2")
	}

	mrz := &lds.MRZ{Format: lds.FormatTD3, DocumentCode: "P", IssuingState: opts.IssuingState,
		Surname: strings.ToUpper(opts.Surname), GivenNames: strings.ToUpper(opts.Given),
		DocumentNumber: strings.ToUpper(opts.DocNumber), Nationality: opts.Nationality,
		Birth: opts.Birth, Sex: opts.Sex, Expiry: opts.Expiry}
	switch opts.DocType {
	case TD3:
	case TD1:
		mrz.Format, mrz.DocumentCode = lds.FormatTD1, "I"
	default:
		return nil, nil, optErr("document type %d", opts.DocType)
	}
	dg1, err := lds.EncodeDG1(mrz)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", errors.Join(ErrOptions, err))
	}
	face, err := lds.NewFace(opts.Photo)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: photo: %w", errors.Join(ErrOptions, err))
	}
	dg2, err := lds.EncodeDG2([]lds.Face{face})
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	var efCardAccess []byte
	var dg14PACE [][]byte // the SecurityInfos of EF.CardAccess, for DG14
	if !opts.BACOnly {
		if efCardAccess, err = cardAccess(opts.PACE); err != nil {
			return nil, nil, fmt.Errorf("issue: %w", err)
		}
		signed := efCardAccess
		if opts.CardAccessMismatch {
			other := *opts.PACE
			other.OID = OIDPACEECDHGMAES256
			if opts.PACE.OID == other.OID {
				other.OID = OIDPACEECDHGMAES128
			}
			if signed, err = cardAccess(&other); err != nil {
				return nil, nil, fmt.Errorf("issue: %w", err)
			}
		}
		if dg14PACE, err = lds.SecurityInfoElements(signed); err != nil {
			return nil, nil, fmt.Errorf("issue: %w", err)
		}
	} else if opts.CardAccessMismatch || opts.PACEWithoutDG14 {
		return nil, nil, optErr("CardAccessMismatch and PACEWithoutDG14 need PACE")
	}
	if opts.PACEWithoutDG14 {
		if opts.CardAccessMismatch {
			return nil, nil, optErr("CardAccessMismatch needs DG14")
		}
	}
	cam := !opts.BACOnly && opts.PACE.OID == OIDPACEECDHCAMAES128
	if opts.PACEWithoutDG14 && !cam {
		dg14PACE = nil
	}
	if cam {
		// The static key CAM proves lives on the PACE domain parameters
		// (9303-11 §4.4.3.5.2).
		switch p := opts.ChipAuth; {
		case p == nil || p.DH:
			return nil, nil, optErr("PACE-CAM needs ECDH ChipAuth")
		case p.ParameterID == 0 && opts.PACE.ParameterID != ParamBrainpoolP256 || p.ParameterID != 0 && p.ParameterID != opts.PACE.ParameterID:
			return nil, nil, optErr("PACE-CAM needs the chip authentication key on the PACE parameters (%d)", opts.PACE.ParameterID)
		}
	}
	chip, err := newChipKeys(opts, dg14PACE)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	// EF.CardSecurity (9303-11 §9.2.2) holds the chip's SecurityInfos —
	// the PACEInfo and the static key CAM proves among them.
	var cardSecurityInfos []byte
	if cam {
		if cardSecurityInfos, err = tlv.Unwrap(chip.dg14, lds.TagDG14); err != nil {
			return nil, nil, fmt.Errorf("issue: EF.CardSecurity: %w", err)
		}
		if opts.PACEWithoutDG14 {
			// A PACE-CAM chip without DG14: EF.CardSecurity alone
			// carries its SecurityInfos (no ECDSA AA then: its
			// ActiveAuthenticationInfo needs DG14).
			if opts.ActiveAuth == AAECDSAP256 {
				return nil, nil, optErr("PACEWithoutDG14 with ECDSA active authentication")
			}
			chip.dg14 = nil
		}
	}
	if opts.PACEWithoutDG14 && chip.dg14 != nil {
		return nil, nil, optErr("PACEWithoutDG14 with a chip protocol that needs DG14")
	}
	tags := []tlv.Tag{lds.TagDG1, lds.TagDG2}
	var dg11, dg12 []byte
	if opts.DG11 != nil {
		dg11 = lds.EncodeDG11(opts.DG11)
		tags = append(tags, lds.TagDG11)
	}
	if opts.DG12 != nil {
		dg12 = lds.EncodeDG12(opts.DG12)
		tags = append(tags, lds.TagDG12)
	}
	if chip.dg14 != nil {
		tags = append(tags, lds.TagDG14)
	}
	if chip.dg15 != nil {
		tags = append(tags, lds.TagDG15)
	}
	com, err := lds.EncodeCOM(&lds.COM{LDSVersion: "0107", UnicodeVersion: "040000", Tags: tags})
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}

	trust, err := newPKI(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	hashes := []lds.DataGroupHash{{DataGroupNumber: 1, Hash: sha256Sum(dg1)}, {DataGroupNumber: 2, Hash: sha256Sum(dg2)}}
	if dg11 != nil {
		hashes = append(hashes, lds.DataGroupHash{DataGroupNumber: 11, Hash: sha256Sum(dg11)})
	}
	if dg12 != nil {
		hashes = append(hashes, lds.DataGroupHash{DataGroupNumber: 12, Hash: sha256Sum(dg12)})
	}
	if chip.dg14 != nil {
		hashes = append(hashes, lds.DataGroupHash{DataGroupNumber: 14, Hash: sha256Sum(chip.dg14)})
	}
	if chip.dg15 != nil {
		hashes = append(hashes, lds.DataGroupHash{DataGroupNumber: 15, Hash: sha256Sum(chip.dg15)})
	}
	lso, err := lds.EncodeLDSSecurityObject(&lds.LDSSecurityObject{
		HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: lds.OIDSHA256}, Hashes: hashes})
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	// Signed while the DS was valid: for ExpiredDS that is in the past.
	signingTime := opts.Now
	if opts.ExpiredDS {
		signingTime = trust.DS.NotBefore.Add(24 * time.Hour)
	}
	sod, err := buildSOD(lso, trust.DS, trust.DSKey, opts.SignatureAlg, signingTime)
	if err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}

	var profile []string
	switch opts.AlterDGAfterSigning {
	case 1:
		// Another surname: still a well-formed MRZ with valid check digits,
		// so only passive authentication can notice.
		m := *mrz
		m.Surname = alterName(m.Surname)
		if dg1, err = lds.EncodeDG1(&m); err != nil {
			return nil, nil, fmt.Errorf("issue: alter DG1: %w", err)
		}
		profile = append(profile, "dg1_altered")
	case 2:
		// One bit of the image data, far from the JPEG/JP2 headers.
		dg2 = append([]byte(nil), dg2...)
		dg2[len(dg2)-len(face.Image)/2] ^= 0x01
		profile = append(profile, "dg2_altered")
	}
	for _, d := range []struct {
		on   bool
		name string
	}{
		{opts.ExpiredDS, "ds_expired"},
		{opts.UnknownCSCA, "unknown_csca"},
		{opts.ClonedCA, "clone_ca"},
		{opts.ClonedAA, "clone_aa"},
		{opts.CardAccessMismatch, "card_access_mismatch"},
		{opts.PACEWithoutDG14, "pace_without_dg14"},
		{opts.RevokeDS, "ds_revoked"},
		{opts.RevokeCSCA, "csca_revoked"},
		{opts.StaleCRL, "crl_stale"},
		{opts.MasterList == MasterListBadSignature, "master_list_bad_signature"},
		{opts.MasterList == MasterListDSSigned, "master_list_signer_not_authorized"},
		{opts.WrongCountry, "wrong_country"},
	} {
		if d.on {
			profile = append(profile, d.name)
		}
	}
	if len(profile) == 0 {
		profile = []string{"good"}
	}

	im := &cardimage.Image{
		Meta: cardimage.Meta{Version: 1, Profile: strings.Join(profile, ","), CAN: opts.CAN, PIN: opts.PIN,
			PINRetries: opts.PINRetries, MRZ: cardimage.MRZKey{DocumentNumber: mrz.DocumentNumber, Birth: opts.Birth, Expiry: opts.Expiry},
			BAC: opts.BACOnly, ExtendedLength: !opts.ShortLengthOnly},
		Files: map[uint16][]byte{lds.FIDCOM: com, 0x0101: dg1, 0x0102: dg2, lds.FIDSOD: sod},
	}
	if dg11 != nil {
		im.Files[0x010B] = dg11
	}
	if dg12 != nil {
		im.Files[0x010C] = dg12
	}
	if chip.dg14 != nil {
		im.Files[0x010E] = chip.dg14
	}
	if chip.dg15 != nil {
		im.Files[0x010F] = chip.dg15
	}
	im.CAKey, im.AAKey, im.Meta.AAHash = chip.caPEM, chip.aaPEM, chip.aaHash
	if cam {
		// Signed by the document signer as id-SecurityObject.
		if im.CardSecurity, err = buildSignedData(lds.OIDSecurityObject, cardSecurityInfos, trust.DS, trust.DSKey, opts.SignatureAlg, signingTime); err != nil {
			return nil, nil, fmt.Errorf("issue: EF.CardSecurity: %w", err)
		}
	}
	if !opts.BACOnly {
		im.Files[lds.FIDCardAccess] = efCardAccess
		im.Meta.PACE = &cardimage.PACE{OID: opts.PACE.OID, ParameterID: opts.PACE.ParameterID}
	}
	if err := im.Validate(); err != nil {
		return nil, nil, fmt.Errorf("issue: %w", errors.Join(ErrOptions, err))
	}
	return im, trust, nil
}

func sha256Sum(b []byte) []byte {
	h := crypto.SHA256.New()
	h.Write(b)
	return h.Sum(nil)
}

func alterName(s string) string {
	if s == "" {
		return "X"
	}
	c := s[0] + 1
	if c > 'Z' {
		c = 'A'
	}
	return string(c) + s[1:]
}

// cardAccess encodes EF.CardAccess with one PACEInfo (version 2).
func cardAccess(p *PACEParams) ([]byte, error) {
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(p.OID, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, optErr("PACE OID %q", p.OID)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, optErr("PACE OID %q", p.OID)
	}
	return lds.EncodeSecurityInfos([]lds.PACEInfo{{Protocol: oid, Version: 2, ParameterID: p.ParameterID, HasParameterID: true}})
}

func newKey(alg SignatureAlg) (crypto.Signer, x509.SignatureAlgorithm, error) {
	switch alg {
	case SigECDSABrainpool:
		k, err := newBrainpoolKey()
		return k, x509.ECDSAWithSHA256, err
	case SigECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return k, x509.ECDSAWithSHA256, err
	case SigRSA2048, SigRSAPSS:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if alg == SigRSAPSS {
			return k, x509.SHA256WithRSAPSS, err
		}
		return k, x509.SHA256WithRSA, err
	}
	return nil, 0, optErr("signature algorithm %q", alg)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
}

func newCSCA(opts Options, country string) (*x509.Certificate, crypto.Signer, error) {
	return newCSCANamed(opts, country, "Test CSCA "+country)
}

func newCSCANamed(opts Options, country, cn string) (*x509.Certificate, crypto.Signer, error) {
	// 9303-12 §7.1.1: CSCA: basicConstraints cA, keyUsage keyCertSign+cRLSign.
	return newCert("CSCA", opts.SignatureAlg, &x509.Certificate{
		Subject:               pkix.Name{Country: []string{country}, Organization: []string{"Kiosk Test Issuer"}, CommonName: cn},
		NotBefore:             opts.Now.Add(-5 * 365 * 24 * time.Hour),
		NotAfter:              opts.Now.Add(15 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, nil)
}

// newCert generates a key for alg and certifies it with tmpl, given a
// fresh serial number and alg's signature algorithm. parent and its key
// sign it; a nil parent makes it self-signed.
func newCert(what string, alg SignatureAlg, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, sigAlg, err := newKey(alg)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber, tmpl.SignatureAlgorithm = sn, sigAlg
	if alg == SigECDSABrainpool {
		signer := parentKey
		if parent == nil {
			signer = key
		}
		c, err := createBrainpoolCert(tmpl, key.Public().(*ecdsa.PublicKey), tmpl.IsCA, parent, signer)
		if err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", what, err)
		}
		return c, key, nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", what, err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newPKI(opts Options) (*Trust, error) {
	country := opts.CountryCodeCerts
	if country == "" {
		// The certificate country of the issuing state (9303-3 §5
		// codes, pa.CertificateCountry); a state the table does not know
		// gets its first two letters.
		var ok bool
		if country, ok = pa.CertificateCountry(opts.IssuingState); !ok {
			country = strings.TrimRight(opts.IssuingState, "<")
			if len(country) > 2 {
				country = country[:2]
			}
		}
	}
	if opts.WrongCountry {
		country = "FR"
		if c, _ := pa.CertificateCountry(opts.IssuingState); c == "FR" {
			country = "DE"
		}
	}
	if len(country) != 2 {
		return nil, optErr("certificate country code %q", country)
	}
	csca, cscaKey, err := newCSCA(opts, country)
	if err != nil {
		return nil, err
	}
	// 9303-12 §7.1.1: DS keyUsage digitalSignature. Validity: the signing
	// period plus the documents' lifetime.
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{Country: []string{country}, Organization: []string{"Kiosk Test Issuer"}, CommonName: "Test Document Signer"},
		NotBefore: opts.Now.Add(-time.Hour),
		NotAfter:  opts.Now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	if opts.DSNoKeyUsage {
		tmpl.KeyUsage = 0
	}
	if opts.DSIsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	}
	if opts.ExpiredDS {
		tmpl.NotBefore = opts.Now.Add(-3 * 365 * 24 * time.Hour)
		tmpl.NotAfter = opts.Now.Add(-365 * 24 * time.Hour)
	}
	ds, dsKey, err := newCert("DS", opts.SignatureAlg, tmpl, csca, cscaKey)
	if err != nil {
		return nil, err
	}
	t := &Trust{CSCA: csca, CSCAKey: cscaKey, DS: ds, DSKey: dsKey, Anchors: []*x509.Certificate{csca}}
	if opts.UnknownCSCA {
		other, _, err := newCSCA(opts, country)
		if err != nil {
			return nil, err
		}
		t.Anchors = []*x509.Certificate{other}
	}
	if !opts.NoCRL {
		co := CRLOptions{ThisUpdate: opts.Now.Add(-24 * time.Hour), NextUpdate: opts.Now.Add(90 * 24 * time.Hour)}
		if opts.StaleCRL {
			co = CRLOptions{ThisUpdate: opts.Now.Add(-120 * 24 * time.Hour), NextUpdate: opts.Now.Add(-30 * 24 * time.Hour)}
		}
		if opts.RevokeDS {
			co.Revoked = append(co.Revoked, ds.SerialNumber)
		}
		if opts.RevokeCSCA {
			co.Revoked = append(co.Revoked, csca.SerialNumber)
		}
		if t.CRL, err = NewCRL(csca, cscaKey, co); err != nil {
			return nil, err
		}
	}
	switch opts.MasterList {
	case MasterListNone:
	case MasterListGood, MasterListBadSignature, MasterListDSSigned:
		home, homeKey, err := newCSCANamed(opts, country, "Test Home CSCA "+country)
		if err != nil {
			return nil, err
		}
		signer, signerKey, err := NewMasterListSigner(home, homeKey, opts.SignatureAlg, opts.Now)
		if opts.MasterList == MasterListDSSigned {
			// A document signer of the trusted home CSCA: a valid chain,
			// but no right to sign master lists.
			signer, signerKey, err = newCert("home DS", opts.SignatureAlg, &x509.Certificate{
				Subject:   pkix.Name{Country: []string{country}, Organization: []string{"Kiosk Test Issuer"}, CommonName: "Test Home Document Signer"},
				NotBefore: opts.Now.Add(-time.Hour),
				NotAfter:  opts.Now.Add(10 * 365 * 24 * time.Hour),
				KeyUsage:  x509.KeyUsageDigitalSignature,
			}, home, homeKey)
		}
		if err != nil {
			return nil, err
		}
		if t.MasterList, err = NewMasterList(signer, signerKey, opts.SignatureAlg, []*x509.Certificate{csca}, opts.Now,
			opts.MasterList == MasterListBadSignature); err != nil {
			return nil, err
		}
		t.Anchors = []*x509.Certificate{home}
	default:
		return nil, optErr("master list mode %q", opts.MasterList)
	}
	return t, nil
}
