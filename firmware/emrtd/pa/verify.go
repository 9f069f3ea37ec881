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

func (r *Result) finish() *Result {
	required := []string{CheckSODStructure, CheckHashAlgorithm, CheckDSCertificate, CheckContentType,
		CheckMessageDigest, CheckSignature, CheckDSValidity, CheckDSKeyUsage, CheckCSCA, CheckCSCAValidity, CheckCSCAIsCA, CheckRevocation}
	passed := len(r.Failures()) == 0
	for _, n := range required {
		passed = passed && r.ok(n)
	}
	dgChecked := false
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
	// CRLWarn passes with a warning (crl_missing) — many terminals have
	// no CRL distribution for every country, and declining every such
	// document would make the terminal unusable; CRLDecline fails.
	MissingCRL CRLPolicy
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
		return r.finish()
	}
	r.SOD = s
	if len(s.Signers) != 1 {
		r.fail(CheckSODStructure, CodeSODMalformed, "SOD has %d signerInfos, 9303-10 §4.6.2 requires one", len(s.Signers))
		return r.finish()
	}
	si := &s.Signers[0]
	if len(si.SignedAttrs) == 0 {
		r.fail(CheckSODStructure, CodeSODMalformed, "signerInfo has no signed attributes (9303-10 §4.6.2.1 requires them)")
		return r.finish()
	}
	r.pass(CheckSODStructure, fmt.Sprintf("CMS SignedData with LDSSecurityObject v%d listing %d data groups", s.LDS.Version, len(s.LDS.Hashes)))

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

	checkSignedAttrs(r, s, si, sigHash, ok2)

	ds, err := findDS(s, si)
	if err != nil {
		r.fail(CheckDSCertificate, err.(*codedError).code, "%v", err)
	} else {
		r.DS = ds
		r.pass(CheckDSCertificate, fmt.Sprintf("%q serial %s", ds.Subject.String(), ds.SerialNumber))
		checkSignature(r, s, si, ds)
		checkSigningTime(r, si, ds)
		checkValidity(r, CheckDSValidity, "document signer", ds, at, CodeDSExpired, CodeDSNotYetValid)
		if ds.KeyUsage != 0 && ds.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			r.fail(CheckDSKeyUsage, CodeDSKeyUsage, "DS key usage lacks digitalSignature (9303-12 §7.1.1)")
		} else {
			r.pass(CheckDSKeyUsage, "digitalSignature")
		}
		checkChain(r, ds, store, at)
		if r.CSCA != nil {
			checkRevocation(r, ds, r.CSCA, store, at, opts)
		} else if store != nil {
			// The CSCA may have been meant to come from a master list
			// that was refused: name it.
			for _, ml := range store.rejectedML {
				r.fail("master_list", ml.Code, "master list %s was rejected: %s", ml.Name, ml.Reason)
			}
		}
	}
	if ok1 {
		checkDGs(r, s.LDS, ldsHash, dgs)
	}
	return r.finish()
}

type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func findDS(s *lds.SOD, si *lds.SignerInfo) (*x509.Certificate, error) {
	var parseErrs []string
	for i, raw := range s.Certificates {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			parseErrs = append(parseErrs, fmt.Sprintf("certificate %d: %v", i+1, err))
			continue
		}
		if si.SerialNumber != nil && bytes.Equal(c.RawIssuer, si.IssuerRaw) && c.SerialNumber.Cmp(si.SerialNumber) == 0 {
			return c, nil
		}
		if si.SubjectKeyID != nil && len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, si.SubjectKeyID) {
			return c, nil
		}
	}
	if len(parseErrs) > 0 {
		// e.g. a brainpool key: Go's crypto/x509 parses NIST curves only.
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
// the DS is issued directly by the CSCA) and checks it.
func checkChain(r *Result, ds *x509.Certificate, store *TrustStore, at time.Time) {
	if store == nil || len(store.certs) == 0 {
		r.fail(CheckCSCA, CodeNoTrustStore, "no trust store")
		return
	}
	named := 0
	var lastErr error
	for _, ca := range store.certs {
		if !bytes.Equal(ca.RawSubject, ds.RawIssuer) && ca.Subject.String() != ds.Issuer.String() {
			continue
		}
		named++
		// CheckSignature (not CheckSignatureFrom) so the CA flag and key
		// usage are reported as their own checks below, and SHA-1 signed
		// DS certificates of older documents still verify.
		if err := ca.CheckSignature(ds.SignatureAlgorithm, ds.RawTBSCertificate, ds.Signature); err != nil {
			lastErr = err
			continue
		}
		r.CSCA = ca
		r.pass(CheckCSCA, fmt.Sprintf("DS signed by trusted CSCA %q", ca.Subject.String()))
		checkValidity(r, CheckCSCAValidity, "CSCA", ca, at, CodeCSCAExpired, CodeCSCANotYetValid)
		switch {
		case !ca.BasicConstraintsValid || !ca.IsCA:
			r.fail(CheckCSCAIsCA, CodeCSCANotCA, "CSCA certificate lacks basicConstraints cA=TRUE")
		case ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0:
			r.fail(CheckCSCAIsCA, CodeCSCANotCA, "CSCA key usage lacks keyCertSign")
		default:
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
