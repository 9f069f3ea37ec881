package daemon

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"kiosk/firmware/enrollwire"
	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txreport"
	"kiosk/firmware/update"
)

// Trust bundles (docs/mqtt.md, "Trust bundles"): CSCA certificates, master
// lists, CRLs and the hub's authorization certificates as one versioned
// document in an update_trust_bundle job, signed with the job by the hub's
// operations key; a bundle too large for a job document travels by
// reference (URL, size and SHA-256 in the sealed job). The kiosk refuses a
// version not newer than the installed one (rollback protection), writes
// the files to <state_dir>/trust-bundle/v<N> (aside, fsynced, renamed in),
// and reloads the trust store from there under the rule that refuses a
// weakening reload; a refused bundle is removed and the store in use stays.

const bundleDir = "trust-bundle"

// maxBundleFiles bounds a bundle.
const maxBundleFiles = 64

var bundleFileRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// bundleHubAuth is the file of a bundle that holds the hub's authorization
// certificates (PEM): they join hub.auth_cert in verifying authorization
// responses, acks and presence. It is kept out of the trust store's
// directory (it holds no CSCA).
const bundleHubAuth = "hub-auth.pem"

// maxBundleFetch bounds a bundle fetched by reference (master lists are
// a few MiB).
const maxBundleFetch = 64 << 20

// bundleDoc is an update_trust_bundle job's document: file name → bytes
// (base64 in JSON), or a reference to such a document (URL, size,
// SHA-256) whose fetched body holds the same version and the files.
type bundleDoc struct {
	Version int               `json:"version"`
	Files   map[string][]byte `json:"files,omitempty"`
	URL     string            `json:"url,omitempty"`
	Size    int64             `json:"size,omitempty"`
	SHA256  string            `json:"sha256,omitempty"`
}

// parseBundleDoc checks an update_trust_bundle document from the network.
func parseBundleDoc(s string) (bundleDoc, error) {
	var doc bundleDoc
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.Version < 1 {
		return bundleDoc{}, fmt.Errorf(`the document must be {"version":N≥1,"files":{name: base64}} or {"version":N≥1,"url":…,"size":…,"sha256":…} (%v)`, err)
	}
	if doc.URL != "" || doc.Size != 0 || doc.SHA256 != "" {
		if len(doc.Files) != 0 {
			return bundleDoc{}, errors.New("a bundle has files or a url, not both")
		}
		if err := (update.Doc{URL: doc.URL, Size: doc.Size, SHA256: doc.SHA256}).Check(maxBundleFetch); err != nil {
			return bundleDoc{}, fmt.Errorf("bundle reference: %w", err)
		}
		return doc, nil
	}
	if len(doc.Files) == 0 || len(doc.Files) > maxBundleFiles {
		return bundleDoc{}, fmt.Errorf("a bundle holds 1-%d files, not %d", maxBundleFiles, len(doc.Files))
	}
	for name := range doc.Files {
		if !bundleFileRe.MatchString(name) || name == "installed.json" {
			return bundleDoc{}, fmt.Errorf("file name %q", name)
		}
	}
	if b, ok := doc.Files[bundleHubAuth]; ok {
		if _, err := parseHubAuth(b); err != nil {
			return bundleDoc{}, err
		}
		if len(doc.Files) == 1 {
			return bundleDoc{}, errors.New("a bundle holds the whole trust store, not only " + bundleHubAuth)
		}
	}
	return doc, nil
}

// parseHubAuth reads a bundle's hub authorization certificates: at least
// one, each one the hub may sign with (P-256, in its validity).
func parseHubAuth(b []byte) ([]*x509.Certificate, error) {
	certs, err := enrollwire.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bundleHubAuth, err)
	}
	for _, c := range certs {
		if _, err := txreport.NewDevice(c); err != nil {
			return nil, fmt.Errorf("%s: %w", bundleHubAuth, err)
		}
	}
	return certs, nil
}

// fetchBundle downloads a bundle by reference into <root>/.download
// (resumable, size and SHA-256 checked) and returns the document it holds.
func fetchBundle(ctx context.Context, root string, ref bundleDoc) (bundleDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	path, err := update.Fetch(ctx, &http.Client{}, update.Doc{URL: ref.URL, Size: ref.Size, SHA256: ref.SHA256},
		filepath.Join(root, ".download"), func(int64, int64) {})
	if err != nil {
		return bundleDoc{}, err
	}
	defer os.Remove(path)
	b, err := os.ReadFile(path)
	if err != nil {
		return bundleDoc{}, err
	}
	doc, err := parseBundleDoc(string(b))
	switch {
	case err != nil:
		return bundleDoc{}, fmt.Errorf("fetched bundle: %w", err)
	case doc.URL != "":
		return bundleDoc{}, errors.New("fetched bundle: a reference, not the files")
	case doc.Version != ref.Version:
		return bundleDoc{}, fmt.Errorf("fetched bundle is v%d, the job names v%d", doc.Version, ref.Version)
	}
	return doc, nil
}

// installedBundle is <state_dir>/trust-bundle/installed.json.
type installedBundle struct {
	Version int    `json:"version"`
	Dir     string `json:"dir"`
	HubAuth string `json:"hub_auth,omitempty"` // the bundle's hub-auth.pem, if it had one
}

// bundleHubAuthCerts are the installed bundle's hub authorization
// certificates (none without a bundle or without that file).
func (d *Daemon) bundleHubAuthCerts() ([]*x509.Certificate, error) {
	ib, err := readInstalledBundle(d.bundleRoot())
	if err != nil || ib == nil || ib.HubAuth == "" {
		return nil, err
	}
	b, err := os.ReadFile(ib.HubAuth)
	if err != nil {
		return nil, err
	}
	return parseHubAuth(b)
}

