// Command chaos drives transactions through kioskd's transaction path
// (device signature, fsynced outbox, MQTT delivery, hub acks) while the
// broker and the kiosk process are killed at random, then checks that
// every committed transaction reached the hub exactly once:
//
//	committed N, at hub N, duplicates 0, lost 0
//
// It exits 1 unless duplicates and lost are both 0. `make chaos` runs it.
//
// The kiosk side is a child process (this binary with -kiosk) running the
// same packages kioskd runs after a session decides (txflow, outbox, hub
// client) on synthetic decided sessions: the camera and chip steps would
// limit the run to a few transactions a minute and add nothing to what is
// tested here. It is killed with SIGKILL; mosquitto is killed with SIGKILL
// or stopped with SIGTERM; the reference hub runs in this process.
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/outbox"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

const device = "kiosk-chaos-01"

func main() {
	kiosk := flag.Bool("kiosk", false, "run as the kiosk child process")
	dir := flag.String("dir", "", "working directory (default: a new temporary one)")
	n := flag.Int("n", 1000, "transactions to commit")
	broker := flag.String("broker", "", "broker URL (kiosk child)")
	rate := flag.Int("rate", 40, "transactions per second the kiosk commits")
	duration := flag.Duration("max", 10*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()
	if *kiosk {
		os.Exit(runKiosk(*dir, *broker, *n, *rate))
	}
	os.Exit(orchestrate(*dir, *n, *duration, *verbose))
}

// runKiosk commits transactions chaos-000000 … until n are logged as
// committed. A transaction counts as committed once Commit returned (the
// report is fsynced in the outbox); the id is then appended to
// committed.log (fsynced). After a SIGKILL between the two, the next run
// commits the same id again: the outbox and the hub are idempotent.
func runKiosk(dir, broker string, n, rate int) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	signer, err := txreport.LoadSigner(filepath.Join(dir, "device.key"), filepath.Join(dir, "device.crt"))
	if err != nil {
		log.Error("signer", "err", err)
		return 2
	}
	hubKeys, err := txreport.LoadKeyringFile(filepath.Join(dir, "hub.crt"))
	if err != nil {
		log.Error("hub certificate", "err", err)
		return 2
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{MaxRecords: 100000, MaxBytes: 1 << 30})
	if err != nil {
		log.Error("outbox", "err", err)
		return 2
	}
	defer ob.Close()
	h, err := hub.New(hub.Options{Brokers: []string{broker}, DeviceID: device, TopicPrefix: "kiosk/v1",
		ConnectTimeout: 2 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: time.Second, KeepAlive: 5 * time.Second})
	if err != nil {
		log.Error("hub", "err", err)
		return 2
	}
	flow, err := txflow.New(txflow.Options{Hub: h, Outbox: ob, Signer: signer, HubKeys: hubKeys, ResendAfter: 2 * time.Second, Logger: log})
	if err != nil {
		log.Error("txflow", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { _ = h.Run(ctx) }()
	go func() { _ = flow.Run(ctx) }()

	logPath := filepath.Join(dir, "committed.log")
	next := len(readLines(logPath))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		log.Error("log", "err", err)
		return 2
	}
	defer f.Close()
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for ; next < n; next++ {
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
		id := fmt.Sprintf("chaos-%06d", next)
		if err := flow.Commit(ctx, report(id, time.Now())); err != nil {
			log.Error("commit", "tx", id, "err", err)
			return 1
		}
		if _, err := f.WriteString(id + "\n"); err != nil {
			return 1
		}
		if err := f.Sync(); err != nil {
			return 1
		}
	}
	// All committed: keep delivering until the outbox is empty.
	for ob.Stats().Depth > 0 {
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0
}

// report is a decided identity-less payment, as a session would record.
func report(id string, now time.Time) *txreport.Report {
	ts := txreport.Timestamp(now)
	return &txreport.Report{
		V: 1, TxID: id, Terminal: device, Merchant: "CHAOS-SHOP", Kind: "payment", Amount: 100, Currency: "CNY",
		Started: ts, Decided: ts, Checks: []txreport.Check{{Name: "eid.passive_authentication", OK: true}},
		Scores: []txreport.Score{txreport.NewScore("match", 0.8, 0.45)}, Models: []txreport.Model{},
		Decision: "approved", Reasons: []string{}, Auth: txreport.Auth{Mode: "offline"},
	}
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func orchestrate(dir string, n int, limit time.Duration, verbose bool) int {
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if dir == "" {
		d, err := os.MkdirTemp("", "kiosk-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer os.RemoveAll(d)
		dir = d
	}
	cert, err := devKey(dir, "device", device)
	if err != nil {
		fmt.Fprintln(os.Stderr, "device key:", err)
		return 2
	}
	// The hub seals its acks; the kiosk takes only those.
	if _, err := devKey(dir, "hub", "chaos-hub"); err != nil {
		fmt.Fprintln(os.Stderr, "hub key:", err)
		return 2
	}
	hubSigner, err := txreport.LoadSigner(filepath.Join(dir, "hub.key"), filepath.Join(dir, "hub.crt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub key:", err)
		return 2
	}
	mq, err := mqtttest.Launch(dir, "max_queued_messages 100000")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mosquitto:", err)
		return 2
	}
	defer mq.Stop()
	url := mq.URL()

	keys := txreport.NewKeyring()
	if err := keys.Add(cert); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	store, err := hubstore.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rh, err := refhub.New(refhub.Options{Brokers: []string{url}, ClientID: "chaos-hub", Keyring: keys, Signer: hubSigner, Store: store})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hubDone := make(chan struct{})
	go func() { _ = rh.Run(ctx); close(hubDone) }()

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	startKiosk := func() (*exec.Cmd, chan error) {
		cmd := exec.Command(self, "-kiosk", "-dir", dir, "-broker", url, "-n", strconv.Itoa(n))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			done <- err
			return cmd, done
		}
		go func() { done <- cmd.Wait() }()
		return cmd, done
	}

	deadline := time.Now().Add(limit)
	kills, brokerKills := 0, 0
	cmd, done := startKiosk()
	nextKill := time.Now().Add(randDur(300*time.Millisecond, 2500*time.Millisecond))
	nextBroker := time.Now().Add(randDur(1*time.Second, 4*time.Second))
	finished := false
	for !finished {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "chaos: time limit reached")
			_ = cmd.Process.Kill()
			break
		}
		select {
		case err := <-done:
			if err == nil && len(readLines(filepath.Join(dir, "committed.log"))) >= n {
				finished = true
				continue
			}
			// A killed kiosk comes back, like systemd restarting kioskd.
			cmd, done = startKiosk()
		case <-time.After(50 * time.Millisecond):
		}
		committed := len(readLines(filepath.Join(dir, "committed.log")))
		if committed >= n {
			continue // let the kiosk drain undisturbed
		}
		if time.Now().After(nextKill) {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			kills++
			log.Info("killed the kiosk", "committed", committed)
			nextKill = time.Now().Add(randDur(300*time.Millisecond, 2500*time.Millisecond))
		}
		if time.Now().After(nextBroker) {
			sig := syscall.SIGTERM
			if mrand.IntN(2) == 0 {
				sig = syscall.SIGKILL
				mq.Kill()
			} else {
				mq.Stop()
			}
			brokerKills++
			time.Sleep(randDur(100*time.Millisecond, 1500*time.Millisecond))
			if err := mq.Restart(); err != nil {
				fmt.Fprintln(os.Stderr, "mosquitto restart:", err)
				return 2
			}
			log.Info("restarted the broker", "signal", sig, "committed", committed)
			nextBroker = time.Now().Add(randDur(1*time.Second, 4*time.Second))
		}
	}

	committed := readLines(filepath.Join(dir, "committed.log"))
	// Wait for the hub to hold every committed transaction (or give up).
	var held map[string]int
	for wait := time.Now().Add(60 * time.Second); ; {
		txs, err := hubstore.All(context.Background(), store, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hub store:", err)
			return 2
		}
		held = map[string]int{}
		for _, t := range txs {
			held[t.TxID]++
		}
		missing := 0
		for _, id := range committed {
			if held[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(wait) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	<-hubDone

	seen := map[string]bool{}
	lost := 0
	for _, id := range committed {
		if seen[id] {
			continue
		}
		seen[id] = true
		if held[id] == 0 {
			lost++
		}
	}
	// Every record at the hub is one transaction applied once: a second
	// application of an id would be counted here.
	st := rh.Stats()
	dups := int(st.Applied) - len(held)
	for _, c := range held {
		dups += c - 1
	}
	fmt.Printf("chaos: %d kiosk kills, %d broker restarts, %d redeliveries deduplicated by the hub\n", kills, brokerKills, st.Duplicates)
	fmt.Printf("committed %d, at hub %d, duplicates %d, lost %d\n", len(seen), len(held), dups, lost)
	if dups != 0 || lost != 0 || len(seen) < n {
		return 1
	}
	return 0
}

func randDur(lo, hi time.Duration) time.Duration { return lo + mrand.N(hi-lo) }

// devKey writes a development device key and certificate.
// devKey writes name.key and name.crt (CN id) into dir.
func devKey(dir, name, id string) (*x509.Certificate, error) {
	key, cert, err := devkey.Generate(id, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return nil, err
	}
	return cert, nil
}
