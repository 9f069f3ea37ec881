package pa

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"kiosk/firmware/emrtd/cert"
)

// Revocation (9303-12 §7.1.4: CSCAs publish CRLs covering the document
// signers and the CSCA/link certificates they issued). CRLs come from the
// trust directory as files, are accepted only when signed by the trusted
// CSCA named as their issuer, and are fresh until their nextUpdate.

// CRLPolicy says what a stale or missing CRL does to the verdict.
type CRLPolicy string

// CRL policies.
const (
	CRLDecline CRLPolicy = "decline" // the check fails
	CRLWarn    CRLPolicy = "warn"    // the check passes with a warning
)

// CRLHome, for a missing CRL only: decline for the home country's
// CSCAs, warn for the others (the default).
const CRLHome CRLPolicy = "home"

// DefaultCRLMaxAge is how long a CRL without nextUpdate counts as fresh
// after its thisUpdate: 9303-12 §7.1.4 has every CSCA issue a CRL at
// least every 90 days.
const DefaultCRLMaxAge = 90 * 24 * time.Hour

// ParseCRLPolicy accepts "decline", "warn" and "home" (the last is
// meaningful for a missing CRL only; for a stale CRL it declines).
func ParseCRLPolicy(s string) (CRLPolicy, error) {
	switch p := CRLPolicy(s); p {
	case CRLDecline, CRLWarn, CRLHome:
		return p, nil
	}
	return "", fmt.Errorf("CRL policy %q: want decline, warn or home", s)
}

// Reason codes of the revocation checks.
const (
	CodeDSRevoked   = "ds_revoked"
	CodeCSCARevoked = "csca_revoked"
	CodeCRLStale    = "crl_stale"
	CodeCRLMissing  = "crl_missing"
)

// CheckRevocation is the name of the revocation check.
const CheckRevocation = "revocation"

// Revocation statuses.
const (
	StatusGood    = "good"
	StatusRevoked = "revoked"
	StatusUnknown = "unknown"
)

// Revocation is the revocation status found for a document.
type Revocation struct {
	DS   string `json:"ds"`   // good, revoked, unknown (no CRL)
	CSCA string `json:"csca"` // good, revoked, unknown
	// CRLFresh is whether the CSCA's CRL was within its nextUpdate; nil
	// when there was no CRL.
	CRLFresh   *bool     `json:"crl_fresh,omitempty"`
	CRLIssuer  string    `json:"crl_issuer,omitempty"`
	ThisUpdate time.Time `json:"crl_this_update,omitzero"`
	NextUpdate time.Time `json:"crl_next_update,omitzero"`
}

// MaxCRLEntries bounds one CRL (a CSCA revokes few document signers).
const MaxCRLEntries = 1 << 16

// ParseCRL reads one CRL file: PEM ("X509 CRL") or DER.
func ParseCRL(b []byte) (*x509.RevocationList, error) {
	if bytes.Contains(b, []byte("-----BEGIN")) {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM block")
		}
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block is %q, not X509 CRL", blk.Type)
		}
		b = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	if len(crl.RevokedCertificateEntries) > MaxCRLEntries {
		return nil, fmt.Errorf("CRL with %d entries", len(crl.RevokedCertificateEntries))
	}
	return crl, nil
}

// AddCRL accepts a CRL when a trusted CSCA named as its issuer (RDN set)
// signed it (9303-12 §7.1.4: CRLs are signed by the CSCA) and that CSCA
// is a CA with keyCertSign and cRLSign. Call it after every
// CSCA (and master list) has been loaded.
func (s *TrustStore) AddCRL(crl *x509.RevocationList) error {
	if crl == nil {
		return errors.New("nil CRL")
	}
	var lastErr error
	for _, ca := range s.certs {
		if !cert.SameName(ca.RawSubject, crl.RawIssuer) {
			continue
		}
		// cert.CheckSigned: brainpool and explicit-parameter CSCA keys.
		if err := cert.CheckSigned(crl.Raw, ca.PublicKey); err != nil {
			lastErr = err
			continue
		}
		if msg := caProfileError(ca); msg != "" {
			lastErr = fmt.Errorf("signed by %q, which %s", ca.Subject.String(), msg)
			continue
		}
		if ca.KeyUsage&x509.KeyUsageCRLSign == 0 { // RFC 5280 §4.2.1.3
			lastErr = fmt.Errorf("signed by %q, whose key usage lacks cRLSign", ca.Subject.String())
			continue
		}
		for _, o := range s.crls {
			if bytes.Equal(o.Raw, crl.Raw) {
				return nil
			}
		}
		s.crls = append(s.crls, crl)
		return nil
	}
	if lastErr != nil {
		return fmt.Errorf("CRL of %q: signature: %w", crl.Issuer.String(), lastErr)
	}
	return fmt.Errorf("CRL of %q: issuer is no trusted CSCA", crl.Issuer.String())
}

// CRLs returns the accepted CRLs.
func (s *TrustStore) CRLs() []*x509.RevocationList {
	return append([]*x509.RevocationList(nil), s.crls...)
}

