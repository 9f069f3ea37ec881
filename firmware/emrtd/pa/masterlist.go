package pa

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/tlv"
)

// OIDCSCAMasterList is id-icao-cscaMasterList (9303-12 §9:
// 2.23.136.1.1.2), the eContentType of a master list's SignedData.
var OIDCSCAMasterList = asn1.ObjectIdentifier{2, 23, 136, 1, 1, 2}

// OIDMasterListSigning is id-icao-cscaMasterListSigningKey
// (2.23.136.1.1.3), the extended key usage 9303-12 §7.1.1 requires of a
// master list signer certificate.
var OIDMasterListSigning = asn1.ObjectIdentifier{2, 23, 136, 1, 1, 3}

// Reason codes of master list rejection.
const (
	CodeMasterListMalformed = "master_list_malformed"
	CodeMasterListSignature = "master_list_signature_invalid"
	CodeMasterListSigner    = "master_list_signer_untrusted"
	// The signer chains to a trusted CSCA but its certificate is not a
	// master list signer's (9303-12 §7.1.1: keyUsage digitalSignature
	// and extKeyUsage id-icao-cscaMasterListSigningKey, not a CA).
	CodeMasterListSignerUnauthorized = "master_list_signer_unauthorized"
)

// MaxMasterListCerts bounds the certificates taken from one master list
// (the ICAO PKD list holds a few hundred).
const MaxMasterListCerts = 4096

// ErrMasterList is wrapped by every master list rejection.
var ErrMasterList = errors.New("master list rejected")

// MasterListError says why a master list was rejected; Code is one of the
// CodeMasterList* constants.
type MasterListError struct {
	Code   string
	Reason string
}

func (e *MasterListError) Error() string { return "master list rejected: " + e.Code + ": " + e.Reason }

// Is makes errors.Is(err, ErrMasterList) true.
func (e *MasterListError) Is(target error) bool { return target == ErrMasterList }

// MasterList is a parsed and verified CSCA master list.
type MasterList struct {
	Version int
	CSCAs   []*x509.Certificate
	Signer  *x509.Certificate // the master list signer
	Issuer  *x509.Certificate // the trusted CSCA that issued Signer
	// Skipped are the entries that could not be read, with why.
	Skipped []SkippedEntry
}

// SkippedEntry is a certList entry ParseMasterList could not read.
type SkippedEntry struct {
	Index  int // 0-based position in certList
	Reason string
}

// ParseMasterList parses a master list without verifying it: the CMS
// ContentInfo (DER, or PEM "CMS"/"PKCS7") whose SignedData carries
//
//	CscaMasterList ::= SEQUENCE {
//	  version  CscaMasterListVersion, -- v0
//	  certList SET OF Certificate }
//
// (9303-12 §9), BER or DER. Entries are read with package cert
// (brainpool and explicit-parameter EC keys, RSA-PSS keys); one that
// cannot be read is skipped, counted in skipped and listed in
// ml.Skipped.
func ParseMasterList(b []byte) (sd *lds.SOD, ml *MasterList, skipped int, err error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	mlErr := func(format string, args ...any) error {
		return &MasterListError{Code: CodeMasterListMalformed, Reason: fmt.Sprintf(format, args...)}
	}
	sd, err = lds.ParseSignedData(b)
	if err != nil {
		return nil, nil, 0, mlErr("%v", err)
	}
	if !sd.ContentType.Equal(OIDCSCAMasterList) {
		return nil, nil, 0, mlErr("eContentType %v is not id-icao-cscaMasterList", sd.ContentType)
	}
	body, err := tlv.Unwrap(sd.Content, 0x30)
	if err != nil {
		return nil, nil, 0, mlErr("CscaMasterList: %v", err)
	}
	objs, err := tlv.ParseAll(body)
	if err != nil || len(objs) != 2 || objs[0].Tag != 0x02 || objs[1].Tag != 0x31 {
		return nil, nil, 0, mlErr("CscaMasterList is not SEQUENCE { INTEGER, SET OF Certificate }")
	}
	ml = &MasterList{}
	if len(objs[0].Value) != 1 {
		return nil, nil, 0, mlErr("version of %d bytes", len(objs[0].Value))
	}
	ml.Version = int(objs[0].Value[0])
	if ml.Version != 0 {
		return nil, nil, 0, mlErr("version %d, want 0", ml.Version)
	}
	rest := objs[1].Value
	for len(rest) > 0 {
		_, next, err := tlv.Read(rest)
		if err != nil {
			return nil, nil, 0, mlErr("certList: %v", err)
		}
		raw := rest[:len(rest)-len(next)]
		rest = next
		if len(ml.CSCAs)+skipped >= MaxMasterListCerts {
			return nil, nil, 0, mlErr("more than %d certificates", MaxMasterListCerts)
		}
		c, err := cert.Parse(raw)
		if err != nil {
			ml.Skipped = append(ml.Skipped, SkippedEntry{Index: len(ml.CSCAs) + skipped, Reason: err.Error()})
			skipped++
			continue
		}
		ml.CSCAs = append(ml.CSCAs, c)
	}
	return sd, ml, skipped, nil
}

// VerifyMasterList parses b and checks it at time at (9303-12 §9): one
// signer, the content-type and message-digest signed attributes, the
// CMS signature by the master list signer certificate carried in the
// SignedData, the signer's validity and profile (keyUsage
// digitalSignature, extKeyUsage id-icao-cscaMasterListSigningKey, not a
// CA: 9303-12 §7.1.1), and the signer's certificate signed by a CSCA in
// store that is itself a valid CA. Only a list passing every check is
// returned; the error is a *MasterListError otherwise.
func VerifyMasterList(b []byte, store *TrustStore, at time.Time) (*MasterList, error) {
	var roots []*x509.Certificate
	if store != nil {
		roots = store.certs
	}
	return VerifyMasterListWith(b, roots, at)
}

