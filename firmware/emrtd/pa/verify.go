package pa

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/lds"
)

// Stable reason codes of failed checks.
const (
	CodeSODMalformed                  = "sod_malformed"
	CodeHashAlgorithmUnsupported      = "hash_algorithm_unsupported"
	CodeSignatureAlgorithmUnsupported = "signature_algorithm_unsupported"
	CodeDSMissing                     = "ds_certificate_missing"
	CodeDSUnparsable                  = "ds_certificate_unparsable"
	CodeContentTypeMismatch           = "sod_content_type_mismatch"
	CodeMessageDigestMismatch         = "sod_message_digest_mismatch"
	CodeSignatureInvalid              = "sod_signature_invalid"
	CodeSigningTimeInvalid            = "sod_signing_time_invalid"
	CodeDSExpired                     = "ds_expired"
	CodeDSNotYetValid                 = "ds_not_yet_valid"
	CodeDSKeyUsage                    = "ds_key_usage_invalid"
	CodeDSIsCA                        = "ds_is_ca"
	CodeCountryMismatch               = "country_mismatch"
	CodeCountryUnbound                = "country_unbound" // a warning: DG1 not given
	CodeCSCAUnknown                   = "csca_unknown"
	CodeCSCAExpired                   = "csca_expired"
	CodeCSCANotYetValid               = "csca_not_yet_valid"
	CodeCSCANotCA                     = "csca_not_ca"
	CodeDGHashMismatch                = "dg_hash_mismatch"
	CodeDGNotInSOD                    = "dg_not_in_sod"
	CodeNoDataGroups                  = "dg_none_read"
	CodeNoTrustStore                  = "trust_store_missing"
)

// Names of the checks in Result.Checks.
const (
	CheckSODStructure  = "sod_structure"
	CheckHashAlgorithm = "hash_algorithm"
	CheckDSCertificate = "ds_certificate"
	CheckContentType   = "sod_content_type"
	CheckMessageDigest = "sod_message_digest"
	CheckSignature     = "sod_signature"
	CheckSigningTime   = "sod_signing_time"
	CheckDSValidity    = "ds_validity"
	CheckDSKeyUsage    = "ds_key_usage"
	CheckDSProfile     = "ds_profile"
	CheckCountry       = "country_binding"
	CheckCSCA          = "csca_chain"
	CheckCSCAValidity  = "csca_validity"
	CheckCSCAIsCA      = "csca_ca"
	CheckDGHash        = "dg_hash" // one per data group, DG set
)

// Check is the outcome of one verification step.
type Check struct {
	Name   string
	DG     int // data group, for dg_hash checks
	OK     bool
	Code   string // empty when OK, except for a warning
	Reason string // human readable, also when OK
	// Warn marks a check that passed by policy with a reservation (Code
	// says which, e.g. crl_missing under the default policy).
	Warn bool
}

func (c Check) String() string {
	n := c.Name
	if c.DG != 0 {
		n = fmt.Sprintf("%s:DG%d", n, c.DG)
	}
	if c.OK && c.Warn {
		return n + ": warning: " + c.Code + ": " + c.Reason
	}
	if c.OK {
		return n + ": ok (" + c.Reason + ")"
	}
	return n + ": " + c.Code + ": " + c.Reason
}

// Result is the outcome of passive authentication.
type Result struct {
	// Passed is true only if every check passed and the signature, chain
	// and at least one data group hash were actually checked.
	Passed bool
	Checks []Check
	At     time.Time
	// What was found, for the report; nil when parsing stopped earlier.
	SOD                *lds.SOD
	HashAlgorithm      crypto.Hash
	SignatureAlgorithm string // e.g. "ecdsa-with-SHA256", "RSASSA-PSS/SHA-256"
	// Verifier names the code that checked the CMS signature:
	// "smallstep/pkcs7" where that library supports the algorithm,
	// "builtin" for RSA-PSS, plain-format ECDSA and similar.
	Verifier string
	DS       *x509.Certificate
	CSCA     *x509.Certificate
	// Revocation is the CRL status of DS and CSCA; nil when the chain
	// was not established.
	Revocation *Revocation
}

