package ctl

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kiosk/firmware/emrtd/cert"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/tlv"
)

// Staff tools for the eMRTD PKI: importing a national master list into a
// trust directory, and passive authentication of SOD and data group
// files. Their output forms are relied on by checks outside the project.

type importSkip struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

type importResult struct {
	MasterList string       `json:"master_list"`
	Verified   bool         `json:"verified"`
	Code       string       `json:"code,omitempty"`
	Reason     string       `json:"reason,omitempty"`
	Signer     string       `json:"signer,omitempty"`
	Root       string       `json:"root,omitempty"`
	Imported   int          `json:"imported"`
	Skipped    int          `json:"skipped"`
	Skips      []importSkip `json:"skips"`
	// NotAnchors are imported CSCAs that the trust store will not use
	// as anchors (not a CA certificate with keyCertSign).
	NotAnchors []string `json:"not_anchors"`
	Out        string   `json:"out"`
	Files      int      `json:"files"`
}

func eidTrustImport(e *env, args []string) int {
	fs := flag.NewFlagSet("eid trust import", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	mlPath := fs.String("master-list", "", "ICAO CSCA master list (CMS, DER/BER or PEM)")
	rootPath := fs.String("root", "", "the CSCA certificate that certifies the master list signer (DER or PEM)")
	out := fs.String("out", "", "trust directory to write the CSCAs into (created if missing)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	atFlag := fs.String("at", "", "verify the list at this time (RFC 3339; default now)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *mlPath == "" || *rootPath == "" || *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "usage: kioskctl eid trust import --master-list FILE --root CERT --out DIR [--json]")
		return ExitUsage
	}
	at := time.Now()
	if *atFlag != "" {
		t, err := time.Parse(time.RFC3339, *atFlag)
		if err != nil {
			fmt.Fprintf(e.stderr, "--at: %v\n", err)
			return ExitUsage
		}
		at = t
	}
	b, err := os.ReadFile(*mlPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "master list: %v\n", err)
		return ExitUsage
	}
	roots, err := readCertificates(*rootPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "root: %v\n", err)
		return ExitUsage
	}
	res := importResult{MasterList: *mlPath, Out: *out, Skips: []importSkip{}, NotAnchors: []string{}}
	ml, err := pa.VerifyMasterListWith(b, roots, at)
	if err != nil {
		res.Reason = err.Error()
		if me, ok := err.(*pa.MasterListError); ok {
			res.Code, res.Reason = me.Code, me.Reason
		}
		// The entries are still counted, so staff see what the list holds.
		if _, parsed, skipped, perr := pa.ParseMasterList(b); perr == nil {
			res.Imported, res.Skipped = 0, skipped
			for _, s := range parsed.Skipped {
				res.Skips = append(res.Skips, importSkip{s.Index, s.Reason})
			}
		}
		printImport(e, res, *asJSON)
		return ExitFail
	}
	res.Verified = true
	res.Signer, res.Root = ml.Signer.Subject.String(), ml.Issuer.Subject.String()
	for _, s := range ml.Skipped {
		res.Skips = append(res.Skips, importSkip{s.Index, s.Reason})
	}
	res.Skipped = len(ml.Skipped)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(e.stderr, "out: %v\n", err)
		return ExitUsage
	}
	written := map[string]bool{}
	for _, c := range ml.CSCAs {
		name := cscaFileName(c)
		if !written[name] {
			if err := writeFileAtomic(filepath.Join(*out, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})); err != nil {
				fmt.Fprintf(e.stderr, "write %s: %v\n", name, err)
				return ExitFail
			}
			written[name] = true
		}
		res.Imported++
		if !c.BasicConstraintsValid || !c.IsCA || !cert.HasExtension(c, cert.OIDKeyUsage) || c.KeyUsage&x509.KeyUsageCertSign == 0 {
			res.NotAnchors = append(res.NotAnchors, fmt.Sprintf("%s (%s)", c.Subject.String(), name))
		}
	}
	res.Files = len(written)
	printImport(e, res, *asJSON)
	return ExitOK
}

