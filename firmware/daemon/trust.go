package daemon

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/firmware/emrtd/pa"
)

// trustStore holds the CSCA trust store loaded from eid.trust_dir. Chip
// reads take the current store when they start; a reload swaps it whole,
// so a read never sees half of an old and half of a new directory.
type trustStore struct {
	dir string
	cur atomic.Pointer[trustLoad]

	mu        sync.Mutex // serialises reloads and guards reloadErr
	reloadErr string     // the last reload's failure, "" after a good one
}

// trustLoad is one load of the directory.
type trustLoad struct {
	store  *pa.TrustStore
	err    string // why the directory was unusable at start-up
	loaded time.Time
}

// TrustInfo summarises the loaded trust store for health and replies.
type TrustInfo struct {
	CSCAs    int       `json:"cscas"`
	CRLs     int       `json:"crls"`
	LoadedAt time.Time `json:"loaded_at"`
	// Problems are files of the directory that could not be used.
	Problems []string `json:"problems,omitempty"`
	// StaleCRLs name the CSCAs whose CRL is past its next update: by
	// eid.stale_crl their documents are declined (or warned about) until
	// a fresh CRL is installed and the store reloaded.
	StaleCRLs []string `json:"stale_crls,omitempty"`
}

// openTrust loads dir. An unusable directory still yields a (empty)
// store: every document then fails passive authentication with its
// reason, and health says why.
func openTrust(dir string) *trustStore {
	t := &trustStore{dir: dir}
	s, err := pa.LoadTrustStore(dir)
	l := &trustLoad{store: s, loaded: time.Now()}
	if err != nil {
		l.store, l.err = pa.NewTrustStore(), fmt.Sprintf("trust store %s: %v", dir, err)
	}
	t.cur.Store(l)
	return t
}

// Store returns the store for a chip read about to start.
func (t *trustStore) Store() *pa.TrustStore { return t.cur.Load().store }

// Reload re-reads the directory. A directory that cannot be used leaves
// the loaded store in place, so a botched update never disables the
// kiosk's checks or trusts nothing; the error says why.
func (t *trustStore) Reload() (TrustInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := pa.LoadTrustStore(t.dir)
	if err != nil {
		t.reloadErr = err.Error()
		return t.info(t.cur.Load(), time.Now()), fmt.Errorf("reload trust store %s (keeping the store loaded at %s): %w",
			t.dir, t.cur.Load().loaded.UTC().Format(time.RFC3339), err)
	}
	l := &trustLoad{store: s, loaded: time.Now()}
	t.cur.Store(l)
	t.reloadErr = ""
	return t.info(l, time.Now()), nil
}

// Info describes the loaded store at time now.
func (t *trustStore) Info(now time.Time) TrustInfo { return t.info(t.cur.Load(), now) }

func (t *trustStore) info(l *trustLoad, now time.Time) TrustInfo {
	in := TrustInfo{CSCAs: len(l.store.Certificates()), CRLs: len(l.store.CRLs()), LoadedAt: l.loaded.UTC()}
	for _, p := range l.store.Problems() {
		in.Problems = append(in.Problems, p.String())
	}
	for _, c := range l.store.CRLs() {
		if !c.NextUpdate.IsZero() && now.After(c.NextUpdate) {
			in.StaleCRLs = append(in.StaleCRLs, c.Issuer.String())
		}
	}
	return in
}

// Component is the trust store's health: degraded when the directory was
// unusable, the last reload failed, or a CRL is stale.
func (t *trustStore) Component(now time.Time) Component {
	l := t.cur.Load()
	in := t.info(l, now)
	c := Component{State: "ok", Info: in}
	t.mu.Lock()
	reloadErr := t.reloadErr
	t.mu.Unlock()
	switch {
	case l.err != "":
		c.State, c.Detail = "degraded", l.err
	case reloadErr != "":
		c.State, c.Detail = "degraded", "last reload failed: "+reloadErr
	case len(in.StaleCRLs) > 0:
		c.State, c.Detail = "degraded", fmt.Sprintf("stale CRL of %d CSCA(s): install fresh CRLs and reload", len(in.StaleCRLs))
	}
	return c
}

// ReloadTrust re-reads eid.trust_dir (CSCA certificates, master lists,
// CRLs) without a restart: on SIGHUP (systemctl reload kioskd) and on the
// hub's reload_trust command. Chip reads under way finish with the store
// they started with.
func (d *Daemon) ReloadTrust() (TrustInfo, error) {
	if d.trust == nil {
		return TrustInfo{}, errors.New("no trust store: this kiosk runs no sessions")
	}
	d.notify("RELOADING=1")
	defer d.notify("READY=1")
	in, err := d.trust.Reload()
	if err != nil {
		d.log.Error("trust store not reloaded", "err", err)
		return in, err
	}
	for _, p := range in.Problems {
		d.log.Warn("trust store", "problem", p)
	}
	d.log.Info("trust store reloaded", "dir", d.trust.dir, "cscas", in.CSCAs, "crls", in.CRLs, "stale_crls", len(in.StaleCRLs))
	return in, nil
}