// Failures returns the failed checks.
func (r *Result) Failures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Codes returns the codes of the failed checks, with ":DGn" for DG checks.
func (r *Result) Codes() []string {
	var out []string
	for _, c := range r.Failures() {
		if c.DG != 0 {
			out = append(out, fmt.Sprintf("%s:DG%d", c.Code, c.DG))
		} else {
			out = append(out, c.Code)
		}
	}
	return out
}

// HasCode reports whether a check failed with code.
func (r *Result) HasCode(code string) bool {
	for _, c := range r.Failures() {
		if c.Code == code {
			return true
		}
	}
	return false
}

// Error is returned by Result.Err for a failed verification.
type Error struct{ Failures []Check }

func (e *Error) Error() string {
	parts := make([]string, len(e.Failures))
	for i, c := range e.Failures {
		parts[i] = c.String()
	}
	return "passive authentication failed: " + strings.Join(parts, "; ")
}

// ErrIncomplete is the reason of a Result that did not fail a check but
// could not run the checks needed to pass.
var ErrIncomplete = errors.New("passive authentication incomplete")

// Err returns nil if the verification passed, else an *Error.
func (r *Result) Err() error {
	if r.Passed {
		return nil
	}
	f := r.Failures()
	if len(f) == 0 {
		return ErrIncomplete
	}
	return &Error{Failures: f}
}

func (r *Result) pass(name, reason string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Reason: reason})
}

func (r *Result) fail(name, code, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, Code: code, Reason: fmt.Sprintf(format, args...)})
}

func (r *Result) warn(name, code, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Warn: true, Code: code, Reason: fmt.Sprintf(format, args...)})
}

func (r *Result) ok(name string) bool {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.OK
		}
	}
	return false
}

func (r *Result) finish(sodOnly bool) *Result {
	required := []string{CheckSODStructure, CheckHashAlgorithm, CheckDSCertificate, CheckContentType,
		CheckMessageDigest, CheckSignature, CheckDSValidity, CheckDSKeyUsage, CheckDSProfile, CheckCSCA,
		CheckCSCAValidity, CheckCSCAIsCA, CheckCountry, CheckRevocation}
	passed := len(r.Failures()) == 0
	for _, n := range required {
		passed = passed && r.ok(n)
	}
	dgChecked := sodOnly
	for _, c := range r.Checks {
		dgChecked = dgChecked || (c.Name == CheckDGHash && c.OK)
	}
	r.Passed = passed && dgChecked
	return r
}

// Options are the verification policy.
type Options struct {
	// At is the verification time (validity periods, CRL freshness).
	At time.Time
	// StaleCRL is what a CRL past its nextUpdate does: "" or CRLDecline
	// fails the revocation check (crl_stale), CRLWarn passes it with a
	// warning. A revoked entry always fails.
	StaleCRL CRLPolicy
	// MissingCRL is what the absence of the CSCA's CRL does: "" or
	// CRLHome fails the check (crl_missing) for a CSCA of the home
	// country (HomeCountry, else the store's) and passes it with a
	// warning for other countries — a kiosk can always have its own
	// state's CRL, not necessarily every other state's; CRLDecline
	// fails for every country, CRLWarn warns for every country.
	MissingCRL CRLPolicy
	// HomeCountry is the kiosk's state: ISO 3166 alpha-2 or the MRZ
	// code. Empty means the trust store's (TrustStore.SetHomeCountry).
	HomeCountry string
	// CRLMaxAge is how long after its thisUpdate a CRL without
	// nextUpdate counts as fresh; 0 means the store's, else
	// DefaultCRLMaxAge.
	CRLMaxAge time.Duration
	// SODOnly checks everything but the data group hashes (and the
	// issuing state of DG1 when DG1 is not given): for auditing SOD
	// files without the data groups.
	SODOnly bool
}

// Verify runs passive authentication (9303-11 §5.1) at time at with the
// default revocation policy (see Options).
func Verify(sod []byte, dgs map[int][]byte, store *TrustStore, at time.Time) *Result {
	return VerifyWith(sod, dgs, store, Options{At: at})
}

