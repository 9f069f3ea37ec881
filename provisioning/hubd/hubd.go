// Package hubd is kioskhub, the bank side's hub daemon: one stateless
// instance of the reference hub (package refhub) over a shared store
// (PostgreSQL in production), with a health endpoint, systemd readiness
// and watchdog, and retention. Run as many instances as the load needs;
// they share the work through the broker (docs/scale.md).
package hubd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"kiosk/firmware/bankeid"
	"kiosk/firmware/hub"
	"kiosk/firmware/logging"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/deviceca"
	"kiosk/provisioning/devtrust"
	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubqueue"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
	"kiosk/provisioning/refhub"
	"kiosk/provisioning/registrar"
)

// Exit statuses.
const (
	ExitOK     = 0
	ExitFail   = 1 // runtime failure
	ExitConfig = 2 // bad flags or configuration: restarting cannot help
)

// Main is kioskhub's entry point.
func Main(args []string, stdout, stderr io.Writer, version string) int {
	fs := flag.NewFlagSet("kioskhub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/kioskhub/kioskhub.toml", "configuration file (TOML)")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kioskhub: unexpected argument %q\n", fs.Arg(0))
		return ExitConfig
	}
	if *showVersion {
		fmt.Fprintln(stdout, "kioskhub", version)
		return ExitOK
	}
	cfg, err := Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "kioskhub: invalid configuration:\n%v\n", err)
		return ExitConfig
	}
	if *check {
		fmt.Fprintf(stderr, "kioskhub: %s is valid\n", *cfgPath)
		return ExitOK
	}
	log := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := Options{Logger: log, Version: version}
	if os.Getenv("NOTIFY_SOCKET") != "" {
		o.Notify = func(state string) {
			if _, err := sd.SdNotify(false, state); err != nil {
				log.Warn("sd_notify failed", "state", state, "err", err)
			}
		}
		if iv, err := sd.SdWatchdogEnabled(false); err == nil && iv > 0 {
			o.WatchdogInterval = iv / 2
		}
	}
	if err := Run(ctx, cfg, o); err != nil {
		log.Error("kioskhub stopped", "err", err)
		var ce *Error
		if errors.As(err, &ce) {
			return ExitConfig
		}
		return ExitFail
	}
	return ExitOK
}

// Options are Run's collaborators.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Notify sends sd_notify states (READY=1, WATCHDOG=1, STOPPING=1);
	// nil outside systemd.
	Notify           func(string)
	WatchdogInterval time.Duration
	// Ready, when set, is called with the health address once the hub
	// serves (tests).
	Ready func(healthAddr string)
	Now   func() time.Time
}