// CurrentCRLs returns, for each issuer, the CRL the revocation check uses:
// the newest accepted one (by thisUpdate). Older CRLs of the same issuer
// stay loaded but decide nothing.
func (s *TrustStore) CurrentCRLs() []*x509.RevocationList {
	var out []*x509.RevocationList
	for _, c := range s.crls {
		if s.crlFor(c.RawIssuer) == c {
			out = append(out, c)
		}
	}
	return out
}

// crlFor returns the newest accepted CRL issued under name (by
// thisUpdate).
func (s *TrustStore) crlFor(rawName []byte) *x509.RevocationList {
	var best *x509.RevocationList
	for _, c := range s.crls {
		if cert.SameName(c.RawIssuer, rawName) && (best == nil || c.ThisUpdate.After(best.ThisUpdate)) {
			best = c
		}
	}
	return best
}

func revoked(crl *x509.RevocationList, serial *big.Int, at time.Time) (time.Time, bool) {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(serial) == 0 && !e.RevocationTime.After(at) {
			return e.RevocationTime, true
		}
	}
	return time.Time{}, false
}

// checkRevocation looks the DS up in its CSCA's CRL and the CSCA (a
// self-signed or link certificate) in the CRL of its own issuer name.
func checkRevocation(r *Result, ds, csca *x509.Certificate, store *TrustStore, at time.Time, opts Options) {
	rv := &Revocation{DS: StatusUnknown, CSCA: StatusUnknown}
	r.Revocation = rv
	crl := store.crlFor(csca.RawSubject)
	if crl == nil {
		home := opts.HomeCountry
		if home == "" {
			home = store.home
		}
		country := cert.Country(csca.RawSubject)
		isHome := home != "" && country != "" && slices.Contains(homeCodes(home), country)
		decline := opts.MissingCRL == CRLDecline || ((opts.MissingCRL == "" || opts.MissingCRL == CRLHome) && isHome)
		switch {
		case decline && isHome:
			r.fail(CheckRevocation, CodeCRLMissing, "no CRL of CSCA %q in the trust store, and it is the home country's (%s)", csca.Subject.String(), country)
		case decline:
			r.fail(CheckRevocation, CodeCRLMissing, "no CRL of CSCA %q in the trust store", csca.Subject.String())
		default:
			r.warn(CheckRevocation, CodeCRLMissing, "no CRL of CSCA %q in the trust store: revocation unknown", csca.Subject.String())
		}
		return
	}
	rv.CRLIssuer, rv.ThisUpdate, rv.NextUpdate = crl.Issuer.String(), crl.ThisUpdate, crl.NextUpdate
	age := opts.CRLMaxAge
	if age == 0 {
		age = store.crlMaxAge
	}
	due := CRLDue(crl, age)
	fresh := !at.After(due)
	rv.CRLFresh = &fresh
	rv.DS, rv.CSCA = StatusGood, StatusGood
	// A revoked entry counts even in a stale CRL: revocation is final.
	if t, ok := revoked(crl, ds.SerialNumber, at); ok {
		rv.DS = StatusRevoked
		r.fail(CheckRevocation, CodeDSRevoked, "document signer serial %s revoked on %s by the CRL of %q",
			ds.SerialNumber, t.UTC().Format(time.RFC3339), crl.Issuer.String())
	}
	if cc := store.crlFor(csca.RawIssuer); cc != nil {
		if t, ok := revoked(cc, csca.SerialNumber, at); ok {
			rv.CSCA = StatusRevoked
			r.fail(CheckRevocation, CodeCSCARevoked, "CSCA %q serial %s revoked on %s",
				csca.Subject.String(), csca.SerialNumber, t.UTC().Format(time.RFC3339))
		}
	}
	if rv.DS == StatusRevoked || rv.CSCA == StatusRevoked {
		return
	}
	if !fresh {
		msg := fmt.Sprintf("the CRL of %q was due for renewal on %s (checked at %s)", crl.Issuer.String(),
			due.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
		if crl.NextUpdate.IsZero() {
			msg += "; it has no nextUpdate, so it counts as fresh for the configured age after thisUpdate"
		}
		if opts.StaleCRL == CRLWarn {
			r.warn(CheckRevocation, CodeCRLStale, "%s", msg)
		} else {
			r.fail(CheckRevocation, CodeCRLStale, "%s", msg)
		}
		return
	}
	r.pass(CheckRevocation, fmt.Sprintf("neither the DS nor the CSCA is on the CRL of %q (next update %s)",
		crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339)))
}

// homeCodes maps a configured home country (alpha-2, or an MRZ code) to
// certificate country codes.
func homeCodes(home string) []string {
	h := strings.ToUpper(strings.TrimSpace(home))
	if len(h) == 2 {
		return []string{h}
	}
	return CertificateCountries(h)
}

// CRLDue is when crl stops being fresh: its nextUpdate, or, for a CRL
// without one (RFC 5280 §5.1.2.5 makes it mandatory; some CAs omit it),
// maxAge after its thisUpdate (0: DefaultCRLMaxAge).
func CRLDue(crl *x509.RevocationList, maxAge time.Duration) time.Time {
	if !crl.NextUpdate.IsZero() {
		return crl.NextUpdate
	}
	if maxAge <= 0 {
		maxAge = DefaultCRLMaxAge
	}
	return crl.ThisUpdate.Add(maxAge)
}