// VerifyWith runs passive authentication (9303-11 §5.1): sod is EF.SOD as
// read (tag 77), dgs the data group files read from the chip (number →
// whole file including tag and length). A DG listed in the SOD but not
// read is fine; a DG read but not listed fails. The DS and its CSCA are
// looked up in the store's CRLs (9303-12 §7.1.4).
func VerifyWith(sod []byte, dgs map[int][]byte, store *TrustStore, opts Options) *Result {
	at := opts.At
	r := &Result{At: at}
	s, err := lds.ParseSOD(sod)
	if err != nil {
		r.fail(CheckSODStructure, CodeSODMalformed, "%v", err)
		return r.finish(opts.SODOnly)
	}
	r.SOD = s
	if len(s.Signers) != 1 {
		r.fail(CheckSODStructure, CodeSODMalformed, "SOD has %d signerInfos, 9303-10 §4.6.2 requires one", len(s.Signers))
		return r.finish(opts.SODOnly)
	}
	si := &s.Signers[0]
	if len(si.SignedAttrs) == 0 {
		r.fail(CheckSODStructure, CodeSODMalformed, "signerInfo has no signed attributes (9303-10 §4.6.2.1 requires them)")
		return r.finish(opts.SODOnly)
	}
	enc := "DER"
	if s.BER {
		enc = "BER, converted to DER"
	}
	if s.ContentTypeIsData {
		enc += ", eContentType id-data instead of the 9303-10 §4.6.2 type"
	}
	r.pass(CheckSODStructure, fmt.Sprintf("CMS SignedData (%s) with LDSSecurityObject v%d listing %d data groups", enc, s.LDS.Version, len(s.LDS.Hashes)))

	// Hash algorithms: the LDSSecurityObject's for the DGs, the signer's
	// for the message digest attribute.
	ldsHash, ok1 := lds.HashForOID(s.LDS.HashAlgorithm.Algorithm)
	sigHash, ok2 := lds.HashForOID(si.DigestAlgorithm.Algorithm)
	switch {
	case !ok1:
		r.fail(CheckHashAlgorithm, CodeHashAlgorithmUnsupported, "LDSSecurityObject hash algorithm %v", s.LDS.HashAlgorithm.Algorithm)
	case !ok2:
		r.fail(CheckHashAlgorithm, CodeHashAlgorithmUnsupported, "signer digest algorithm %v", si.DigestAlgorithm.Algorithm)
	default:
		r.HashAlgorithm = ldsHash
		r.pass(CheckHashAlgorithm, fmt.Sprintf("data groups %v, signer %v", ldsHash, sigHash))
	}

	verifySigner(r, s, si, sigHash, ok2, store, dgs[1], opts)
	if ok1 && !opts.SODOnly {
		checkDGs(r, s.LDS, ldsHash, dgs)
	}
	return r.finish(opts.SODOnly)
}

// verifySigner runs the checks of the SignedData's one signer, whatever
// the content: signed attributes, the document signer certificate, the
// signature, signing time, validity, profile, the chain to a CSCA,
// country binding (with DG1 when given) and revocation.
func verifySigner(r *Result, s *lds.SOD, si *lds.SignerInfo, sigHash crypto.Hash, hashOK bool, store *TrustStore, dg1 []byte, opts Options) {
	at := opts.At
	checkSignedAttrs(r, s, si, sigHash, hashOK)
	ds, err := findDS(s, si)
	if err != nil {
		r.fail(CheckDSCertificate, err.(*codedError).code, "%v", err)
		return
	}
	r.DS = ds
	r.pass(CheckDSCertificate, fmt.Sprintf("%q serial %s", ds.Subject.String(), ds.SerialNumber))
	checkSignature(r, s, si, ds)
	checkSigningTime(r, si, ds)
	checkValidity(r, CheckDSValidity, "document signer", ds, at, CodeDSExpired, CodeDSNotYetValid)
	checkDSProfile(r, ds)
	checkChain(r, ds, store, at)
	if r.CSCA != nil {
		checkCountry(r, ds, r.CSCA, dg1, opts.SODOnly)
		checkRevocation(r, ds, r.CSCA, store, at, opts)
	} else if store != nil {
		// The CSCA may have been meant to come from a master list
		// that was refused: name it.
		for _, ml := range store.rejectedML {
			r.fail("master_list", ml.Code, "master list %s was rejected: %s", ml.Name, ml.Reason)
		}
	}
}