// Health is GET /healthz.
type Health struct {
	Status   string `json:"status"` // ok, degraded
	Instance string `json:"instance"`
	Version  string `json:"version"`
	Store    string `json:"store"` // ok or the error
	Broker   string `json:"broker"`
	// Events is "ok" while GET /fleet/events also carries the other
	// instances' events (PostgreSQL store, operator API served), else
	// why it carries this instance's only; absent with one instance.
	Events  string       `json:"events,omitempty"`
	Devices int          `json:"devices"`
	Stats   refhub.Stats `json:"stats"`
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	notify := func(s string) {
		if o.Notify != nil {
			o.Notify(s)
		}
	}
	var err error
	instance := cfg.Instance
	if instance == "" {
		host, _ := os.Hostname()
		instance = fmt.Sprintf("kioskhub-%s-%d", host, os.Getpid())
	}
	ring := txreport.NewKeyring()
	if cfg.Keys.Devices != "" {
		if ring, err = txreport.LoadKeyring(cfg.Keys.Devices); err != nil {
			return &Error{Key: "keys.devices", Msg: err.Error()}
		}
	}
	var signer *txreport.Signer
	if cfg.Keys.AuthKey != "" {
		if signer, err = txreport.LoadSigner(cfg.Keys.AuthKey, cfg.Keys.AuthCert); err != nil {
			return &Error{Key: "keys.auth_key", Msg: err.Error()}
		}
	} else {
		log.Warn("no keys.auth_key: answers and acks go unsigned, and kiosks with hub.auth_cert ignore them (simulation only)")
	}
	tlsCfg, err := hub.TLSConfig(cfg.MQTT.CA, cfg.MQTT.Cert, cfg.MQTT.Key)
	if err != nil {
		return &Error{Key: "mqtt.ca", Msg: err.Error()}
	}
	store, ping, err := OpenStore(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer store.Close()
	// The fleet service (built below) tells the registrar which early
	// renewals an operator's rotate_certificate job asked for.
	var svc *fleet.Service
	rotation := func(ctx context.Context, device, job string) error {
		if svc == nil {
			return errors.New("this hub runs no fleet jobs")
		}
		return svc.RotationAllowed(ctx, device, job)
	}
	trust, reg, err := deviceTrust(cfg, store, ring, signer, rotation, o.Now, log)
	if err != nil {
		return err
	}
	if trust != nil {
		if err := trust.Reload(ctx); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		ring.SetResolver(trust.Resolve)
	}

	// The bank's enrolled faces live in the shared store: every instance
	// answers face reference requests from it (docs/mqtt.md).
	enrolments, _ := store.(hubstore.Enrolments)
	var queue *hubqueue.Client
	if len(cfg.AMQP.URLs) > 0 {
		qtls, err := hub.TLSConfig(cfg.AMQP.CA, cfg.AMQP.Cert, cfg.AMQP.Key)
		if err != nil {
			return &Error{Key: "amqp.ca", Msg: err.Error()}
		}
		queue, err = hubqueue.New(hubqueue.Options{URLs: cfg.AMQP.URLs, TLS: qtls, Queue: cfg.AMQP.Queue, Prefix: cfg.MQTT.Prefix,
			Prefetch: cfg.AMQP.Prefetch, Workers: cfg.MQTT.Workers, Name: instance, Logger: log.With("component", "amqp"),
			Topics: queueTopics(enrolments != nil)})
		if err != nil {
			return &Error{Key: "amqp.urls", Msg: err.Error()}
		}
	}
	var bankTrust *bankeid.Trust
	if dir := cfg.Keys.BankEIDTrust; dir != "" {
		if bankTrust, err = bankeid.LoadTrust(dir); err != nil {
			return &Error{Key: "keys.bankeid_trust_dir", Msg: err.Error()}
		}
	}
	// Metrics read the hub and the fleet service at each scrape.
	var h *refhub.Hub
	devices := func() []fleet.Device {
		if svc == nil {
			return nil
		}
		return svc.Devices()
	}
	var certs func(context.Context) []time.Time
	if r, ok := store.(hubstore.Registry); ok && trust != nil {
		certs = certExpiryLister(r, devices)
	}
	m := newMetrics(func() refhub.Stats { return h.Stats() }, devices, certs, o.Now)
	events := newBroadcaster()
	// With a shared store that carries notifications (PostgreSQL), the
	// instances share their fleet events, so a watch on any of them
	// shows the whole fleet.
	var rel *relay
	if n, ok := store.(hubstore.Notifier); ok && cfg.Keys.OperationsKey != "" {
		rel = newRelay(n, instance, events, m.eventListenerReconnected, o.Now, log.With("component", "events"))
	}
	onEvent := func(e fleet.Event) {
		m.onJobEvent(e)
		events.publish(e)
		if rel != nil {
			rel.send(e)
		}
	}
	if svc, err = buildFleet(cfg, store, ring, tlsCfg, instance, onEvent, o.Now, log); err != nil {
		return err
	}
	var token []byte
	if cfg.HTTP.OperatorTokenFile != "" {
		if token, err = readToken(cfg.HTTP.OperatorTokenFile); err != nil {
			return err
		}
	}
	h, err = refhub.New(refhub.Options{
		BankEIDTrust: bankTrust, Enrolments: enrolments,
		Brokers: cfg.MQTT.Brokers, ClientID: instance, Group: cfg.MQTT.Group, Prefix: cfg.MQTT.Prefix, TLS: tlsCfg,
		Keyring: ring, Signer: signer, Store: store, Workers: cfg.MQTT.Workers, Queue: queue, Registrar: reg,
		ObserveAuth:    m.observeAuth,
		ResolveAt:      resolveAt(trust),
		RefusedForGood: refusedForGood(trust),
		Limits:         hubstore.Limits{MaxTx: cfg.Limits.MaxTx, MaxDaily: cfg.Limits.MaxDaily},
		Logger:         log.With("component", "hub"), Now: o.Now,
	})
	if err != nil {
		return &Error{Key: "mqtt.brokers", Msg: err.Error()}
	}

	// Watchers exist where the operator API is served.
	watchers := svc != nil && token != nil && cfg.HTTP.Listen != ""
	var ln net.Listener
	if cfg.HTTP.Listen != "" {
		if ln, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("health listener: %w", err)
		}
	}
	health := func(ctx context.Context) Health {
		hl := Health{Status: "ok", Instance: instance, Version: o.Version, Store: "ok", Broker: "connecting",
			Devices: len(ring.Devices()), Stats: h.Stats()}
		if h.Online() {
			hl.Broker = "ok"
		} else {
			hl.Status = "degraded"
		}
		// The watch stream's reach, not the hub's work: it does not
		// degrade the instance.
		if rel != nil && watchers {
			hl.Events = rel.health()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := ping(pctx); err != nil {
			hl.Status, hl.Store = "degraded", err.Error()
		}
		return hl
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	hubDone := make(chan error, 1)
	wg.Go(func() { hubDone <- h.Run(runCtx) })
	if svc != nil {
		wg.Go(func() {
			if err := svc.Run(runCtx); err != nil {
				log.Error("fleet service", "err", err)
			}
		})
	}
	if rel != nil && svc != nil {
		wg.Go(func() { rel.run(runCtx, watchers) })
	}
	var srv *http.Server
	if ln != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			hl := health(r.Context())
			w.Header().Set("Content-Type", "application/json")
			if hl.Status != "ok" {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			_ = json.NewEncoder(w).Encode(hl)
		})
		mux.Handle("GET /metrics", m.handler())
		switch {
		case svc != nil && token != nil:
			operatorAPI(mux, token, svc, store, events, cfg.Fleet.Groups)
		case svc != nil:
			log.Warn("no http.operator_token_file: the operator API (/fleet/...) is not served")
		}
		// Long polls (GET /fleet/tx) end when the hub stops: their
		// contexts derive from runCtx, cancelled before Shutdown.
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
			BaseContext: func(net.Listener) context.Context { return runCtx }}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("health server", "err", err)
			}
		})
	}
	wg.Go(func() { prune(runCtx, store, svc, cfg.Store.Retention.Duration, o.Now, log) })
	if trust != nil {
		wg.Go(func() { trust.Run(runCtx) })
	}

	select {
	case <-h.Connected():
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		log.Info("kioskhub serving", "instance", instance, "store", cfg.Store.Kind, "devices", len(ring.Devices()), "filters", h.Filters())
		notify("READY=1")
		if o.Ready != nil {
			addr := ""
			if ln != nil {
				addr = ln.Addr().String()
			}
			o.Ready(addr)
		}
	}
	var tick <-chan time.Time
	if o.WatchdogInterval > 0 {
		t := time.NewTicker(o.WatchdogInterval)
		defer t.Stop()
		tick = t.C
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-hubDone:
			runErr = fmt.Errorf("hub: %w", err)
			break loop
		case <-tick:
			// Only a hub whose store answers is alive.
			pctx, pcancel := context.WithTimeout(ctx, o.WatchdogInterval/2)
			if err := ping(pctx); err == nil {
				notify("WATCHDOG=1")
			} else {
				log.Warn("store does not answer; watchdog not fed", "err", err)
			}
			pcancel()
		}
	}
	notify("STOPPING=1")
	cancel()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	st, _ := json.Marshal(h.Stats())
	log.Info("kioskhub stopped", "stats", string(st))
	return runErr
}

