package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/firmware/emrtd/pa"
)

// trustStore holds the CSCA trust store loaded from eid.trust_dir. Chip
// reads take the current store when they start; a reload swaps it whole,
// so a read never sees half of an old and half of a new directory.
type trustStore struct {
	dir string // guarded by reloadMu after openTrust (a bundle moves it)
	// home and crlMaxAge: eid.home_country, eid.crl_max_age.
	home      string
	crlMaxAge time.Duration
	cur       atomic.Pointer[trustLoad]

	reloadMu  sync.Mutex             // serialises reloads
	reloadErr atomic.Pointer[string] // the last reload's failure; nil after a good one
}

// trustLoad is one load of the directory.
type trustLoad struct {
	store  *pa.TrustStore
	err    string // why the directory was unusable at start-up
	loaded time.Time
}

// TrustInfo summarises the loaded trust store for health and replies.
type TrustInfo struct {
	// Bundle is the installed trust bundle's version (0: eid.trust_dir).
	Bundle   int       `json:"bundle"`
	CSCAs    int       `json:"cscas"`
	CRLs     int       `json:"crls"` // CSCAs with a CRL
	LoadedAt time.Time `json:"loaded_at"`
	// Problems are files of the directory that could not be used.
	Problems []string `json:"problems,omitempty"`
	// StaleCRLs name the CSCAs whose newest CRL is past its next update:
	// by eid.stale_crl their documents are declined (or warned about)
	// until a fresh CRL is installed and the store reloaded.
	StaleCRLs []string `json:"stale_crls,omitempty"`
}

// openTrust loads dir. An unusable directory still yields an (empty)
// store: every document then fails passive authentication with its
// reason, and health says why.
//
// home and crlMaxAge (eid.home_country, eid.crl_max_age) are applied to
// every load: the revocation policy of pa.TrustStore.
func openTrust(dir, home string, crlMaxAge time.Duration) *trustStore {
	t := &trustStore{dir: dir, home: home, crlMaxAge: crlMaxAge}
	s, err := t.load()
	l := &trustLoad{store: s, loaded: time.Now()}
	if err != nil {
		l.store, l.err = t.policy(pa.NewTrustStore()), fmt.Sprintf("trust store %s: %v", dir, err)
	}
	t.cur.Store(l)
	return t
}

func (t *trustStore) load() (*pa.TrustStore, error) { return t.loadDir(t.dir) }

func (t *trustStore) loadDir(dir string) (*pa.TrustStore, error) {
	s, err := pa.LoadTrustStore(dir)
	if err != nil {
		return nil, err
	}
	return t.policy(s), nil
}

func (t *trustStore) policy(s *pa.TrustStore) *pa.TrustStore {
	s.SetHomeCountry(t.home)
	s.SetCRLMaxAge(t.crlMaxAge)
	return s
}

// Store returns the store for a chip read about to start.
func (t *trustStore) Store() *pa.TrustStore { return t.cur.Load().store }

// Reload re-reads the directory and swaps the store in only when the new
// one is whole: a directory that cannot be read, a file that cannot be
// used (a CRL copied in half-written, a master list that does not
// verify), or a CSCA that kept its certificate but lost its CRL all leave
// the loaded store in place, so a botched update never weakens the checks.
// The error says why.
func (t *trustStore) Reload() (TrustInfo, error) {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	return t.reloadFrom(t.dir)
}

// ReloadDir loads another directory (a trust bundle) under the same
// rules as Reload and, when it is taken, reloads from it from now on.
func (t *trustStore) ReloadDir(dir string) (TrustInfo, error) {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	in, err := t.reloadFrom(dir)
	if err == nil {
		t.dir = dir
	}
	return in, err
}

// Dir is the directory the store loads from.
func (t *trustStore) Dir() string {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	return t.dir
}