// VerifyCardSecurity runs passive authentication on EF.CardSecurity
// (9303-11 §9.2.2; BSI TR-03110-3 §A.1.2.5): a SignedData over
// SecurityInfos, signed by a document signer of the same PKI as EF.SOD.
// Every check of VerifyWith runs but the data group hashes; dg1, when
// given, binds the issuing state (country binding). The parsed file is
// returned with the result (nil when it could not be parsed).
func VerifyCardSecurity(b []byte, dg1 []byte, store *TrustStore, opts Options) (*lds.CardSecurity, *Result) {
	r := &Result{At: opts.At}
	opts.SODOnly = true // no data group hashes in this file
	cs, err := lds.ParseCardSecurity(b)
	if err != nil {
		r.fail(CheckSODStructure, CodeSODMalformed, "EF.CardSecurity: %v", err)
		return nil, r.finish(true)
	}
	s := cs.Signed
	r.SOD = s
	if len(s.Signers) != 1 {
		r.fail(CheckSODStructure, CodeSODMalformed, "EF.CardSecurity has %d signerInfos, want one", len(s.Signers))
		return cs, r.finish(true)
	}
	si := &s.Signers[0]
	if len(si.SignedAttrs) == 0 {
		r.fail(CheckSODStructure, CodeSODMalformed, "EF.CardSecurity's signerInfo has no signed attributes")
		return cs, r.finish(true)
	}
	enc := "DER"
	if s.BER {
		enc = "BER, converted to DER"
	}
	r.pass(CheckSODStructure, fmt.Sprintf("EF.CardSecurity: CMS SignedData (%s) over %d SecurityInfos", enc, len(cs.Infos.Raw)))
	sigHash, ok := lds.HashForOID(si.DigestAlgorithm.Algorithm)
	if ok {
		r.HashAlgorithm = sigHash
		r.pass(CheckHashAlgorithm, fmt.Sprintf("signer %v", sigHash))
	} else {
		r.fail(CheckHashAlgorithm, CodeHashAlgorithmUnsupported, "signer digest algorithm %v", si.DigestAlgorithm.Algorithm)
	}
	verifySigner(r, s, si, sigHash, ok, store, dg1, opts)
	return cs, r.finish(true)
}

// checkDSProfile: 9303-12 §7.1.1 (certificate profile, document signer):
// keyUsage is mandatory and holds digitalSignature; a DS is an end
// entity, so a certificate that is itself a CA (basicConstraints cA, or
// keyCertSign) does not sign documents.
func checkDSProfile(r *Result, ds *x509.Certificate) {
	switch {
	case !cert.HasExtension(ds, cert.OIDKeyUsage):
		r.fail(CheckDSKeyUsage, CodeDSKeyUsage, "DS certificate has no keyUsage extension (9303-12 §7.1.1 makes it mandatory)")
	case ds.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		r.fail(CheckDSKeyUsage, CodeDSKeyUsage, "DS key usage lacks digitalSignature (9303-12 §7.1.1)")
	default:
		r.pass(CheckDSKeyUsage, "digitalSignature")
	}
	switch {
	case ds.BasicConstraintsValid && ds.IsCA:
		r.fail(CheckDSProfile, CodeDSIsCA, "the document signer certificate is a CA (basicConstraints cA=TRUE)")
	case ds.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		r.fail(CheckDSProfile, CodeDSIsCA, "the document signer certificate may sign certificates or CRLs (keyCertSign/cRLSign)")
	default:
		r.pass(CheckDSProfile, "end-entity certificate")
	}
}

