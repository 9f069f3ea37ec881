// Package fleetsim runs a fleet of simulated kiosks against real
// infrastructure: a broker, kioskhub processes sharing the work and
// PostgreSQL. Each kiosk is what kioskd runs after a session decides — a
// real MQTT client (hub.Client) with its own device key, fsynced outbox,
// offline ledger and sender (txflow) — minus the camera and chip. It
// measures the connect storm, online authorization and report→ack
// latency, and checks exactly-once delivery at the hub's database.
// `make fleet-sim` and `make chaos-fleet` drive it (docs/scale.md).
package fleetsim

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/offline"
	"kiosk/firmware/outbox"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
)

// Config is one run.
type Config struct {
	Kiosks int
	// Rate is payments per second across the fleet; default Kiosks/60
	// (every kiosk pays once a minute on average).
	Rate float64
	// Duration of the payment phase, after the connect storm.
	Duration time.Duration
	// StormWindow spreads the kiosks' first connection (uniform jitter).
	StormWindow time.Duration
	// Telemetry is each kiosk's health interval (QoS 0).
	Telemetry time.Duration
	Brokers   []string // what the kiosks connect to (failover order is shuffled per kiosk)
	Prefix    string
	Dir       string // outboxes, ledgers, keys
	// HubKeys verifies the hubs' sealed answers and acks.
	HubKeys *txreport.Keyring
	// DevicesDir receives each kiosk's certificate (the hubs' keys.devices).
	DevicesDir string
	// DrainTimeout bounds the wait for the last acks after the payments.
	DrainTimeout time.Duration
	Log          *slog.Logger
}

// Kiosk is one simulated kiosk.
type Kiosk struct {
	ID     string
	hub    *hub.Client
	flow   *txflow.Flow
	outbox *outbox.Outbox
	ledger *offline.Ledger
	busy   atomic.Bool
}

// Result is what a run measured.
type Result struct {
	Kiosks      int
	Storm       time.Duration // first connect → all connected
	Payments    int           // committed reports
	Skipped     int           // arrivals that found no idle kiosk
	Online      int           // authorized online
	Rate        float64       // achieved payments per second
	Phase       time.Duration // length of the payment phase
	Auth        []time.Duration
	Ack         []time.Duration // Commit → the hub's verified ack
	AcksRefused uint64
	Committed   []TxRef
}

// Merge adds a later payment phase's figures to r.
func (r *Result) Merge(o *Result) {
	r.Auth = append(r.Auth, o.Auth...)
	r.Committed = append(r.Committed, o.Committed...)
	r.Payments += o.Payments
	r.Skipped += o.Skipped
	r.Online += o.Online
	r.Phase += o.Phase
	r.Rate = float64(r.Payments) / r.Phase.Seconds()
}

// TxRef names a committed report.
type TxRef struct{ Terminal, TxID string }

// Quantile of ds (sorted in place), q in [0,1].
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q * float64(len(ds)-1))
	return ds[i]
}

// Fleet is a set of running kiosks.
type Fleet struct {
	cfg    Config
	kiosks []*Kiosk
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	committed map[string]time.Time // tx id → Commit time
	acks      []time.Duration
}

// Prepare makes every kiosk's key and writes its certificate to
// cfg.DevicesDir (so the hubs can be started with them); Start connects.
func Prepare(cfg Config) (*Fleet, error) {
	if cfg.Kiosks <= 0 || len(cfg.Brokers) == 0 || cfg.HubKeys == nil {
		return nil, errors.New("fleetsim: kiosks, brokers and hub keys are required")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = float64(cfg.Kiosks) / 60
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "kiosk/v1"
	}
	if cfg.Telemetry <= 0 {
		cfg.Telemetry = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Minute
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DevicesDir, 0o755); err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, log: log, committed: map[string]time.Time{}}
	for i := range cfg.Kiosks {
		k, err := f.newKiosk(fmt.Sprintf("sim-%05d", i))
		if err != nil {
			f.closeStores()
			return nil, err
		}
		f.kiosks = append(f.kiosks, k)
	}
	return f, nil
}

