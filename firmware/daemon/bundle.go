package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
)

// Trust bundles (docs/mqtt.md, "Trust bundles"): CSCA certificates, master
// lists and CRLs as one versioned document in an update_trust_bundle job,
// signed with the job by the hub's operations key. The kiosk refuses a
// version not newer than the installed one (rollback protection), writes
// the files to <state_dir>/trust-bundle/v<N> (aside, fsynced, renamed in),
// and reloads the trust store from there under the rule that refuses a
// weakening reload; a refused bundle is removed and the store in use stays.

const bundleDir = "trust-bundle"

// maxBundleFiles bounds a bundle.
const maxBundleFiles = 64

var bundleFileRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// bundleDoc is an update_trust_bundle job's document: file name → bytes
// (base64 in JSON).
type bundleDoc struct {
	Version int               `json:"version"`
	Files   map[string][]byte `json:"files"`
}

// parseBundleDoc checks an update_trust_bundle document from the network.
func parseBundleDoc(s string) (bundleDoc, error) {
	var doc bundleDoc
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.Version < 1 || len(doc.Files) == 0 || len(doc.Files) > maxBundleFiles {
		return bundleDoc{}, fmt.Errorf(`the document must be {"version":N≥1,"files":{name: base64}} with 1-%d files (%v)`, maxBundleFiles, err)
	}
	for name := range doc.Files {
		if !bundleFileRe.MatchString(name) || name == "installed.json" {
			return bundleDoc{}, fmt.Errorf("file name %q", name)
		}
	}
	return doc, nil
}

// installedBundle is <state_dir>/trust-bundle/installed.json.
type installedBundle struct {
	Version int    `json:"version"`
	Dir     string `json:"dir"`
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
func (d *Daemon) trustBundleJob(_ context.Context, j jobwire.Job) (jobs.Outcome, error) {
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
	dir := filepath.Join(root, "v"+strconv.Itoa(doc.Version))
	if err := writeBundleDir(root, dir, doc.Files); err != nil {
		return jobs.Outcome{}, fmt.Errorf("write the bundle (the store in use stays): %w", err)
	}
	in, err := d.trust.ReloadDir(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	prev, _ := readInstalledBundle(root)
	b, _ := json.Marshal(installedBundle{Version: doc.Version, Dir: dir})
	if err := writeFileAtomic(root, "installed.json", b); err != nil {
		// Loaded but not recorded: a restart goes back to the older
		// store, which the next offer of this job replaces again.
		return jobs.Outcome{}, fmt.Errorf("record the installed bundle: %w", err)
	}
	d.bundleVersion.Store(int64(doc.Version))
	if prev != nil && prev.Dir != dir && strings.HasPrefix(prev.Dir, root) {
		_ = os.RemoveAll(prev.Dir)
	}
	d.log.Info("trust bundle installed", "version", doc.Version, "cscas", in.CSCAs, "crls", in.CRLs)
	return jobs.Outcome{Result: map[string]any{"version": doc.Version, "cscas": in.CSCAs, "crls": in.CRLs}}, nil
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