// checkCountry binds the document to its PKI (9303-12 §7.1.1, 9303-3 §5):
// the DS subject's countryName equals the CSCA's, and DG1's issuing
// state maps to that country (CertificateCountries). Without DG1 (SOD
// only) the certificates are compared with each other alone.
func checkCountry(r *Result, ds, csca *x509.Certificate, dg1 []byte, sodOnly bool) {
	dsC, caC := cert.Country(ds.RawSubject), cert.Country(csca.RawSubject)
	switch {
	case dsC == "":
		r.fail(CheckCountry, CodeCountryMismatch, "the document signer's subject has no countryName")
		return
	case caC == "":
		r.fail(CheckCountry, CodeCountryMismatch, "the CSCA's subject has no countryName")
		return
	case dsC != caC:
		r.fail(CheckCountry, CodeCountryMismatch, "document signer of country %s under a CSCA of country %s", dsC, caC)
		return
	}
	if dg1 == nil {
		if sodOnly {
			r.pass(CheckCountry, fmt.Sprintf("document signer and CSCA both of %s (no DG1 given)", dsC))
		} else {
			// Not a pass of the binding: said so in the report. The
			// reader always hands DG1 over.
			r.warn(CheckCountry, CodeCountryUnbound, "DG1 was not given: the issuing state is not compared with %s", dsC)
		}
		return
	}
	mrz, err := lds.ParseDG1(dg1)
	if err != nil {
		r.fail(CheckCountry, CodeCountryMismatch, "DG1 unreadable, issuing state unknown: %v", err)
		return
	}
	state := strings.TrimRight(mrz.IssuingState, "<")
	allowed := CertificateCountries(state)
	for _, c := range allowed {
		if c == dsC {
			r.pass(CheckCountry, fmt.Sprintf("issuing state %s, document signer and CSCA of %s", state, dsC))
			return
		}
	}
	if len(allowed) == 0 {
		r.fail(CheckCountry, CodeCountryMismatch, "issuing state %q %s (document signer and CSCA of %s)", state, unboundReason(state), dsC)
		return
	}
	r.fail(CheckCountry, CodeCountryMismatch, "issuing state %s (certificates of %s) but document signer and CSCA of %s",
		state, strings.Join(allowed, "/"), dsC)
}

type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string { return e.msg }

// findDS finds the signer's certificate among the SignedData's
// certificates (RFC 5652 §5.3 SignerIdentifier): by issuer and serial
// number, the issuer compared as a set of RDNs (cert.SameName: issuers
// list them in another order than the certificate), or by
// subjectKeyIdentifier.
func findDS(s *lds.SOD, si *lds.SignerInfo) (*x509.Certificate, error) {
	var parseErrs []string
	for i, raw := range s.Certificates {
		c, err := cert.Parse(raw)
		if err != nil {
			parseErrs = append(parseErrs, fmt.Sprintf("certificate %d: %v", i+1, err))
			continue
		}
		if si.SerialNumber != nil && c.SerialNumber.Cmp(si.SerialNumber) == 0 && cert.SameName(c.RawIssuer, si.IssuerRaw) {
			return c, nil
		}
		if si.SubjectKeyID != nil && len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, si.SubjectKeyID) {
			return c, nil
		}
	}
	if len(parseErrs) > 0 {
		return nil, &codedError{CodeDSUnparsable, "no usable document signer certificate in the SOD: " + strings.Join(parseErrs, "; ")}
	}
	return nil, &codedError{CodeDSMissing, fmt.Sprintf("the SOD's %d certificate(s) do not include the signer", len(s.Certificates))}
}