func (f *Fleet) newKiosk(id string) (*Kiosk, error) {
	key, cert, err := devkey.Generate(id, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := writeCert(filepath.Join(f.cfg.DevicesDir, id+".pem"), cert); err != nil {
		return nil, err
	}
	signer, err := txreport.NewSigner(key, cert)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(f.cfg.Dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	brokers := slices.Clone(f.cfg.Brokers)
	rand.Shuffle(len(brokers), func(i, j int) { brokers[i], brokers[j] = brokers[j], brokers[i] })
	h, err := hub.New(hub.Options{Brokers: brokers, DeviceID: id, TopicPrefix: f.cfg.Prefix,
		ConnectTimeout: 5 * time.Second, RetryMin: 500 * time.Millisecond, RetryMax: 10 * time.Second, KeepAlive: 30 * time.Second,
		Logger: f.log.With("kiosk", id)})
	if err != nil {
		return nil, err
	}
	ob, err := outbox.Open(filepath.Join(dir, "outbox.db"), outbox.Options{})
	if err != nil {
		return nil, err
	}
	lg, err := offline.Open(filepath.Join(dir, "offline.db"), offline.Limits{Floor: 5000, Cap: 20000, Currency: "CHF"})
	if err != nil {
		ob.Close()
		return nil, err
	}
	k := &Kiosk{ID: id, hub: h, outbox: ob, ledger: lg}
	k.flow, err = txflow.New(txflow.Options{Hub: h, Outbox: ob, Offline: lg, Signer: signer, HubKeys: f.cfg.HubKeys,
		AuthTimeout: 5 * time.Second, ResendAfter: 10 * time.Second, Logger: f.log.With("kiosk", id),
		OnDelivered: f.delivered})
	if err != nil {
		ob.Close()
		lg.Close()
		return nil, err
	}
	return k, nil
}

func writeCert(path string, c *x509.Certificate) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
}

func (f *Fleet) delivered(txID string) {
	now := time.Now()
	f.mu.Lock()
	if t, ok := f.committed[txID]; ok {
		f.acks = append(f.acks, now.Sub(t))
	}
	f.mu.Unlock()
}

// Start connects every kiosk, each after a random delay within
// StormWindow, and returns once all are connected (the storm's length)
// or ctx ends.
func (f *Fleet) Start(ctx context.Context) (time.Duration, error) {
	run, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	start := time.Now()
	for _, k := range f.kiosks {
		delay := time.Duration(0)
		if f.cfg.StormWindow > 0 {
			delay = rand.N(f.cfg.StormWindow)
		}
		f.wg.Go(func() {
			select {
			case <-time.After(delay):
			case <-run.Done():
				return
			}
			var inner sync.WaitGroup
			inner.Go(func() { _ = k.hub.Run(run) })
			inner.Go(func() { _ = k.flow.Run(run) })
			inner.Go(func() { f.telemetry(run, k) })
			inner.Wait()
		})
	}
	for {
		n := 0
		for _, k := range f.kiosks {
			if k.hub.Status().Connected {
				n++
			}
		}
		if n == len(f.kiosks) {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("connect storm: %d of %d connected: %w", n, len(f.kiosks), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// telemetry publishes a small health document at a fixed interval with a
// random phase, as kioskd does (QoS 0).
func (f *Fleet) telemetry(ctx context.Context, k *Kiosk) {
	t := time.NewTimer(rand.N(f.cfg.Telemetry) + time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := k.flow.Status()
		b, _ := json.Marshal(map[string]any{"status": "ok", "device": k.ID, "time": time.Now().UTC(),
			"components": map[string]any{"transactions": map[string]any{"outbox": st.Outbox.Depth, "delivered": st.Delivered}}})
		_ = k.hub.Publish(ctx, "telemetry/health", 0, false, b)
		t.Reset(f.cfg.Telemetry)
	}
}

// Pay runs the payment phase: Poisson arrivals at cfg.Rate for d, each on
// a random idle kiosk: an online authorization (offline rules when the
// hub is silent), then the signed report committed to the outbox.
func (f *Fleet) Pay(ctx context.Context, d time.Duration) (*Result, error) {
	r := &Result{Kiosks: len(f.kiosks)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	seq := 0
	next := start
	for ctx.Err() == nil {
		// Arrivals on an absolute schedule, so a late wake-up does not
		// lower the rate.
		next = next.Add(time.Duration(rand.ExpFloat64() / f.cfg.Rate * float64(time.Second)))
		if next.After(end) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
		k := f.idle()
		if k == nil {
			r.Skipped++ // no idle kiosk found: the shopper walks away
			continue
		}
		seq++
		txID := fmt.Sprintf("%s-%06d", k.ID, seq)
		wg.Go(func() {
			defer k.busy.Store(false)
			amount := int64(500 + rand.IntN(4500))
			t0 := time.Now()
			a, err := k.flow.Authorize(ctx, txflow.Payment{TxID: txID, Merchant: "Fleet Shop", Amount: amount, Currency: "CHF"})
			if err != nil {
				return
			}
			auth := time.Since(t0)
			rep := Report(k.ID, txID, amount, a, t0)
			f.mu.Lock()
			f.committed[txID] = time.Now()
			f.mu.Unlock()
			if err := k.flow.Commit(ctx, rep); err != nil {
				f.mu.Lock()
				delete(f.committed, txID)
				f.mu.Unlock()
				f.log.Error("commit", "tx", txID, "err", err)
				return
			}
			mu.Lock()
			r.Auth = append(r.Auth, auth)
			r.Committed = append(r.Committed, TxRef{k.ID, txID})
			if a.Online {
				r.Online++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	r.Phase = time.Since(start)
	r.Payments = len(r.Committed)
	r.Rate = float64(r.Payments) / r.Phase.Seconds()
	return r, nil
}

func (f *Fleet) idle() *Kiosk {
	for range 8 {
		k := f.kiosks[rand.IntN(len(f.kiosks))]
		if k.busy.CompareAndSwap(false, true) {
			return k
		}
	}
	return nil
}

// Drain waits until every outbox is empty (all reports acknowledged) and
// fills r's ack latencies.
func (f *Fleet) Drain(ctx context.Context, r *Result) error {
	deadline := time.Now().Add(f.cfg.DrainTimeout)
	for {
		pending := 0
		for _, k := range f.kiosks {
			pending += k.outbox.Stats().Depth
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d reports still in outboxes after %s", pending, f.cfg.DrainTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	f.mu.Lock()
	r.Ack = slices.Clone(f.acks)
	f.mu.Unlock()
	for _, k := range f.kiosks {
		r.AcksRefused += k.flow.Status().AcksRefused
	}
	return nil
}

// Stop disconnects every kiosk and closes its stores.
func (f *Fleet) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	f.closeStores()
}

func (f *Fleet) closeStores() {
	for _, k := range f.kiosks {
		k.outbox.Close()
		k.ledger.Close()
	}
}

// Report is a kiosk's signed-report content for a payment decided by a.
func Report(terminal, txID string, amount int64, a txflow.Authorization, started time.Time) *txreport.Report {
	now := time.Now()
	r := &txreport.Report{
		V: txreport.Version, TxID: txID, Terminal: terminal, Merchant: "Fleet Shop", Kind: "payment",
		Amount: amount, Currency: "CHF", Started: txreport.Timestamp(started), Decided: txreport.Timestamp(now),
		DocHash:  txreport.DocumentHash([]byte("fleet-sim-salt-0"), "D", txID),
		Checks:   []txreport.Check{{Name: "passive_authentication", OK: true}, {Name: "chip_authentication", OK: true}},
		Scores:   []txreport.Score{txreport.NewScore("match", 0.8, 0.6), txreport.NewScore("liveness", 0.9, 0.7), txreport.NewScore("consent", 1, 1)},
		Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOnline, Ref: a.Ref},
	}
	if !a.Online {
		r.Auth.Mode = txreport.AuthOffline
	}
	if !a.Approved {
		r.Decision, r.Reasons = txreport.Declined, []string{a.Reason}
	}
	return r
}