// deviceTrust builds, from [ca], the chain-and-revocation check of device
// certificates and, with the issuing key, the enrollment registrar; both
// nil without a CA.
func deviceTrust(cfg Config, store hubstore.Store, ring *txreport.Keyring, signer *txreport.Signer,
	rotation func(ctx context.Context, device, job string) error, now func() time.Time, log *slog.Logger) (*devtrust.Trust, *registrar.Registrar, error) {
	if cfg.CA.Root == "" {
		return nil, nil, nil
	}
	reg, ok := store.(hubstore.Registry)
	if !ok {
		return nil, nil, &Error{Key: "store.kind", Msg: "this store holds no device registry"}
	}
	roots, err := deviceca.ReadCerts(cfg.CA.Root)
	if err != nil {
		return nil, nil, &Error{Key: "ca.root", Msg: err.Error()}
	}
	inters, err := deviceca.ReadCerts(cfg.CA.IssuingCert)
	if err != nil {
		return nil, nil, &Error{Key: "ca.issuing_cert", Msg: err.Error()}
	}
	trust, err := devtrust.New(devtrust.Options{Verifier: deviceca.NewVerifier(roots, inters), Registry: reg, Now: now,
		Logger: log.With("component", "devtrust")})
	if err != nil {
		return nil, nil, err
	}
	if cfg.CA.IssuingKey == "" {
		return trust, nil, nil
	}
	ca, err := deviceca.Load(cfg.CA.Root, cfg.CA.IssuingCert, cfg.CA.IssuingKey)
	if err != nil {
		return nil, nil, &Error{Key: "ca.issuing_key", Msg: err.Error()}
	}
	read := func(key, path string) (string, error) {
		if path == "" {
			return "", nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", &Error{Key: key, Msg: err.Error()}
		}
		return string(b), nil
	}
	brokerCA, err := read("ca.broker_ca", cfg.CA.BrokerCA)
	if err != nil {
		return nil, nil, err
	}
	bundle, err := read("ca.trust_bundle", cfg.CA.TrustBundle)
	if err != nil {
		return nil, nil, err
	}
	authCert, err := read("keys.auth_cert", cfg.Keys.AuthCert)
	if err != nil {
		return nil, nil, err
	}
	// Enrolled kiosks get the operations certificate with the rest, so
	// that fleet jobs reach them without a second delivery.
	opsCert, err := read("keys.operations_cert", cfg.Keys.OperationsCert)
	if err != nil {
		return nil, nil, err
	}
	r, err := registrar.New(registrar.Options{CA: ca, Registry: reg, Prefix: cfg.MQTT.Prefix, Validity: cfg.CA.Validity.Duration,
		BrokerCA: brokerCA, AuthCert: authCert, OpsCert: opsCert, TrustBundle: bundle, Keyring: ring, Signer: signer, Now: now,
		Rotation: rotation, Logger: log.With("component", "registrar")})
	if err != nil {
		return nil, nil, &Error{Key: "ca.issuing_key", Msg: err.Error()}
	}
	return trust, r, nil
}

