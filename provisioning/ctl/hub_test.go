package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/offline"
	"kiosk/firmware/outbox"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
)

// The documented CLI end to end: dev-key create, two `hub serve`
// processes sharing one store through a shared subscription, a kiosk
// (in-process txflow) authorizing and committing, `hub tx list --json`.
func TestHubServeDevKeyTxList(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	bin := buildKioskctl(t)
	dir := t.TempDir()
	out, err := exec.Command(bin, "dev-key", "create", "--out", dir, "--device", "kiosk-c1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fingerprint ") {
		t.Fatalf("dev-key create: %v\n%s", err, out)
	}
	// The hub's authorization-signing key, made the same way.
	hubDir := filepath.Join(dir, "hub")
	if out, err := exec.Command(bin, "dev-key", "create", "--out", hubDir, "--device", "hub-auth").CombinedOutput(); err != nil {
		t.Fatalf("dev-key create (hub): %v\n%s", err, out)
	}
	db := filepath.Join(dir, "hub.db")
	var serves []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command(bin, "hub", "serve", "--broker", b.URL(), "--devices", filepath.Join(dir, "devices"),
			"--db", db, "--max-tx", "10000", "--max-daily", "50000", "--group", "bank", "--client-id", fmt.Sprintf("hub-%d", i),
			"--auth-key", filepath.Join(hubDir, "hub-auth.key"), "--auth-cert", filepath.Join(hubDir, "hub-auth.crt"))
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		serves = append(serves, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sc := bufio.NewScanner(stdout)
		ready := make(chan string, 1)
		go func() {
			for sc.Scan() {
				select {
				case ready <- sc.Text():
				default:
				}
			}
		}()
		select {
		case line := <-ready:
			if !strings.Contains(line, "hub serving 1 devices") || !strings.Contains(line, "$share/bank/kiosk/v1/+/tx") {
				t.Fatalf("hub serve said %q", line)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("hub serve not ready: %s", stderr.String())
		}
	}

	// The kiosk side, with the key dev-key create wrote.
	signer, err := txreport.LoadSigner(filepath.Join(dir, "kiosk-c1.key"), filepath.Join(dir, "kiosk-c1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Options{Brokers: []string{b.URL()}, DeviceID: "kiosk-c1", TopicPrefix: "kiosk/v1", ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	lg, err := offline.Open(filepath.Join(dir, "offline.db"), offline.Limits{Floor: 1000, Cap: 5000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	// hub.auth_cert: only the hub's signed answers count.
	hubKeys, err := txreport.LoadKeyringFile(filepath.Join(hubDir, "hub-auth.crt"))
	if err != nil {
		t.Fatal(err)
	}
	flow, err := txflow.New(txflow.Options{Hub: h, Outbox: ob, Offline: lg, Signer: signer, HubKeys: hubKeys, ResendAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	wg.Go(func() { _ = flow.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !h.Status().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("kiosk not connected")
		}
	}

	const n = 12
	for i := range n {
		amount := int64(2000 + i)
		id := fmt.Sprintf("cli-%02d", i)
		a, err := flow.Authorize(ctx, txflow.Payment{TxID: id, Merchant: "M1", Amount: amount, Currency: "EUR"})
		if err != nil || !a.Approved || !a.Online {
			t.Fatalf("authorize %s: %+v %v", id, a, err)
		}
		now := time.Now()
		r := &txreport.Report{V: txreport.Version, TxID: id, Terminal: "kiosk-c1", Merchant: "M1", Kind: "payment",
			Amount: amount, Currency: "EUR", Started: txreport.Timestamp(now), Decided: txreport.Timestamp(now),
			Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOnline, Ref: a.Ref}}
		if err := flow.Commit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if a, _ := flow.Authorize(ctx, txflow.Payment{TxID: "big", Amount: 10001, Currency: "EUR"}); a.Approved || a.Reason != hubstore.ReasonOverTxLimit {
		t.Fatalf("over --max-tx: %+v", a)
	}
	for deadline := time.Now().Add(15 * time.Second); ob.Stats().Depth > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: %+v", flow.Status())
		}
	}

	out, err = exec.Command(bin, "hub", "tx", "list", "--db", db, "--json").Output()
	if err != nil {
		t.Fatalf("hub tx list: %v", err)
	}
	var txs []hubstore.Transaction
	if err := json.Unmarshal(out, &txs); err != nil {
		t.Fatalf("tx list output: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	by := map[string]int{}
	for _, tx := range txs {
		if seen[tx.TxID] || tx.Terminal != "kiosk-c1" || tx.Decision != "approved" {
			t.Fatalf("bad or duplicate entry %+v", tx)
		}
		seen[tx.TxID] = true
		by[tx.AppliedBy]++
	}
	if len(txs) != n {
		t.Fatalf("tx list has %d, want %d", len(txs), n)
	}
	t.Logf("applied by instance: %v", by)
	table, err := exec.Command(bin, "hub", "tx", "list", "--db", db).Output()
	if err != nil || !strings.Contains(string(table), "cli-00") || !strings.Contains(string(table), "2000 EUR") {
		t.Fatalf("table: %v\n%s", err, table)
	}

	for _, cmd := range serves {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("hub serve exit: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("hub serve did not stop on SIGTERM")
		}
	}
}

func TestHubUsage(t *testing.T) {
	for _, args := range [][]string{
		{"hub", "serve"},
		{"hub", "serve", "--broker", "tcp://127.0.0.1:1", "--db", "x"},
		{"hub", "tx", "list"},
		{"dev-key", "create", "--out", t.TempDir()},
	} {
		if code, _, _ := run(args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ExitUsage)
		}
	}
	if code, _, errs := run("hub", "tx", "list", "--db", filepath.Join(t.TempDir(), "missing.db")); code != ExitFail || errs == "" {
		t.Errorf("missing db: exit %d %q", code, errs)
	}
	if code, _, errs := run("hub", "serve", "--broker", "tcp://127.0.0.1:1", "--db", "x", "--devices", filepath.Join(t.TempDir(), "none")); code != ExitUsage || !strings.Contains(errs, "devices dir") {
		t.Errorf("missing devices dir: exit %d %q", code, errs)
	}
}
