package hubd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/internal/fleetsim"
	"kiosk/provisioning/ctl"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
)

// kioskhub with fleet jobs: the operator API (token required) creates a
// group job that three kiosks (the real job runner over the real hub
// client) carry out through mosquitto; /metrics carries the named series.
func TestFleetJobsThroughKioskhub(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	ids := []string{"kiosk-f1", "kiosk-f2", "kiosk-f3"}
	f := newFleetKeys(t, append(slices.Clone(ids), "kiosk-tx"))
	dir, auth := f.dir, f.auth
	token := f.token
	addr := freeAddr(t)
	cfg, err := hubd.Parse(fmt.Appendf(nil, `mode = "simulation"
[store]
kind = "bolt"
path = %q
[mqtt]
brokers = [%q]
%s
[fleet.groups]
branch-1 = ["kiosk-f1", "kiosk-f2", "kiosk-f3"]
`, filepath.Join(dir, "hub.db"), b.URL(), f.conf(addr)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	runHub(t, ctx, &wg, cfg)
	startJobKiosks(t, ctx, &wg, b.URL(), f, ids)

	base := "http://" + addr
	call := func(method, path, tok, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewBufferString(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := call("POST", "/fleet/jobs", "", `{"kind":"ping","group":"branch-1"}`); code != http.StatusUnauthorized {
		t.Fatalf("job without a token: %d", code)
	}
	if code, _ := call("POST", "/fleet/jobs", "wrong"+token, `{"kind":"ping","group":"branch-1"}`); code != http.StatusUnauthorized {
		t.Fatalf("job with a wrong token: %d", code)
	}
	if code, body := call("POST", "/fleet/jobs", token, `{"kind":"nope","group":"branch-1"}`); code != http.StatusBadRequest || !strings.Contains(string(body), "unknown kind") {
		t.Fatalf("unknown kind: %d %s", code, body)
	}
	// Wait until the kiosks are seen online, so the job reaches them now.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := call("GET", "/fleet/devices", token, "")
		if strings.Count(string(body), `"online":true`) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := call("POST", "/fleet/jobs", token, `{"id":"ping-1","kind":"ping","group":"branch-1","ttl":"5m"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var st hubd.JobStatus
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, body := call("GET", "/fleet/jobs/ping-1", token, "")
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("status %s: %v", body, err)
		}
		if st.Summary.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not done: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Summary.Counts[jobwire.StatusSucceeded] != 3 {
		t.Fatalf("summary %+v", st.Summary)
	}

	// The operator's tool over the same API.
	kioskctl := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		n := 2 // the command's words, then the connection flags
		if args[1] == "job" || args[1] == "config" || args[1] == "tx" || args[1] == "group" {
			n = 3
		}
		full := append(append(slices.Clone(args[:n]), "--hub", base, "--token-file", filepath.Join(dir, "token")), args[n:]...)
		code := ctl.Main(full, nil, &out, &errb, "test")
		return code, out.String() + errb.String()
	}
	if code, out := kioskctl("fleet", "job", "create", "--kind", "ping", "--group", "branch-1", "--wait"); code != 0 || !strings.Contains(out, "succeeded 3") {
		t.Fatalf("kioskctl fleet job create --wait: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "list", "--json"); code != 0 || strings.Count(out, `"online":true`) != 3 {
		t.Fatalf("kioskctl fleet list: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "job", "status", "ping-1"); code != 0 || !strings.Contains(out, "kiosk-f2") || strings.Count(out, "  succeeded  ") != 3 {
		t.Fatalf("kioskctl fleet job status: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "job", "cancel", "ping-1"); code != 0 || !strings.Contains(out, "0 device(s) not offered yet") {
		t.Fatalf("kioskctl fleet job cancel: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "job", "status", "nope"); code != 1 || !strings.Contains(out, "HTTP 404") {
		t.Fatalf("unknown job: %d\n%s", code, out)
	}
	// Desired configuration: v1 applied everywhere, v2 (invalid) refused
	// everywhere, the applied version stays v1.
	if code, out := kioskctl("fleet", "config", "set", "--group", "branch-1", "--wait", "policy.card_timeout=45s"); code != 0 || !strings.Contains(out, "config v1") {
		t.Fatalf("config set v1: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "config", "set", "--group", "branch-1", "--wait", "policy.time_extensions=99"); code != 1 || !strings.Contains(out, "rejected 3") {
		t.Fatalf("config set v2: %d\n%s", code, out)
	}
	code, out := kioskctl("fleet", "config", "get")
	if code != 0 || !strings.Contains(out, "desired: v2") || strings.Count(out, "  v1  ") != 3 || strings.Count(out, "v2: bad_document: offending keys policy.time_extensions") != 3 {
		t.Fatalf("config get: %d\n%s", code, out)
	}
	prevOK := 3 + 3

	// A group stored at the hub wins over the configuration's.
	if code, out := kioskctl("fleet", "group", "set", "--device", "kiosk-f2,kiosk-f3", "branch-1"); code != 0 {
		t.Fatalf("group set: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "group", "list"); code != 0 || !strings.Contains(out, "kiosk-f2,kiosk-f3") || !strings.Contains(out, "config (overridden)") {
		t.Fatalf("group list: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "job", "create", "--id", "grp-1", "--kind", "ping", "--group", "branch-1", "--wait"); code != 0 || !strings.Contains(out, "succeeded 2") {
		t.Fatalf("job for the stored group: %d\n%s", code, out)
	}
	if code, out := kioskctl("fleet", "group", "set", "branch-1"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("group removal: %d\n%s", code, out)
	}
	prevOK += 2

	// fleet watch: streamed, not polled; the job's creation and its
	// statuses arrive as they happen.
	watched := make(chan string, 1)
	go func() {
		code, out := kioskctl("fleet", "watch", "--json", "--count", "4")
		watched <- fmt.Sprintf("%d\n%s", code, out)
	}()
	time.Sleep(500 * time.Millisecond) // the stream is open
	if code, out := kioskctl("fleet", "job", "create", "--id", "watch-1", "--kind", "ping", "--group", "branch-1", "--wait"); code != 0 {
		t.Fatalf("job for watch: %d\n%s", code, out)
	}
	select {
	case got := <-watched:
		if !strings.HasPrefix(got, "0\n") || !strings.Contains(got, `{"kind":"job","job_id":"watch-1","status":"created"`) ||
			strings.Count(got, `"job_id":"watch-1","device":"kiosk-f`) != 3 || strings.Count(got, `"online":true`) != 3 {
			t.Fatalf("fleet watch: %s", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fleet watch saw no events")
	}
	prevOK += 3

	// fleet tx tail: a long poll that answers as the hub applies
	// transactions (and --since shows the recent ones first).
	authRing, err := txreport.LoadKeyringFile(auth.Cert)
	if err != nil {
		t.Fatal(err)
	}
	k := startKiosk(t, ctx, &wg, []string{b.URL()}, dir, "kiosk-tx", authRing)
	tailed := make(chan string, 1)
	go func() {
		code, out := kioskctl("fleet", "tx", "tail", "--json", "--count", "2", "--since", "1m")
		tailed <- fmt.Sprintf("%d\n%s", code, out)
	}()
	time.Sleep(500 * time.Millisecond) // the tail is waiting
	for n := range 2 {
		tx := fmt.Sprintf("tail-%d", n)
		if err := k.flow.Commit(ctx, fleetsim.Report(k.id, tx, 100, txflow.Authorization{Reason: "offline_disabled"}, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-tailed:
		var lines []hubd.TxLine
		code, rest, _ := strings.Cut(got, "\n")
		for l := range strings.Lines(rest) {
			var x hubd.TxLine
			if json.Unmarshal([]byte(l), &x) == nil {
				lines = append(lines, x)
			}
		}
		if code != "0" || len(lines) != 2 || lines[0].TxID == lines[1].TxID || !strings.HasPrefix(lines[0].TxID, "tail-") ||
			!strings.HasPrefix(lines[1].TxID, "tail-") || lines[0].Terminal != "kiosk-tx" || lines[0].Decision != "declined" {
			t.Fatalf("fleet tx tail: %s", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fleet tx tail did not see the transactions")
	}
	if code, out := kioskctl("fleet", "tx", "tail", "--since", "1m", "--count", "2", "--terminal", "kiosk-tx"); code != 0 ||
		!strings.Contains(out, "RECEIVED") || !strings.Contains(out, "tail-1") {
		t.Fatalf("fleet tx tail (table): %d\n%s", code, out)
	}

	// Online: the three job kiosks and the one that paid for the tail.
	// The job counter follows the stored status (the event comes after
	// the store write that `--wait` sees), so the scrape may be retried.
	wants := []string{"kioskhub_kiosks_online 4", fmt.Sprintf(`kioskhub_job_outcomes_total{status="succeeded"} %d`, 3+prevOK),
		"kioskhub_tx_received_total", "kioskhub_tx_applied_total", "kioskhub_tx_duplicates_total", "kioskhub_auth_duration_seconds_bucket"}
	var lacking []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body = call("GET", "/metrics", "", "")
		if code != http.StatusOK {
			t.Fatalf("metrics: %d", code)
		}
		lacking = lacking[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				lacking = append(lacking, want)
			}
		}
		if len(lacking) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range lacking {
		t.Errorf("metrics lack %q", want)
	}
}

// fleetKeys are a fleet test's keys and token: the hub's authorization
// and operations keys, the kiosks' device keys (dir/kiosks, certificates
// in devices) and the operator API's bearer token.
type fleetKeys struct {
	dir, devices, token string
	auth, ops           devkey.Files
}

func newFleetKeys(t *testing.T, kiosks []string) fleetKeys {
	t.Helper()
	f := fleetKeys{dir: t.TempDir(), token: strings.Repeat("t0k3n", 8)}
	f.devices = filepath.Join(f.dir, "devices")
	var err error
	if f.auth, err = devkey.Create(filepath.Join(f.dir, "auth"), filepath.Join(f.dir, "unused"), "hub-auth"); err != nil {
		t.Fatal(err)
	}
	if f.ops, err = devkey.Create(filepath.Join(f.dir, "ops"), filepath.Join(f.dir, "unused"), "hub-operations"); err != nil {
		t.Fatal(err)
	}
	for _, id := range kiosks {
		if _, err := devkey.Create(filepath.Join(f.dir, "kiosks"), f.devices, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, "token"), []byte(f.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// conf is the [keys] and [http] sections of a kioskhub serving the
// operator API on addr.
func (f fleetKeys) conf(addr string) string {
	return fmt.Sprintf(`[keys]
auth_key = %q
auth_cert = %q
operations_key = %q
operations_cert = %q
devices = %q
[http]
listen = %q
operator_token_file = %q
`, f.auth.Key, f.auth.Cert, f.ops.Key, f.ops.Cert, f.devices, addr, filepath.Join(f.dir, "token"))
}

// runHub runs kioskhub in this process until ctx ends, and waits until
// it serves.
func runHub(t *testing.T, ctx context.Context, wg *sync.WaitGroup, cfg hubd.Config) {
	t.Helper()
	ready := make(chan struct{})
	wg.Go(func() {
		if err := hubd.Run(ctx, cfg, hubd.Options{Ready: func(string) { close(ready) }}); err != nil {
			t.Errorf("kioskhub: %v", err)
		}
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("kioskhub not ready")
	}
}

// startJobKiosks runs, for each id, the real job runner over the real hub
// client: ping answers the kiosk's id; set_configuration stands in for
// kioskd's validation (tested in firmware/daemon) and refuses
// policy.time_extensions above 10.
func startJobKiosks(t *testing.T, ctx context.Context, wg *sync.WaitGroup, broker string, f fleetKeys, ids []string) {
	t.Helper()
	opsRing, err := txreport.LoadKeyringFile(f.ops.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		signer, err := txreport.LoadSigner(filepath.Join(f.dir, "kiosks", id+".key"), filepath.Join(f.dir, "kiosks", id+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := hub.New(hub.Options{Brokers: []string{broker}, DeviceID: id, TopicPrefix: "kiosk/v1", RetryMax: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r, err := jobs.New(jobs.Options{Link: c, Operations: opsRing, Signer: signer, StateDir: t.TempDir(),
			Handlers: map[string]jobs.Handler{
				jobwire.KindPing: func(context.Context, jobwire.Job) (jobs.Outcome, error) {
					return jobs.Outcome{Result: id}, nil
				},
				jobwire.KindSetConfig: func(_ context.Context, j jobwire.Job) (jobs.Outcome, error) {
					var doc struct {
						Version  int                        `json:"version"`
						Settings map[string]json.RawMessage `json:"settings"`
					}
					if err := json.Unmarshal([]byte(j.Doc), &doc); err != nil {
						return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
					}
					var n int
					if json.Unmarshal(doc.Settings["policy.time_extensions"], &n) == nil && n > 10 {
						return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "offending keys policy.time_extensions")
					}
					return jobs.Outcome{Result: map[string]any{"version": doc.Version, "hash": fmt.Sprintf("h%d", doc.Version)}}, nil
				},
			}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = c.Run(ctx) })
		wg.Go(func() { _ = r.Run(ctx) })
	}
}
