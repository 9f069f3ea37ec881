// Package pa implements passive authentication of an eMRTD (ICAO Doc
// 9303-11 §5.1, PKI of 9303-12): the SOD's CMS signature by the document
// signer (DS), the DS certificate's chain to a trusted CSCA, validity
// periods, and the hash of every data group read. It fails closed: the
// Result passes only when every check ran and passed.
package pa

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"kiosk/firmware/emrtd/cert"
)

// MaxTrustFileSize bounds one file of the trust directory.
const MaxTrustFileSize = 1 << 20

// MaxMasterListSize bounds a master list file (the ICAO PKD list is a
// few MiB).
const MaxMasterListSize = 16 << 20

// ErrNoTrustAnchors is returned when a trust directory yields no certificate.
var ErrNoTrustAnchors = errors.New("no CSCA certificate in trust store")

// LoadProblem is a trust-store file that could not be used. Problems do
// not fail the load (a missing CSCA can only make verification fail, never
// pass), but they are reported so an operator sees them.
type LoadProblem struct {
	File string
	Err  error
}

func (p LoadProblem) String() string { return p.File + ": " + p.Err.Error() }

// TrustStore holds the CSCA certificates trusted as PKI roots (9303-12 §5).
type TrustStore struct {
	certs      []*x509.Certificate
	crls       []*x509.RevocationList
	rejectedML []RejectedMasterList
	problems   []LoadProblem
	notAnchors []LoadProblem
	// Revocation policy defaults (Options overrides them).
	home      string
	crlMaxAge time.Duration
}

// SetHomeCountry names the kiosk's state (ISO 3166 alpha-2 or its MRZ
// code): under the default CRL policy a missing CRL of a CSCA of that
// country fails verification (crl_missing), other countries' warn.
func (s *TrustStore) SetHomeCountry(c string) { s.home = c }

// SetCRLMaxAge sets how long after thisUpdate a CRL without nextUpdate
// is fresh (0: DefaultCRLMaxAge).
func (s *TrustStore) SetCRLMaxAge(d time.Duration) { s.crlMaxAge = d }

// NotAnchors lists the certificate files (or their PEM blocks) of the
// directory that were read but not trusted: not a CA certificate with
// keyCertSign (RFC 5280 §4.2.1.9; 9303-12 §7.1.1), e.g. a document
// signer or master list signer certificate put there by mistake. They
// are no load problem (the directory stays usable) but are reported.
func (s *TrustStore) NotAnchors() []LoadProblem { return append([]LoadProblem(nil), s.notAnchors...) }

// NewTrustStore returns a store holding certs.
func NewTrustStore(certs ...*x509.Certificate) *TrustStore {
	s := &TrustStore{}
	for _, c := range certs {
		s.Add(c)
	}
	return s
}

// Add trusts c. Duplicates are ignored.
func (s *TrustStore) Add(c *x509.Certificate) {
	if c == nil {
		return
	}
	for _, o := range s.certs {
		if o.Equal(c) {
			return
		}
	}
	s.certs = append(s.certs, c)
}

// Certificates returns the trusted CSCA certificates.
func (s *TrustStore) Certificates() []*x509.Certificate {
	return append([]*x509.Certificate(nil), s.certs...)
}

// Problems lists the files that were not loaded and why.
func (s *TrustStore) Problems() []LoadProblem { return append([]LoadProblem(nil), s.problems...) }

// LoadTrustStore is LoadTrustStoreAt(dir, time.Now()).
func LoadTrustStore(dir string) (*TrustStore, error) { return LoadTrustStoreAt(dir, time.Now()) }

// LoadTrustStoreAt reads every regular file of dir (not descending, dot
// files ignored): "*.ml" files are ICAO master lists (9303-12 §9),
// verified at time at against the CSCAs of the directory's certificate
// files and then trusted; "*.crl" files are CRLs (PEM or DER), kept when
// signed by a trusted CSCA; every other file is PEM (one or more
// CERTIFICATE blocks) or DER certificates, read with package cert
// (brainpool, explicit EC parameters, RSA-PSS). Only CA certificates
// with keyCertSign become anchors (the others: NotAnchors). A file that cannot be used is
// listed in Problems (a refused master list also in RejectedMasterLists);
// an unreadable directory or one without any certificate is an error.
func LoadTrustStoreAt(dir string, at time.Time) (*TrustStore, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load trust store: %w", err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	s := &TrustStore{}
	var mls, crls []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, name)
		switch strings.ToLower(filepath.Ext(name)) {
		case ".ml":
			mls = append(mls, path)
			continue
		case ".crl":
			crls = append(crls, path)
			continue
		}
		certs, err := readCertFile(path)
		if err != nil {
			s.problems = append(s.problems, LoadProblem{File: path, Err: err})
			continue
		}
		for i, c := range certs {
			if msg := caProfileError(c); msg != "" {
				name := path
				if len(certs) > 1 {
					name = fmt.Sprintf("%s[%d]", path, i+1)
				}
				s.notAnchors = append(s.notAnchors, LoadProblem{File: name,
					Err: fmt.Errorf("%q is no trust anchor: it %s", c.Subject.String(), msg)})
				continue
			}
			s.Add(c)
		}
	}
	// Master lists need the CSCAs that issued their signers; CRLs need
	// every CSCA, including those from master lists.
	for _, path := range mls {
		b, err := readFile(path, MaxMasterListSize)
		if err == nil {
			_, err = s.LoadMasterList(filepath.Base(path), b, at)
		}
		if err != nil {
			s.problems = append(s.problems, LoadProblem{File: path, Err: err})
		}
	}
	for _, path := range crls {
		b, err := readFile(path, MaxTrustFileSize)
		var crl *x509.RevocationList
		if err == nil {
			crl, err = ParseCRL(b)
		}
		if err == nil {
			err = s.AddCRL(crl)
		}
		if err != nil {
			s.problems = append(s.problems, LoadProblem{File: path, Err: err})
		}
	}
	if len(s.certs) == 0 {
		msg := ""
		for _, p := range s.problems {
			msg += "; " + p.String()
		}
		return nil, fmt.Errorf("load trust store %s: %w%s", dir, ErrNoTrustAnchors, msg)
	}
	return s, nil
}

func readCertFile(path string) ([]*x509.Certificate, error) {
	b, err := readFile(path, MaxTrustFileSize)
	if err != nil {
		return nil, err
	}
	return parseCerts(b)
}

// readFile reads a regular file of at most limit bytes.
func readFile(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	if !strings.Contains(string(b), "-----BEGIN") {
		c, err := cert.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, not CERTIFICATE", n, blk.Type)
		}
		c, err := cert.Parse(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate block")
	}
	return out, nil
}
