package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/jobwire"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/issuer"
)

// Trust bundles through signed jobs: installed under the state dir and
// loaded; an older version refused; a bundle that would drop a CSCA's CRL
// refused as a weakening, the installed one staying; a bundle fetched by
// reference (hash and version checked) that brings a hub certificate; a
// restart keeps it all.
func TestTrustBundle(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	cfg, dir, trust := simKiosk(t, video, nil, "")
	trustDir := filepath.Join(dir, "card", "trust")
	r := start(t, cfg)
	r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })

	files := map[string][]byte{}
	ents, err := os.ReadDir(trustDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(trustDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	if _, ok := files["csca.crl"]; !ok {
		t.Fatalf("trust dir holds %v", ents)
	}
	now := time.Now()
	der, err := issuer.NewCRL(trust.CSCA, trust.CSCAKey, issuer.CRLOptions{ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour), Number: 2})
	if err != nil {
		t.Fatal(err)
	}
	files["csca.crl"] = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})

	obs := mqttObserver(t, r.d.broker.URL(), "kiosk/v1/kiosk-test/jobs/status")
	var waitFinal func(id string) string
	send := func(id string, version int, fs map[string][]byte) string {
		t.Helper()
		doc, err := json.Marshal(bundleDoc{Version: version, Files: fs})
		if err != nil {
			t.Fatal(err)
		}
		obs.publish(t, "kiosk/v1/kiosk-test/jobs/notify", string(sealJobDoc(t, dir, id, jobwire.KindTrustBundle, string(doc))))
		return waitFinal(id)
	}
	waitFinal = func(id string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			obs.mu.Lock()
			msgs := append([]string(nil), obs.msgs["kiosk/v1/kiosk-test/jobs/status"]...)
			obs.mu.Unlock()
			for _, m := range msgs {
				if strings.Contains(m, `"job_id":"`+id+`"`) && (strings.Contains(m, `"status":"succeeded"`) || strings.Contains(m, `"status":"rejected"`) || strings.Contains(m, `"status":"failed"`)) {
					return m
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no final status for %s", id)
		return ""
	}
	bundle := func() int { return eidHealth(t, r).Info.(TrustInfo).Bundle }

	if st := send("b2", 2, files); !strings.Contains(st, `"status":"succeeded"`) || !strings.Contains(st, `\"version\":2`) {
		t.Fatalf("bundle v2: %s", st)
	}
	v2 := filepath.Join(dir, "state", "trust-bundle", "v2")
	if bundle() != 2 || r.d.trust.Dir() != v2 {
		t.Fatalf("after v2: bundle %d, dir %s", bundle(), r.d.trust.Dir())
	}
	if st := send("b1", 1, files); !strings.Contains(st, `"status":"rejected"`) || !strings.Contains(st, "rollback refused") {
		t.Fatalf("older bundle: %s", st)
	}
	weaker := map[string][]byte{}
	for k, v := range files {
		if k != "csca.crl" {
			weaker[k] = v
		}
	}
	if st := send("b3", 3, weaker); !strings.Contains(st, `"status":"rejected"`) || !strings.Contains(st, "is gone while its CSCA stays") {
		t.Fatalf("weakening bundle: %s", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "trust-bundle", "v3")); !os.IsNotExist(err) {
		t.Fatalf("refused bundle left on disk: %v", err)
	}
	if bundle() != 2 || r.d.trust.Dir() != v2 || eidHealth(t, r).Info.(TrustInfo).CRLs != 1 {
		t.Fatalf("the installed bundle changed: %+v", eidHealth(t, r))
	}

	// v4 by reference (as a master list too large for a job document
	// travels), bringing a new hub authorization certificate: fetched,
	// checked against the sealed size and SHA-256, installed, and the
	// certificate joins the keyring that checks the hub's answers.
	hk, err := devkey.Create(filepath.Join(t.TempDir(), "hub2"), "", "hub-auth-2")
	if err != nil {
		t.Fatal(err)
	}
	hubPEM, err := os.ReadFile(hk.Cert)
	if err != nil {
		t.Fatal(err)
	}
	withHub := maps.Clone(files)
	withHub[bundleHubAuth] = hubPEM
	body, err := json.Marshal(bundleDoc{Version: 4, Files: withHub})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.ServeContent(w, req, "bundle.json", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	sum := sha256.Sum256(body)
	ref := func(id string, version int, size int, sha string) string {
		t.Helper()
		doc, _ := json.Marshal(bundleDoc{Version: version, URL: srv.URL + "/b.json", Size: int64(size), SHA256: sha})
		obs.publish(t, "kiosk/v1/kiosk-test/jobs/notify", string(sealJobDoc(t, dir, id, jobwire.KindTrustBundle, string(doc))))
		return waitFinal(id)
	}
	if st := ref("b4-bad-hash", 4, len(body), strings.Repeat("00", 32)); !strings.Contains(st, `"status":"rejected"`) || !strings.Contains(st, "SHA-256 does not match") {
		t.Fatalf("bundle with a wrong hash: %s", st)
	}
	if st := ref("b4-version", 5, len(body), hex.EncodeToString(sum[:])); !strings.Contains(st, `"status":"rejected"`) || !strings.Contains(st, "the job names v5") {
		t.Fatalf("bundle whose body has another version: %s", st)
	}
	if bundle() != 2 || hubKnows(r, "hub-auth-2") {
		t.Fatal("a refused bundle changed the kiosk")
	}
	if st := ref("b4", 4, len(body), hex.EncodeToString(sum[:])); !strings.Contains(st, `"status":"succeeded"`) || !strings.Contains(st, `\"hub_certs\":1`) {
		t.Fatalf("bundle v4 by reference: %s", st)
	}
	if bundle() != 4 || !hubKnows(r, "hub-auth-2") {
		t.Fatalf("after v4: bundle %d, hub keys %v", bundle(), r.d.presenceKeys.Load().Devices())
	}

	r.stop(t)
	r = start(t, cfg)
	if bundle() != 4 || r.d.trust.Dir() != filepath.Join(dir, "state", "trust-bundle", "v4") || !hubKnows(r, "hub-auth-2") {
		t.Fatalf("after a restart: bundle %d, dir %s", bundle(), r.d.trust.Dir())
	}
}

func hubKnows(r *running, id string) bool {
	k := r.d.presenceKeys.Load()
	return k != nil && slices.Contains(k.Devices(), id)
}