// checkSignedAttrs verifies the content-type and message-digest signed
// attributes (RFC 5652 §11.1, §11.2; 9303-10 §4.6.2.1).
func checkSignedAttrs(r *Result, s *lds.SOD, si *lds.SignerInfo, h crypto.Hash, hashOK bool) {
	ct, ok := si.Attr(lds.OIDContentType)
	var oid asn1.ObjectIdentifier
	switch {
	case !ok || len(ct) != 1:
		r.fail(CheckContentType, CodeContentTypeMismatch, "content-type signed attribute missing or multi-valued")
	default:
		if rest, err := asn1.Unmarshal(ct[0], &oid); err != nil || len(rest) != 0 || !oid.Equal(s.ContentType) {
			r.fail(CheckContentType, CodeContentTypeMismatch, "content-type attribute %v, eContentType %v", oid, s.ContentType)
		} else {
			r.pass(CheckContentType, oid.String())
		}
	}
	md, ok := si.Attr(lds.OIDMessageDigest)
	var digest []byte
	switch {
	case !ok || len(md) != 1:
		r.fail(CheckMessageDigest, CodeMessageDigestMismatch, "message-digest signed attribute missing or multi-valued")
	case !hashOK:
		r.fail(CheckMessageDigest, CodeHashAlgorithmUnsupported, "cannot hash the content with %v", si.DigestAlgorithm.Algorithm)
	default:
		hh := h.New()
		hh.Write(s.Content)
		if rest, err := asn1.Unmarshal(md[0], &digest); err != nil || len(rest) != 0 || !bytes.Equal(digest, hh.Sum(nil)) {
			r.fail(CheckMessageDigest, CodeMessageDigestMismatch, "message-digest attribute does not equal %v of the LDSSecurityObject", h)
		} else {
			r.pass(CheckMessageDigest, fmt.Sprintf("%v of the LDSSecurityObject", h))
		}
	}
}

// checkSigningTime: a signing-time attribute, when present, must fall in
// the DS certificate's validity.
func checkSigningTime(r *Result, si *lds.SignerInfo, ds *x509.Certificate) {
	v, ok := si.Attr(lds.OIDSigningTime)
	if !ok {
		return
	}
	var t time.Time
	if len(v) != 1 {
		r.fail(CheckSigningTime, CodeSigningTimeInvalid, "signing-time attribute with %d values", len(v))
		return
	}
	if rest, err := asn1.Unmarshal(v[0], &t); err != nil || len(rest) != 0 {
		r.fail(CheckSigningTime, CodeSigningTimeInvalid, "signing-time attribute unreadable")
		return
	}
	if t.Before(ds.NotBefore) || t.After(ds.NotAfter) {
		r.fail(CheckSigningTime, CodeSigningTimeInvalid, "signed %s, outside the DS validity %s..%s",
			t.UTC().Format(time.RFC3339), ds.NotBefore.UTC().Format(time.RFC3339), ds.NotAfter.UTC().Format(time.RFC3339))
		return
	}
	r.pass(CheckSigningTime, t.UTC().Format(time.RFC3339))
}