func (d *Daemon) bundleRoot() string { return filepath.Join(d.cfg.Tx.StateDir, bundleDir) }

func readInstalledBundle(root string) (*installedBundle, error) {
	b, err := os.ReadFile(filepath.Join(root, "installed.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ib installedBundle
	if err := json.Unmarshal(b, &ib); err != nil {
		return nil, fmt.Errorf("installed.json: %w", err)
	}
	return &ib, nil
}

// trustDir is where the trust store loads from at start: the installed
// bundle, else eid.trust_dir.
func (d *Daemon) trustDir() string {
	ib, err := readInstalledBundle(d.bundleRoot())
	if err != nil {
		d.log.Error("trust bundle record unreadable: using eid.trust_dir", "err", err)
		return d.cfg.EID.TrustDir
	}
	if ib == nil {
		return d.cfg.EID.TrustDir
	}
	d.bundleVersion.Store(int64(ib.Version))
	return ib.Dir
}

// trustBundleJob installs a trust bundle.
func (d *Daemon) trustBundleJob(ctx context.Context, j jobwire.Job) (jobs.Outcome, error) {
	if d.trust == nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonUnsupported, "this kiosk runs no sessions")
	}
	doc, err := parseBundleDoc(j.Doc)
	if err != nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
	}
	d.bundleMu.Lock()
	defer d.bundleMu.Unlock()
	if cur := int(d.bundleVersion.Load()); doc.Version <= cur {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "bundle v%d is not newer than the installed v%d (rollback refused)", doc.Version, cur)
	}
	root := d.bundleRoot()
	if doc.URL != "" {
		if doc, err = fetchBundle(ctx, root, doc); err != nil {
			// What the server holds is not what the sealed job names.
			if errors.Is(err, update.ErrHashMismatch) || errors.Is(err, update.ErrTruncated) || errors.Is(err, update.ErrOversize) ||
				strings.HasPrefix(err.Error(), "fetched bundle") {
				return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
			}
			return jobs.Outcome{}, fmt.Errorf("fetch the bundle (the store in use stays): %w", err)
		}
	}
	files := maps.Clone(doc.Files)
	hubAuth, withHubAuth := files[bundleHubAuth]
	delete(files, bundleHubAuth)
	var hubCerts []*x509.Certificate
	if withHubAuth {
		if hubCerts, err = parseHubAuth(hubAuth); err != nil {
			return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
		}
		if d.presenceKeys.Load() == nil {
			return jobs.Outcome{}, jobs.Reject(jobwire.ReasonUnsupported, "this kiosk verifies no hub signatures (simulation without hub.auth_cert)")
		}
	}
	dir := filepath.Join(root, "v"+strconv.Itoa(doc.Version))
	if err := writeBundleDir(root, dir, files); err != nil {
		return jobs.Outcome{}, fmt.Errorf("write the bundle (the store in use stays): %w", err)
	}
	in, err := d.trust.ReloadDir(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	rec := installedBundle{Version: doc.Version, Dir: dir}
	if withHubAuth {
		// Beside the store's directory: the trust store reads every file
		// in it as a CSCA, master list or CRL.
		name := "v" + strconv.Itoa(doc.Version) + "-" + bundleHubAuth
		if err := writeFileAtomic(root, name, hubAuth); err != nil {
			_ = os.RemoveAll(dir)
			return jobs.Outcome{}, fmt.Errorf("write the hub certificates (the store in use stays): %w", err)
		}
		rec.HubAuth = filepath.Join(root, name)
	}
	prev, _ := readInstalledBundle(root)
	b, _ := json.Marshal(rec)
	if err := writeFileAtomic(root, "installed.json", b); err != nil {
		// Loaded but not recorded: a restart goes back to the older
		// store, which the next offer of this job replaces again.
		return jobs.Outcome{}, fmt.Errorf("record the installed bundle: %w", err)
	}
	d.bundleVersion.Store(int64(doc.Version))
	// The hub's new certificates join the ones in use (a key retires
	// with hub.auth_cert, not by a bundle: a bundle cannot lock the kiosk
	// out of its hub).
	for _, c := range hubCerts {
		_ = d.presenceKeys.Load().Add(c) // checked by parseHubAuth
	}
	if prev != nil && prev.Dir != dir && strings.HasPrefix(prev.Dir, root) {
		_ = os.RemoveAll(prev.Dir)
	}
	if prev != nil && prev.HubAuth != "" && prev.HubAuth != rec.HubAuth && strings.HasPrefix(prev.HubAuth, root) {
		_ = os.Remove(prev.HubAuth)
	}
	d.log.Info("trust bundle installed", "version", doc.Version, "cscas", in.CSCAs, "crls", in.CRLs, "hub_certs", len(hubCerts))
	return jobs.Outcome{Result: map[string]any{"version": doc.Version, "cscas": in.CSCAs, "crls": in.CRLs, "hub_certs": len(hubCerts)}}, nil
}

// writeBundleDir writes files into a new directory beside dir, fsyncs
// them, and renames it to dir.
func writeBundleDir(root, dir string, files map[string][]byte) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(root, ".incoming-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name, b := range files {
		f, err := os.OpenFile(filepath.Join(tmp, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	_ = os.RemoveAll(dir) // a leftover of an earlier failed attempt
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(root)
}

func writeFileAtomic(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