// cscaFileName names a CSCA file by its country and the start of its
// certificate's SHA-256, so a re-import overwrites instead of piling up.
func cscaFileName(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	country := cert.Country(c.RawSubject)
	if len(country) != 2 || strings.ContainsAny(country, "./\\") {
		country = "XX"
	}
	return fmt.Sprintf("csca-%s-%s.pem", country, hex.EncodeToString(h[:8]))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func printImport(e *env, r importResult, asJSON bool) {
	if asJSON {
		_ = json.NewEncoder(e.stdout).Encode(r)
		return
	}
	if !r.Verified {
		fmt.Fprintf(e.stdout, "master list %s does not verify: %s: %s\n", r.MasterList, r.Code, r.Reason)
		fmt.Fprintf(e.stdout, "imported 0, skipped %d\n", r.Skipped)
		return
	}
	fmt.Fprintf(e.stdout, "master list %s verified: signer %q, certified by %q\n", r.MasterList, r.Signer, r.Root)
	fmt.Fprintf(e.stdout, "imported %d, skipped %d\n", r.Imported, r.Skipped)
	for _, s := range r.Skips {
		fmt.Fprintf(e.stdout, "  skipped entry %d: %s\n", s.Index, s.Reason)
	}
	fmt.Fprintf(e.stdout, "wrote %d certificate files to %s\n", r.Files, r.Out)
	if len(r.NotAnchors) > 0 {
		fmt.Fprintf(e.stdout, "%d of them are not CA certificates with keyCertSign; the trust store keeps them out of the anchors:\n", len(r.NotAnchors))
		for _, n := range r.NotAnchors {
			fmt.Fprintf(e.stdout, "  %s\n", n)
		}
	}
}

// readCertificates reads one file of PEM CERTIFICATE blocks or one DER
// certificate, with package cert (brainpool roots).
func readCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(b), "-----BEGIN") {
		c, err := cert.Parse(b)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := cert.Parse(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return out, nil
}

// dgFlags collects --dg N=FILE.
type dgFlags map[int]string

func (d dgFlags) String() string { return fmt.Sprint(map[int]string(d)) }

func (d dgFlags) Set(v string) error {
	n, file, ok := strings.Cut(v, "=")
	num, err := strconv.Atoi(n)
	if !ok || err != nil || num < 1 || num > 16 || file == "" {
		return fmt.Errorf("want N=FILE with N in 1..16, got %q", v)
	}
	if _, dup := d[num]; dup {
		return fmt.Errorf("DG%d given twice", num)
	}
	d[num] = file
	return nil
}

type verifyCheck struct {
	Name   string `json:"name"`
	DG     int    `json:"dg,omitempty"`
	OK     bool   `json:"ok"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason"`
	Warn   bool   `json:"warning,omitempty"`
}

type verifyResult struct {
	Verified           bool           `json:"verified"`
	At                 time.Time      `json:"at"`
	AtSource           string         `json:"at_source"`
	SODOnly            bool           `json:"sod_only"`
	Failures           []string       `json:"failures"`
	SignatureAlgorithm string         `json:"signature_algorithm,omitempty"`
	Verifier           string         `json:"verifier,omitempty"`
	DS                 string         `json:"document_signer,omitempty"`
	CSCA               string         `json:"csca,omitempty"`
	Revocation         *pa.Revocation `json:"revocation"`
	Checks             []verifyCheck  `json:"checks"`
}

func eidVerify(e *env, args []string) int {
	fs := flag.NewFlagSet("eid verify", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	sodPath := fs.String("sod", "", "EF.SOD as read from the chip (tag 77)")
	dgs := dgFlags{}
	fs.Var(dgs, "dg", "a data group file as read, N=FILE (repeatable)")
	trustDir := fs.String("trust", "", "CSCA trust store directory")
	atFlag := fs.String("at", "", "verification time: RFC 3339, or \"signing\" (the SOD's signing time, else the signer's notBefore); default now")
	sodOnly := fs.Bool("sod-only", false, "check everything but the data group hashes")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	home := fs.String("home-country", "", "the kiosk's state (alpha-2 or MRZ code): a missing CRL of its CSCA declines")
	staleCRL := fs.String("stale-crl", "decline", "a CRL past its next update: decline or warn")
	missingCRL := fs.String("missing-crl", "home", "no CRL for the CSCA: home (decline for --home-country, warn otherwise), warn or decline")
	crlAge := fs.Duration("crl-max-age", pa.DefaultCRLMaxAge, "how long a CRL without nextUpdate counts as fresh")
	usage := func(msg string) int {
		fmt.Fprintf(e.stderr, "%s\nusage: kioskctl eid verify --sod FILE [--dg N=FILE ...] --trust DIR [--at RFC3339|signing] [--sod-only] [--json]\n", msg)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *sodPath == "" || *trustDir == "" || fs.NArg() > 0 {
		return usage("--sod and --trust are required")
	}
	if len(dgs) == 0 && !*sodOnly {
		return usage("give --dg N=FILE for the data groups read, or --sod-only")
	}
	stale, err := pa.ParseCRLPolicy(*staleCRL)
	if err != nil {
		return usage("--stale-crl: " + err.Error())
	}
	missing, err := pa.ParseCRLPolicy(*missingCRL)
	if err != nil {
		return usage("--missing-crl: " + err.Error())
	}
	sod, err := os.ReadFile(*sodPath)
	if err != nil {
		return usage("sod: " + err.Error())
	}
	if len(sod) > 0 && sod[0] == 0x30 {
		// A bare ContentInfo (the SOD without its tag 77): wrap it.
		sod = tlv.Encode(lds.TagSOD, sod)
	}
	files := map[int][]byte{}
	for n, path := range dgs {
		b, err := os.ReadFile(path)
		if err != nil {
			return usage(fmt.Sprintf("DG%d: %v", n, err))
		}
		files[n] = b
	}
	at, source := time.Now(), "now"
	switch *atFlag {
	case "":
	case "signing":
		t, src, err := pa.SigningTime(sod)
		if err != nil {
			// Not a usage error: the SOD is unreadable, which is a
			// verification failure reported below at the current time.
			src = "now (no signing time: " + err.Error() + ")"
			t = time.Now()
		}
		at, source = t, src
	default:
		t, err := time.Parse(time.RFC3339, *atFlag)
		if err != nil {
			return usage("--at: " + err.Error())
		}
		at, source = t, "--at"
	}
	// The directory (its master lists) is judged now; the document at at.
	trust, ok := loadTrust(e, *trustDir, *home)
	if !ok {
		return ExitUsage
	}
	trust.SetCRLMaxAge(*crlAge)
	r := pa.VerifyWith(sod, files, trust, pa.Options{At: at, StaleCRL: stale, MissingCRL: missing, SODOnly: *sodOnly})
	out := verifyResult{Verified: r.Passed, At: at.UTC(), AtSource: source, SODOnly: *sodOnly, Failures: r.Codes(),
		SignatureAlgorithm: r.SignatureAlgorithm, Verifier: r.Verifier, Revocation: r.Revocation}
	if out.Failures == nil {
		out.Failures = []string{}
	}
	if r.DS != nil {
		out.DS = r.DS.Subject.String()
	}
	if r.CSCA != nil {
		out.CSCA = r.CSCA.Subject.String()
	}
	for _, c := range r.Checks {
		out.Checks = append(out.Checks, verifyCheck{c.Name, c.DG, c.OK, c.Code, c.Reason, c.Warn})
	}
	if *asJSON {
		if err := json.NewEncoder(e.stdout).Encode(out); err != nil {
			return ExitFail
		}
	} else {
		verdict := "NOT VERIFIED"
		if r.Passed {
			verdict = "VERIFIED"
		}
		fmt.Fprintf(e.stdout, "%s  at %s (%s)\n", verdict, at.UTC().Format(time.RFC3339), source)
		for _, c := range r.Checks {
			fmt.Fprintf(e.stdout, "  %s\n", c.String())
		}
	}
	if !r.Passed {
		return ExitFail
	}
	return ExitOK
}