// OpenStore opens the configured store and returns its health check.
func OpenStore(ctx context.Context, c Store) (hubstore.Store, func(context.Context) error, error) {
	switch c.Kind {
	case "postgres":
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := pgstore.Open(octx, c.DSN, pgstore.Options{MaxConns: c.MaxConns})
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		return s, s.Ping, nil
	default:
		s, err := hubstore.OpenBolt(c.Path)
		if err != nil {
			return nil, nil, &Error{Key: "store.path", Msg: err.Error()}
		}
		return s, func(context.Context) error { return nil }, nil
	}
}

// prune applies the retention hourly (and once at start). Every instance
// may prune: the deletes are idempotent.
func prune(ctx context.Context, s hubstore.Store, jobs *fleet.Service, keep time.Duration, now func() time.Time, log *slog.Logger) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.Prune(ctx, now().Add(-keep))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("retention: prune failed", "err", err)
		case n != (hubstore.Pruned{}):
			log.Info("retention: pruned", "transactions", n.Transactions, "authorizations", n.Authorizations, "daily", n.DailyEntries)
		}
		// Jobs go by the same retention, counted from their expiry.
		if jobs != nil {
			if n, err := jobs.PruneJobs(ctx, now().Add(-keep)); err != nil && ctx.Err() == nil {
				log.Warn("retention: prune jobs failed", "err", err)
			} else if n > 0 {
				log.Info("retention: pruned jobs", "jobs", n)
			}
		}
		t.Reset(time.Hour)
	}
}

// resolveAt is the trust's report-time resolver, nil without a device CA.
func resolveAt(t *devtrust.Trust) func(string, time.Time) (txreport.Device, bool) {
	if t == nil {
		return nil
	}
	return t.ResolveAt
}

// refusedForGood is the trust's permanent-refusal check, nil without a
// device CA.
func refusedForGood(t *devtrust.Trust) func(string, string) bool {
	if t == nil {
		return nil
	}
	return t.RefusedForGood
}

// queueTopics are the sub-topics an AMQP-fed instance consumes: reports
// and authorization requests, and face reference requests when its
// store holds enrolments.
func queueTopics(faces bool) []string {
	t := []string{hub.TopicTx, hub.TopicAuthReq}
	if faces {
		t = append(t, hub.TopicFaceRefReq)
	}
	return t
}