func checkValidity(r *Result, name, what string, c *x509.Certificate, at time.Time, expired, notYet string) {
	switch {
	case at.After(c.NotAfter):
		r.fail(name, expired, "%s certificate expired %s (checked at %s)", what, c.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	case at.Before(c.NotBefore):
		r.fail(name, notYet, "%s certificate valid from %s (checked at %s)", what, c.NotBefore.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	default:
		r.pass(name, fmt.Sprintf("%s..%s", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339)))
	}
}

// checkChain finds the CSCA that signed the DS certificate (9303-12 §5:
// the DS is issued directly by the CSCA) and checks it. Several trusted
// certificates may carry the CSCA's name and key (a self-signed CSCA and
// link certificates); the one that verifies and is a valid CA wins.
func checkChain(r *Result, ds *x509.Certificate, store *TrustStore, at time.Time) {
	if store == nil || len(store.certs) == 0 {
		r.fail(CheckCSCA, CodeNoTrustStore, "no trust store")
		return
	}
	named := 0
	var lastErr error
	var best *x509.Certificate
	bestScore := -1
	for _, ca := range store.certs {
		if !cert.SameName(ca.RawSubject, ds.RawIssuer) {
			continue
		}
		named++
		// cert.CheckSignedBy, not crypto/x509: brainpool and
		// explicit-parameter keys, RSA-PSS, and SHA-1 signed DS
		// certificates of older documents. The CA flag and key usage
		// are reported as their own checks below.
		if err := cert.CheckSignedBy(ds, ca); err != nil {
			lastErr = err
			continue
		}
		score := 0
		if caProfileError(ca) == "" {
			score += 2
		}
		if !at.Before(ca.NotBefore) && !at.After(ca.NotAfter) {
			score++
		}
		if score > bestScore {
			best, bestScore = ca, score
		}
	}
	if best != nil {
		ca := best
		r.CSCA = ca
		r.pass(CheckCSCA, fmt.Sprintf("DS signed by trusted CSCA %q", ca.Subject.String()))
		checkValidity(r, CheckCSCAValidity, "CSCA", ca, at, CodeCSCAExpired, CodeCSCANotYetValid)
		if msg := caProfileError(ca); msg != "" {
			r.fail(CheckCSCAIsCA, CodeCSCANotCA, "CSCA certificate %s", msg)
		} else {
			r.pass(CheckCSCAIsCA, "cA=TRUE, keyCertSign")
		}
		return
	}
	if named == 0 {
		r.fail(CheckCSCA, CodeCSCAUnknown, "no trusted CSCA named %q", ds.Issuer.String())
		return
	}
	r.fail(CheckCSCA, CodeCSCAUnknown, "%d trusted CSCA(s) named %q, none verifies the DS certificate (last: %v)", named, ds.Issuer.String(), lastErr)
}

// caProfileError says why c cannot issue certificates (RFC 5280
// §4.2.1.9, §4.2.1.3; 9303-12 §7.1.1: CSCA and link certificates carry
// basicConstraints cA=TRUE and keyUsage keyCertSign), or "".
func caProfileError(c *x509.Certificate) string {
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return "lacks basicConstraints cA=TRUE"
	case !cert.HasExtension(c, cert.OIDKeyUsage):
		return "has no keyUsage extension"
	case c.KeyUsage&x509.KeyUsageCertSign == 0:
		return "key usage lacks keyCertSign"
	}
	return ""
}

func checkDGs(r *Result, l *lds.LDSSecurityObject, h crypto.Hash, dgs map[int][]byte) {
	if len(dgs) == 0 {
		r.Checks = append(r.Checks, Check{Name: CheckDGHash, Code: CodeNoDataGroups, Reason: "no data group to verify"})
		return
	}
	nums := make([]int, 0, len(dgs))
	for n := range dgs {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		want, ok := l.HashOf(n)
		if !ok {
			r.Checks = append(r.Checks, Check{Name: CheckDGHash, DG: n, Code: CodeDGNotInSOD,
				Reason: fmt.Sprintf("DG%d was read but the SOD does not list it", n)})
			continue
		}
		hh := h.New()
		hh.Write(dgs[n])
		if !bytes.Equal(hh.Sum(nil), want) {
			r.Checks = append(r.Checks, Check{Name: CheckDGHash, DG: n, Code: CodeDGHashMismatch,
				Reason: fmt.Sprintf("%v of DG%d differs from the SOD", h, n)})
			continue
		}
		r.Checks = append(r.Checks, Check{Name: CheckDGHash, DG: n, OK: true, Reason: h.String()})
	}
}

// SigningTime returns when the SOD was signed, for verifying a document
// as of its issue: the signing-time signed attribute (RFC 5652 §11.3)
// when present, else the document signer certificate's notBefore.
// source says which.
func SigningTime(sod []byte) (t time.Time, source string, err error) {
	s, err := lds.ParseSOD(sod)
	if err != nil {
		return time.Time{}, "", err
	}
	if len(s.Signers) != 1 {
		return time.Time{}, "", fmt.Errorf("SOD has %d signerInfos", len(s.Signers))
	}
	si := &s.Signers[0]
	if v, ok := si.Attr(lds.OIDSigningTime); ok && len(v) == 1 {
		if rest, err := asn1.Unmarshal(v[0], &t); err == nil && len(rest) == 0 {
			return t, "signing-time attribute", nil
		}
	}
	ds, err := findDS(s, si)
	if err != nil {
		return time.Time{}, "", err
	}
	return ds.NotBefore, "document signer notBefore", nil
}
