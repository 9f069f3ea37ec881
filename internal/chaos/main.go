// Command chaos pays through the whole kioskd process (till API, card,
// camera, chip, face, smile, hub authorization, signed report, fsynced
// outbox, MQTT delivery, sealed hub acks) while kioskd and the broker are
// killed at random, then checks that every payment kioskd committed
// reached the hub exactly once:
//
//	chaos: committed N, at hub N, duplicates 0, lost 0, redeliveries R
//
// It exits 1 unless duplicates and lost are 0 and R > 0. `make chaos` runs
// it.
//
// kioskd runs as the built binary in simulation mode (simulated card
// reader holding a virtual eID, the simulated camera playing a real video
// through OpenCV), restarted after every SIGKILL as systemd would. Besides
// kills at random moments (mid-session, mid-commit), some land in the
// publish→ack window on purpose: the hub here acknowledges a new report
// only when the orchestrator releases it, and the orchestrator kills kioskd
// as soon as the hub has stored a report and releases the ack only once
// kioskd is back on the hub, so the restarted kioskd sends the report
// again from its outbox and the hub's deduplication is exercised (R counts
// those redeliveries).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/internal/simkiosk"
	"kiosk/internal/till"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

const device = "kiosk-chaos-01"

func main() {
	n := flag.Int("n", 25, "payments kioskd must commit")
	bin := flag.String("kioskd", "bin/kioskd", "kioskd binary")
	media := flag.String("media", ".cache/testdata/media", "test media (franck.mp4, franck_01829.jpg)")
	models := flag.String("models", ".cache/models", "face models")
	dir := flag.String("dir", "", "working directory (default: a new temporary one, removed after)")
	limit := flag.Duration("max", 15*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	code, err := run(ctx, log, setup{n: *n, bin: *bin, media: *media, models: *models, dir: *dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
	}
	os.Exit(code)
}

type setup struct {
	n                       int
	bin, media, models, dir string
}

func run(ctx context.Context, log *slog.Logger, s setup) (int, error) {
	for _, p := range []string{s.bin, filepath.Join(s.media, "franck.mp4"), filepath.Join(s.media, "franck_01829.jpg"), s.models} {
		if _, err := os.Stat(p); err != nil {
			return 2, fmt.Errorf("%w (make build testdata models)", err)
		}
	}
	dir := s.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "kiosk-chaos-")
		if err != nil {
			return 2, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	k, err := prepare(dir, s)
	if err != nil {
		return 2, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "mosquitto"), 0o700); err != nil {
		return 2, err
	}
	mq, err := mqtttest.Launch(filepath.Join(dir, "mosquitto"), "")
	if err != nil {
		return 2, fmt.Errorf("mosquitto: %w", err)
	}
	defer mq.Stop()
	if err := k.writeConfig(mq.URL()); err != nil {
		return 2, err
	}

	// The hub: the reference hub on a bbolt store that is slow to
	// acknowledge new reports, and tells us when it stored one.
	keys, err := txreport.LoadKeyring(k.DevicesDir)
	if err != nil {
		return 2, err
	}
	hubSigner, err := txreport.LoadSigner(filepath.Join(dir, "hub", "chaos-hub.key"), filepath.Join(dir, "hub", "chaos-hub.crt"))
	if err != nil {
		return 2, err
	}
	bolt, err := hubstore.OpenBolt(filepath.Join(dir, "hub.db"))
	if err != nil {
		return 2, err
	}
	store := &slowAcks{Store: bolt, applied: make(chan applied), maxHold: time.Minute}
	rh, err := refhub.New(refhub.Options{Brokers: []string{mq.URL()}, ClientID: "chaos-hub", Keyring: keys, Signer: hubSigner, Store: store,
		Limits: hubstore.Limits{MaxTx: 1 << 40, MaxDaily: 1 << 40}})
	if err != nil {
		return 2, err
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { _ = rh.Run(hubCtx); close(hubDone) }()
	defer func() { stopHub(); <-hubDone; bolt.Close() }() // stopping twice is harmless

	proc := newSupervisor(k.bin, k.Conf, filepath.Join(dir, "kioskd.log"), log)
	if err := proc.start(); err != nil {
		return 2, err
	}
	defer proc.stop()
	tc := &till.Client{HTTP: k.HTTPAddr, ECR: k.ECRAddr, TokenFile: k.TokenFile, Ready: []string{"camera", "cardreader", "face"},
		// A payment is cut short when kioskd restarts under it.
		Watch: func() func() error {
			gen := proc.generation()
			return func() error {
				if proc.generation() != gen {
					return errInterrupted
				}
				return nil
			}
		}}
	if err := tc.WaitReady(ctx, 60*time.Second); err != nil {
		return 2, fmt.Errorf("kioskd did not come up: %w (log: %s)", err, filepath.Join(dir, "kioskd.log"))
	}

	// Strikes, until every payment is committed.
	strikeCtx, stopStrikes := context.WithCancel(ctx)
	var st strikes
	var wg sync.WaitGroup
	defer func() { stopStrikes(); wg.Wait() }()
	wg.Go(func() { st.inWindow(strikeCtx, proc, tc, store.applied, log) })
	wg.Go(func() { st.broker(strikeCtx, mq, log) })

	var refs []string
	committed := 0
	for i := 0; committed < s.n; i++ {
		if ctx.Err() != nil {
			stopStrikes()
			wg.Wait()
			return 1, fmt.Errorf("gave up after %d committed payments of %d: %w", committed, s.n, ctx.Err())
		}
		ref := fmt.Sprintf("chaos-%04d", i)
		refs = append(refs, ref)
		// One payment in four is cut short by a kill at a random moment
		// of it (card read, face step, authorization, commit…).
		var strike *time.Timer
		if mrand.IntN(4) == 0 {
			strike = time.AfterFunc(randDur(0, 2*time.Second), func() {
				if proc.kill() {
					st.kills.Add(1)
					log.Info("killed kioskd during a payment", "ref", ref)
				}
			})
		}
		p, err := tc.Pay(ctx, ref, 2350)
		if strike != nil {
			strike.Stop()
		}
		switch {
		case errors.Is(err, errInterrupted):
			log.Info("payment interrupted by a kill", "ref", ref)
		case err != nil:
			log.Warn("payment", "ref", ref, "err", err)
		default:
			log.Info("payment", "ref", ref, "status", p.Status)
		}
		// What counts is what kioskd says now, after any restart: its
		// payment history is restored from the outbox after a kill.
		if err := tc.WaitReady(ctx, 60*time.Second); err != nil {
			return 1, fmt.Errorf("kioskd did not come back: %w", err)
		}
		if p, err := tc.Lookup(ctx, ref); err == nil && p.Decided() {
			committed++
		}
	}
	stopStrikes()
	wg.Wait()

	// Everything up again; kioskd drains its outbox to the hub.
	if err := tc.WaitReady(ctx, 60*time.Second); err != nil {
		return 1, fmt.Errorf("kioskd after the strikes: %w", err)
	}
	want := map[string]bool{}
	for _, ref := range refs {
		p, err := tc.Lookup(ctx, ref)
		if err != nil {
			continue // never created (kioskd died before answering) or unknown
		}
		if p.Decided() {
			want[p.ID] = true
		}
	}
	held := map[string]int{}
	for wait := time.Now().Add(90 * time.Second); ; {
		txs, err := hubstore.All(ctx, bolt, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<20)
		if err != nil {
			return 2, fmt.Errorf("hub store: %w", err)
		}
		clear(held)
		for _, t := range txs {
			held[t.TxID]++
		}
		missing := 0
		for id := range want {
			if held[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(wait) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	lost, extra, dups := 0, 0, 0
	for id := range want {
		if held[id] == 0 {
			lost++
		}
	}
	for id, c := range held {
		dups += c - 1
		if !want[id] {
			extra++ // at the hub, yet kioskd does not know the payment
		}
	}
	// The hub's counters once its in-flight reports are through.
	stopHub()
	<-hubDone
	hs := rh.Stats()
	dups += int(hs.Applied) - len(held) // an id applied twice would show here
	fmt.Fprintf(os.Stderr, "chaos: %d payments tried; kioskd killed %d times (%d in the publish→ack window), broker struck %d times; hub: %d applied, %d acks not sent\n",
		len(refs), st.kills.Load()+st.windowKills.Load(), st.windowKills.Load(), st.brokerStrikes.Load(), hs.Applied, hs.ReplyFailed)
	fmt.Printf("chaos: committed %d, at hub %d, duplicates %d, lost %d, redeliveries %d\n", len(want), len(held)-extra, dups, lost, hs.Duplicates)
	switch {
	case dups != 0 || lost != 0 || extra != 0:
		if extra != 0 {
			fmt.Fprintf(os.Stderr, "chaos: %d transactions at the hub that kioskd's history does not hold\n", extra)
		}
		return 1, nil
	case hs.Duplicates == 0:
		return 1, errors.New("no redelivery reached the hub: the kills missed the publish→ack window")
	case len(want) < s.n:
		return 1, fmt.Errorf("only %d payments committed", len(want))
	}
	return 0, nil
}

// strikes kill kioskd and the broker; each runs on its own goroutine.
type strikes struct {
	kills, windowKills, brokerStrikes counter
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Add(d int) { c.mu.Lock(); c.n += d; c.mu.Unlock() }
func (c *counter) Load() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// inWindow kills kioskd right after the hub stored a report, for one
// report in three, and holds the hub's ack until kioskd is back and
// connected (and a moment more, for its outbox to send again).
func (s *strikes) inWindow(ctx context.Context, p *supervisor, t *till.Client, events <-chan applied, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if mrand.IntN(3) == 0 && p.kill() {
				s.windowKills.Add(1)
				log.Info("killed kioskd in the publish→ack window", "tx", ev.tx)
				if err := t.WaitHealthy(ctx, 60*time.Second, "hub"); err != nil {
					log.Warn("kioskd not back on the hub", "err", err)
				}
				till.Sleep(ctx, 500*time.Millisecond)
			}
			close(ev.release)
		}
	}
}

// broker kills (SIGKILL) or stops (SIGTERM) mosquitto every 4–12 s and
// restarts it after 0.1–1.5 s.
func (s *strikes) broker(ctx context.Context, mq *mqtttest.Broker, log *slog.Logger) {
	for till.Sleep(ctx, randDur(4*time.Second, 12*time.Second)) {
		if mrand.IntN(2) == 0 {
			mq.Kill()
		} else {
			mq.Stop()
		}
		s.brokerStrikes.Add(1)
		time.Sleep(randDur(100*time.Millisecond, 1500*time.Millisecond))
		if err := mq.Restart(); err != nil {
			log.Error("mosquitto restart", "err", err)
		}
	}
}

func randDur(lo, hi time.Duration) time.Duration { return lo + mrand.N(hi-lo) }

// kiosk is one simulated kiosk and the hub certificate it trusts.
type kiosk struct {
	*simkiosk.Kiosk
	bin, media, models, hubCert string
}

// prepare writes the device and hub keys and issues the virtual eID.
func prepare(dir string, s setup) (*kiosk, error) {
	sk, err := simkiosk.Prepare(dir, device, "C01X00T47", s.media)
	if err != nil {
		return nil, err
	}
	hk, err := devkey.Create(filepath.Join(dir, "hub"), filepath.Join(dir, "hub", "certs"), "chaos-hub")
	if err != nil {
		return nil, fmt.Errorf("hub key: %w", err)
	}
	return &kiosk{Kiosk: sk, bin: s.bin, media: s.media, models: s.models, hubCert: hk.Cert}, nil
}

// writeConfig is kioskd's configuration: simulation mode against the
// external broker and hub (no embedded hub), the device key signing
// reports, the hub's certificate checking its answers and acks. The
// camera's cues (simulation only) show the face as the face step begins
// and the smile as the smile phase begins, so a payment takes about a
// second and the kills land in every part of it.
func (k *kiosk) writeConfig(broker string) error {
	conf := fmt.Sprintf(`[device]
id = %q
mode = "simulation"
[log]
format = "text"
[http]
listen = %q
[camera]
backend = "sim"
path = %q
sim_cues = { face = "7s", smile = "1s" }
sim_cue_length = "5s"
[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[hub]
brokers = [%q]
auth_cert = %q
telemetry_every = "5s"
retry_max = "1s"
[hub.embedded]
listen = %q
[eid]
trust_dir = %q
sim_card = %q
[face]
models_dir = %q
smile_timeout = "40s"
[policy]
face_timeout = "60s"
result_display = "100ms"
[ecr]
listen = %q
token_file = %q
[transactions]
state_dir = %q
merchant = "CHAOS-SHOP"
device_key = %q
device_cert = %q
floor_limit_minor = 5000
offline_cap_minor = 1000000
auth_timeout = "2s"
embedded_hub = false
[shutdown]
timeout = "5s"
`, device, k.HTTPAddr, filepath.Join(k.media, "franck.mp4"), broker, k.hubCert, k.EmbAddr,
		k.TrustDir, k.CardDir, k.models, k.ECRAddr, k.TokenFile,
		filepath.Join(k.Dir, "state"), k.DeviceKey, k.DeviceCert)
	return os.WriteFile(k.Conf, []byte(conf), 0o600)
}
