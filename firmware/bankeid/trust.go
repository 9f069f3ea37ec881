package bankeid

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Trust is the eID authorities a kiosk accepts: root certificates (the
// anchors) and their CRLs. A directory holds them as PEM: *.pem or *.crt
// with CERTIFICATE blocks, *.crl with an X509 CRL block (or DER).
type Trust struct {
	roots *smx509.CertPool
	certs []*smx509.Certificate
	crls  []*crl
}

type crl struct {
	rl     *x509.RevocationList
	raw    []byte
	signer *smx509.Certificate // the root that signed it
}

// Limits on a trust directory.
const (
	maxTrustFile  = 1 << 20
	maxTrustFiles = 256
)

// ErrTrust is wrapped by trust-loading errors.
var ErrTrust = errors.New("bankeid: trust store")

// NewTrust makes a trust store from root certificates and CRLs (DER).
// Every root must be a CA with keyCertSign; every CRL must be signed by
// one of them.
func NewTrust(roots [][]byte, crls [][]byte) (*Trust, error) {
	t := &Trust{roots: smx509.NewCertPool()}
	for _, der := range roots {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: root: %v", ErrTrust, err)
		}
		if !c.IsCA || c.KeyUsage&smx509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("%w: %q is not a CA with keyCertSign", ErrTrust, c.Subject.CommonName)
		}
		t.roots.AddCert(c)
		t.certs = append(t.certs, c)
	}
	for _, der := range crls {
		c, err := t.parseCRL(der)
		if err != nil {
			return nil, err
		}
		t.crls = append(t.crls, c)
	}
	return t, nil
}

// LoadTrust reads a trust directory (see Trust).
func LoadTrust(dir string) (*Trust, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTrust, err)
	}
	if len(entries) > maxTrustFiles {
		return nil, fmt.Errorf("%w: %d files (limit %d)", ErrTrust, len(entries), maxTrustFiles)
	}
	var roots, crls [][]byte
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.Type().IsRegular() || (ext != ".pem" && ext != ".crt" && ext != ".crl") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if fi, err := e.Info(); err != nil || fi.Size() > maxTrustFile {
			return nil, fmt.Errorf("%w: %s: unreadable or larger than %d bytes", ErrTrust, p, maxTrustFile)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTrust, err)
		}
		if ext == ".crl" {
			if blk, _ := pem.Decode(b); blk != nil {
				b = blk.Bytes
			}
			crls = append(crls, b)
			continue
		}
		for len(b) > 0 {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type == "CERTIFICATE" {
				roots = append(roots, blk.Bytes)
			}
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: no root certificate in %s", ErrTrust, dir)
	}
	return NewTrust(roots, crls)
}

// signatureOIDs maps the CRL's signature algorithm to smx509's.
var signatureOIDs = []struct {
	oid asn1.ObjectIdentifier
	alg smx509.SignatureAlgorithm
}{
	{asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}, smx509.SM2WithSM3},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, smx509.ECDSAWithSHA256},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, smx509.ECDSAWithSHA384},
}

// parseCRL parses a CRL (RFC 5280 §5) and checks its signature against
// the root that issued it. crypto/x509 parses SM2-signed CRLs (the
// algorithm stays unknown to it); gmsm checks the signature.
func (t *Trust) parseCRL(der []byte) (*crl, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: CRL: %v", ErrTrust, err)
	}
	var outer struct {
		TBS    asn1.RawValue
		Alg    pkix.AlgorithmIdentifier
		SigVal asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: CRL: outer structure", ErrTrust)
	}
	i := slices.IndexFunc(signatureOIDs, func(s struct {
		oid asn1.ObjectIdentifier
		alg smx509.SignatureAlgorithm
	}) bool {
		return s.oid.Equal(outer.Alg.Algorithm)
	})
	if i < 0 {
		return nil, fmt.Errorf("%w: CRL signature algorithm %v not supported", ErrTrust, outer.Alg.Algorithm)
	}
	for _, root := range t.certs {
		if string(root.RawSubject) != string(rl.RawIssuer) {
			continue
		}
		if err := root.CheckSignature(signatureOIDs[i].alg, rl.RawTBSRevocationList, rl.Signature); err == nil {
			return &crl{rl: rl, raw: der, signer: root}, nil
		}
	}
	return nil, fmt.Errorf("%w: CRL of %q is signed by no trusted root", ErrTrust, rl.Issuer.CommonName)
}

// Reasons the certificate checks give (Check.Code).
const (
	CodeCertMalformed = "cert_malformed"
	CodeCertUntrusted = "cert_untrusted"
	CodeCertUsage     = "cert_usage"
	CodeCertRevoked   = "cert_revoked"
	CodeCRLMissing    = "crl_missing"
	CodeCRLStale      = "crl_stale"
)

// CertError is a refused certificate with its Code.
type CertError struct {
	Code string
	Err  error
}

func (e *CertError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *CertError) Unwrap() error { return e.Err }

// VerifyCertificate parses the eID certificate and checks it: a chain to
// a trusted root valid at now (RFC 5280 §6, gmsm's smx509), the
// digitalSignature key usage, an SM2 or P-256 key, and revocation against
// the issuing root's CRL (§6.3), which must exist and be current: a kiosk
// without its authority's CRL cannot know the card is still valid, so it
// declines (fail closed).
func (t *Trust) VerifyCertificate(der []byte, now time.Time) (*smx509.Certificate, error) {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, &CertError{CodeCertMalformed, err}
	}
	if _, _, err := KeyAlgorithm(cert.PublicKey); err != nil {
		return nil, &CertError{CodeCertMalformed, err}
	}
	chains, err := cert.Verify(smx509.VerifyOptions{Roots: t.roots, CurrentTime: now,
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}})
	if err != nil {
		return nil, &CertError{CodeCertUntrusted, err}
	}
	if cert.IsCA || cert.KeyUsage&smx509.KeyUsageDigitalSignature == 0 || len(chains[0]) < 2 {
		return nil, &CertError{CodeCertUsage, errors.New("not an end-entity certificate with digitalSignature")}
	}
	issuer := chains[0][1]
	var list *crl
	for _, c := range t.crls {
		if c.signer.Equal(issuer) && (list == nil || c.rl.ThisUpdate.After(list.rl.ThisUpdate)) {
			list = c
		}
	}
	if list == nil {
		return nil, &CertError{CodeCRLMissing, fmt.Errorf("no CRL of %q", issuer.Subject.CommonName)}
	}
	if list.rl.NextUpdate.IsZero() || now.After(list.rl.NextUpdate) || now.Before(list.rl.ThisUpdate) {
		return nil, &CertError{CodeCRLStale, fmt.Errorf("CRL of %q valid %s to %s", issuer.Subject.CommonName,
			list.rl.ThisUpdate.Format(time.RFC3339), list.rl.NextUpdate.Format(time.RFC3339))}
	}
	for _, rc := range list.rl.RevokedCertificateEntries {
		if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return nil, &CertError{CodeCertRevoked, fmt.Errorf("serial %X revoked on %s", cert.SerialNumber,
				rc.RevocationTime.Format(time.DateOnly))}
		}
	}
	return cert, nil
}