// VerifyMasterListWith is VerifyMasterList against the given roots
// (e.g. the one CSCA certificate a staff member imports the list with).
func VerifyMasterListWith(b []byte, roots []*x509.Certificate, at time.Time) (*MasterList, error) {
	sd, ml, _, err := ParseMasterList(b)
	if err != nil {
		return nil, err
	}
	if len(sd.Signers) != 1 {
		return nil, &MasterListError{Code: CodeMasterListMalformed, Reason: fmt.Sprintf("%d signerInfos, want 1", len(sd.Signers))}
	}
	si := &sd.Signers[0]
	if len(si.SignedAttrs) == 0 {
		return nil, &MasterListError{Code: CodeMasterListMalformed, Reason: "signerInfo without signed attributes"}
	}
	// The SOD checks, reused: they do not look at the content's meaning.
	r := &Result{At: at}
	h, ok := lds.HashForOID(si.DigestAlgorithm.Algorithm)
	checkSignedAttrs(r, sd, si, h, ok)
	signer, err := findDS(sd, si)
	if err != nil {
		return nil, &MasterListError{Code: CodeMasterListSigner, Reason: "signer certificate: " + err.Error()}
	}
	checkSignature(r, sd, si, signer)
	checkValidity(r, CheckDSValidity, "master list signer", signer, at, CodeDSExpired, CodeDSNotYetValid)
	if f := r.Failures(); len(f) > 0 {
		code := CodeMasterListSignature
		if f[0].Name == CheckDSValidity {
			code = CodeMasterListSigner
		}
		return nil, &MasterListError{Code: code, Reason: f[0].Name + ": " + f[0].Reason}
	}
	if len(roots) == 0 {
		return nil, &MasterListError{Code: CodeMasterListSigner, Reason: "no trusted CSCA to verify the signer"}
	}
	var why []string
	for _, ca := range roots {
		if !cert.SameName(ca.RawSubject, signer.RawIssuer) {
			continue
		}
		if err := cert.CheckSignedBy(signer, ca); err != nil {
			why = append(why, fmt.Sprintf("%q: signature: %v", ca.Subject.String(), err))
			continue
		}
		if at.Before(ca.NotBefore) || at.After(ca.NotAfter) {
			why = append(why, fmt.Sprintf("%q: not valid at %s", ca.Subject.String(), at.UTC().Format(time.RFC3339)))
			continue
		}
		if msg := caProfileError(ca); msg != "" {
			why = append(why, fmt.Sprintf("%q: %s", ca.Subject.String(), msg))
			continue
		}
		// Chained: now the signer's rights (defect: any certificate a
		// trusted CSCA issued, e.g. a document signer, could otherwise
		// add CSCAs).
		if msg := mlSignerProfileError(signer); msg != "" {
			return nil, &MasterListError{Code: CodeMasterListSignerUnauthorized,
				Reason: fmt.Sprintf("signer %q is not a master list signer: %s", signer.Subject.String(), msg)}
		}
		ml.Signer, ml.Issuer = signer, ca
		return ml, nil
	}
	reason := fmt.Sprintf("signer %q is not issued by a trusted CSCA", signer.Subject.String())
	if len(why) > 0 {
		reason += " (" + strings.Join(why, "; ") + ")"
	}
	return nil, &MasterListError{Code: CodeMasterListSigner, Reason: reason}
}

// mlSignerProfileError says why c may not sign master lists, or "".
func mlSignerProfileError(c *x509.Certificate) string {
	switch {
	case c.BasicConstraintsValid && c.IsCA:
		return "it is a CA certificate"
	case !cert.HasExtension(c, cert.OIDKeyUsage) || c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return "keyUsage lacks digitalSignature"
	}
	listed, present := cert.HasExtKeyUsage(c, OIDMasterListSigning)
	switch {
	case !present:
		return "no extKeyUsage extension (id-icao-cscaMasterListSigningKey 2.23.136.1.1.3 required)"
	case !listed:
		return "extKeyUsage lacks id-icao-cscaMasterListSigningKey (2.23.136.1.1.3)"
	}
	return ""
}

// LoadMasterList verifies a master list against the CSCAs already in the
// store (at time at) and trusts its CSCA certificates. A rejected list
// adds nothing and is recorded (RejectedMasterLists) so verification can
// name it; the error is a *MasterListError. It returns how many new CSCAs
// were added.
func (s *TrustStore) LoadMasterList(name string, b []byte, at time.Time) (int, error) {
	ml, err := VerifyMasterList(b, s, at)
	if err != nil {
		var me *MasterListError
		if !errors.As(err, &me) {
			me = &MasterListError{Code: CodeMasterListMalformed, Reason: err.Error()}
		}
		s.rejectedML = append(s.rejectedML, RejectedMasterList{Name: name, Code: me.Code, Reason: me.Reason})
		return 0, err
	}
	n := len(s.certs)
	for _, c := range ml.CSCAs {
		s.Add(c)
	}
	return len(s.certs) - n, nil
}

// RejectedMasterList is a master list LoadMasterList refused.
type RejectedMasterList struct {
	Name, Code, Reason string
}

// RejectedMasterLists lists the master lists that were refused.
func (s *TrustStore) RejectedMasterLists() []RejectedMasterList {
	return append([]RejectedMasterList(nil), s.rejectedML...)
}