func (t *trustStore) reloadFrom(dir string) (TrustInfo, error) {
	old := t.cur.Load()
	fail := func(err error) (TrustInfo, error) {
		msg := err.Error()
		t.reloadErr.Store(&msg)
		return t.info(old, time.Now()), fmt.Errorf("reload trust store %s (keeping the store loaded at %s): %w",
			dir, old.loaded.UTC().Format(time.RFC3339), err)
	}
	s, err := t.loadDir(dir)
	if err != nil {
		return fail(err)
	}
	if ps := s.Problems(); len(ps) > 0 {
		var names []string
		for _, p := range ps {
			names = append(names, p.String())
		}
		return fail(fmt.Errorf("unusable files: %s", strings.Join(names, "; ")))
	}
	if lost := lostCRLs(old.store, s); len(lost) > 0 {
		return fail(fmt.Errorf("the CRL of %s is gone while its CSCA stays", strings.Join(lost, ", ")))
	}
	l := &trustLoad{store: s, loaded: time.Now()}
	t.cur.Store(l)
	t.reloadErr.Store(nil)
	return t.info(l, time.Now()), nil
}

// lostCRLs names the CSCAs of next that old had a CRL for and next has
// not.
func lostCRLs(old, next *pa.TrustStore) []string {
	var lost []string
	for _, c := range old.CurrentCRLs() {
		hasCA, hasCRL := false, false
		for _, ca := range next.Certificates() {
			hasCA = hasCA || bytes.Equal(ca.RawSubject, c.RawIssuer)
		}
		for _, n := range next.CurrentCRLs() {
			hasCRL = hasCRL || bytes.Equal(n.RawIssuer, c.RawIssuer)
		}
		if hasCA && !hasCRL {
			lost = append(lost, fmt.Sprintf("%q", c.Issuer.String()))
		}
	}
	return lost
}

func (t *trustStore) info(l *trustLoad, now time.Time) TrustInfo {
	cur := l.store.CurrentCRLs()
	in := TrustInfo{CSCAs: len(l.store.Certificates()), CRLs: len(cur), LoadedAt: l.loaded.UTC()}
	for _, p := range l.store.Problems() {
		in.Problems = append(in.Problems, p.String())
	}
	for _, c := range cur {
		if now.After(pa.CRLDue(c, t.crlMaxAge)) {
			in.StaleCRLs = append(in.StaleCRLs, c.Issuer.String())
		}
	}
	return in
}

// Component is the trust store's health: degraded when the directory was
// unusable or had unusable files, the last reload failed, or a CRL is
// stale.
func (t *trustStore) Component(now time.Time) Component {
	l := t.cur.Load()
	in := t.info(l, now)
	c := Component{State: "ok", Info: in}
	switch reloadErr := t.reloadErr.Load(); {
	case l.err != "":
		c.State, c.Detail = "degraded", l.err
	case reloadErr != nil:
		c.State, c.Detail = "degraded", "last reload failed: "+*reloadErr
	case len(in.Problems) > 0:
		c.State, c.Detail = "degraded", fmt.Sprintf("%d unusable file(s) in the trust directory", len(in.Problems))
	case len(in.StaleCRLs) > 0:
		c.State, c.Detail = "degraded", fmt.Sprintf("stale CRL of %d CSCA(s): install fresh CRLs and reload", len(in.StaleCRLs))
	}
	return c
}

// errStopping refuses work that would outlive the shutdown under way.
var errStopping = errors.New("kioskd is stopping")

// ReloadTrust re-reads eid.trust_dir (CSCA certificates, master lists,
// CRLs) without a restart: on SIGHUP (systemctl reload kioskd) and on the
// hub's reload_trust command. Chip reads under way finish with the store
// they started with. It logs its outcome.
func (d *Daemon) ReloadTrust() (TrustInfo, error) {
	if d.trust == nil {
		err := errors.New("no trust store: this kiosk runs no sessions")
		d.log.Warn("trust store not reloaded", "err", err)
		return TrustInfo{}, err
	}
	// systemd hears RELOADING=1 … READY=1, never READY=1 after STOPPING=1.
	d.lifeMu.Lock()
	if d.stopping {
		d.lifeMu.Unlock()
		d.log.Warn("trust store not reloaded", "err", errStopping)
		return TrustInfo{}, errStopping
	}
	d.notify("RELOADING=1")
	d.lifeMu.Unlock()
	in, err := d.trust.Reload()
	d.lifeMu.Lock()
	if !d.stopping {
		d.notify("READY=1")
	}
	d.lifeMu.Unlock()
	if err != nil {
		d.log.Error("trust store not reloaded", "err", err)
		return in, err
	}
	d.log.Info("trust store reloaded", "dir", d.trust.Dir(), "cscas", in.CSCAs, "crls", in.CRLs, "stale_crls", len(in.StaleCRLs))
	return in, nil
}
