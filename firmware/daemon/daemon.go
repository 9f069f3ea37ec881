// Package daemon wires kioskd together: it builds the drivers named by the
// configuration, runs each under one owner, turns their reports into events
// on one bus, serves the local status page and health endpoint, and shuts
// everything down in bounded time.
package daemon

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kiosk/drivers/camera"
	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/pcsc"
	simreader "kiosk/drivers/cardreader/sim"
	"kiosk/drivers/gpio"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/config"
	"kiosk/firmware/devicekey"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/firmware/event"
	"kiosk/firmware/face"
	"kiosk/firmware/hub"
	"kiosk/firmware/jobs"
	"kiosk/firmware/logtail"
	"kiosk/firmware/session"
	"kiosk/firmware/txreport"
	"kiosk/internal/backoff"
	"kiosk/provisioning/hubstore"
)

// Options are the parts of a Daemon that do not come from the config file.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Notify is called with sd_notify states ("READY=1", "WATCHDOG=1",
	// "STOPPING=1", "STATUS=..."). Nil means no notifications.
	Notify func(state string)
	// WatchdogInterval is how often WATCHDOG=1 is sent (0 = never).
	WatchdogInterval time.Duration
	// SimCard makes the card inserted by the simulated reader's "insert"
	// control. Nil means the default test card.
	SimCard func() cardreader.CardHandler
	// Now is the clock of certificate renewal and its health (tests);
	// nil means time.Now.
	Now func() time.Time
	// Speak replaces the kiosk's speech output (espeak-ng on the audio
	// device) for tests, which record what would be said and at which
	// volume level (1-8). It must return when ctx ends (the shopper
	// paused or asked again). Nil: espeak-ng.
	Speak func(ctx context.Context, lang, text string, volume int) error
	// Enrolments is the embedded hub's store of enrolled face references
	// (bank eID holders); nil: it has none (tests set it).
	Enrolments hubstore.Enrolments
	// Reboot replaces `systemctl reboot` for the reboot job (tests).
	Reboot func(ctx context.Context) error
}

// Daemon is one running kioskd.
type Daemon struct {
	cfg     config.Config
	opts    Options
	log     *slog.Logger
	logs    *logtail.Ring // the log's last lines, redacted (collect_logs)
	bus     *event.Bus
	started time.Time
	// lifeMu orders sd_notify states: once stopping is set (with
	// STOPPING=1), no READY=1 follows.
	lifeMu   sync.Mutex
	stopping bool

	// The device key: in a TPM (tpm set) or a file; deviceKey is nil
	// until the kiosk is enrolled.
	// storeMu guards keys and tpm: the feedback goroutine (tamper wipe),
	// HTTP handlers (enrollment, health) and the renewer share them.
	storeMu   sync.Mutex
	keys      devicekey.Store // use keyStore() and openKeyStore()
	tpm       *devicekey.TPM
	keyMu     sync.Mutex
	deviceKey crypto.Signer // use key() and setKey()
	// decommissioned: the transaction state is wiped and closed; only a
	// restart after a new enrollment brings the kiosk back.
	decommissioned atomic.Bool

	pump    *camera.Pump
	cards   cardreader.Driver
	simCard *simreader.Reader

	gpioMu  sync.Mutex
	gpio    gpio.Driver // nil until opened
	simGPIO *gpio.Sim
	gpioErr string

	hub    *hub.Client
	broker *hub.EmbeddedBroker
	jobs   *jobs.Runner // nil without an operations certificate
	ota    *ota         // firmware updates (update.go)
	// fileCfg is the configuration file's; cfg has the operator's
	// settings laid over it (opconfig.go). opMu guards opConfig (nil:
	// none applied) and opErr.
	fileCfg  config.Config
	opMu     sync.Mutex
	opConfig *OperatorConfig
	opErr    string
	// bundleMu serialises trust bundle installs; bundleVersion is the
	// installed bundle's version (0: eid.trust_dir).
	bundleMu      sync.Mutex
	bundleVersion atomic.Int64
	// presenceKeys opens the hub's sealed presence: the hub's
	// authorization certificates, known once buildSession has run.
	presenceKeys atomic.Pointer[txreport.Keyring]

	trust      *trustStore
	tx         *txStack
	session    *session.Machine
	face       session.Face
	faceClose  func()
	faceErr    string
	faceModels map[string]string
	// facePos reports the face step's tracked face for the preview's
	// guide; nil without a working verifier.
	facePos func() (face.Position, bool)
	ecrLn   net.Listener
	ecrSrv  *http.Server

	httpLn     net.Listener
	httpSrv    *http.Server
	httpCancel context.CancelFunc
}

// New builds every component from cfg without starting any. Errors are
// configuration errors (the caller exits 2) or a busy HTTP port (exit 1).
func New(cfg config.Config, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The last lines, redacted, for the fleet's collect_logs job.
	logs := logtail.New(0, 0)
	log = slog.New(logtail.Tee(log.Handler(), logs, slog.LevelInfo))
	fileCfg := cfg
	cfg, opConfig, opErr := applyOperatorConfig(cfg)
	if opErr != "" {
		log.Error("operator configuration", "err", opErr)
	}
	d := &Daemon{cfg: cfg, fileCfg: fileCfg, opConfig: opConfig, opErr: opErr, opts: opts, log: log, logs: logs, bus: event.New(nil)}

	switch cfg.Camera.Backend {
	case "none":
	default:
		spec := camera.Spec{
			Kind: cfg.Camera.Backend, Device: cfg.Camera.Device, Pipeline: cfg.Camera.Pipeline,
			Path: cfg.Camera.Path, Width: cfg.Camera.Width, Height: cfg.Camera.Height, FPS: cfg.Camera.FPS,
			Loop: cfg.Camera.Backend == "sim", Cues: cfg.Camera.SimCues, CueLength: cfg.Camera.SimCueLength,
		}
		if u := cfg.Camera.USB; u.Pinned() {
			spec.USB = &camera.USBID{Vendor: u.Vendor, Product: u.Product, Serial: u.Serial}
		}
		src, err := camera.NewSource(spec)
		if err != nil {
			return nil, &config.Error{Key: "camera", Msg: err.Error()}
		}
		d.pump = camera.NewPump(src, camera.PumpOptions{
			Logger: log.With("component", "camera"), ReopenMin: cfg.Camera.ReopenMin, ReopenMax: cfg.Camera.ReopenMax,
			OnState: func(s camera.Status) {
				d.bus.Publish(event.Event{Source: "camera", Kind: "camera.state", Data: cameraState{State: s.State, Detail: s.Detail}})
			},
		})
	}

	switch cfg.CardReader.Backend {
	case "pcsc":
		d.cards = pcsc.New(pcsc.Options{
			Logger: log.With("component", "cardreader"), ReaderFilter: cfg.CardReader.Reader,
			// The next session must find the chip without our secure
			// messaging state, even if the shopper left the card in.
			ResetOnClose:    true,
			TransmitTimeout: cfg.CardReader.TransmitTimeout,
			PollBackoffMin:  cfg.CardReader.RetryMin, PollBackoffMax: cfg.CardReader.RetryMax,
		})
	case "sim":
		d.simCard = simreader.New("Simulated Reader 00", log.With("component", "cardreader"))
		d.cards = d.simCard
		if cfg.EID.SimCard != "" && opts.SimCard == nil && bankcard.IsImage(cfg.EID.SimCard) {
			// A virtual bank eID card (kioskctl eid issue --kind bankeid).
			im, err := bankcard.Load(cfg.EID.SimCard)
			if err != nil {
				return nil, &config.Error{Key: "eid.sim_card", Msg: err.Error()}
			}
			chip, err := bankcard.New(im, bankcard.Options{Logger: log.With("component", "bankcard")})
			if err != nil {
				return nil, &config.Error{Key: "eid.sim_card", Msg: err.Error()}
			}
			d.opts.SimCard = func() cardreader.CardHandler { return chip }
		}
		if cfg.EID.SimCard != "" && d.opts.SimCard == nil {
			// The demo's eID: one virtual chip, re-inserted each time, so
			// its PIN counter behaves like a real card's.
			img, err := cardimage.Load(cfg.EID.SimCard)
			if err != nil {
				return nil, &config.Error{Key: "eid.sim_card", Msg: err.Error()}
			}
			chip, err := vcard.New(img, vcard.Options{Logger: log.With("component", "vcard")})
			if err != nil {
				return nil, &config.Error{Key: "eid.sim_card", Msg: err.Error()}
			}
			d.opts.SimCard = func() cardreader.CardHandler { return chip }
		}
	}

	if err := d.openKeys(); err != nil {
		d.closeEarly()
		return nil, err
	}

	{ // the hub link: configured brokers, or the embedded one
		brokers := cfg.Hub.Brokers
		if len(brokers) == 0 {
			b, err := hub.StartEmbeddedBroker(cfg.Hub.Embedded.Listen, log.With("component", "broker"))
			if err != nil {
				return nil, fmt.Errorf("start embedded broker: %w", err)
			}
			d.broker = b
			brokers = []string{b.URL()}
		}
		opts, err := hubOptions(cfg, brokers, d.key())
		if err != nil {
			d.closeEarly()
			return nil, err
		}
		// The device key's certificate is read at each connection: a
		// re-enrolled or renewed kiosk reconnects with the new one.
		if cfg.Hub.CertFile != "" && (cfg.Tx.KeyStorage == "tpm" || cfg.Hub.KeyFile == cfg.Tx.DeviceKey) {
			if opts.TLS == nil {
				opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			opts.TLS.Certificates = nil
			opts.TLS.GetClientCertificate = d.clientCertificate
		}
		opts.Logger = log.With("component", "hub")
		opts.OnState = func(s hub.Status) {
			d.bus.Publish(event.Event{Source: "hub", Kind: "hub.state", Data: s})
		}
		opts.OpenHubPresence = func(b []byte) (hub.Presence, error) {
			keys := d.presenceKeys.Load()
			if keys == nil {
				return hub.Presence{}, errors.New("no hub.auth_cert: hub presence is not followed")
			}
			var p hub.Presence
			_, err := keys.Open(b, &p)
			return p, err
		}
		h, err := hub.New(opts)
		if err != nil {
			d.closeEarly()
			return nil, err
		}
		d.hub = h
	}

	if err := d.buildSession(); err != nil {
		d.closeEarly()
		return nil, err
	}
	if err := d.buildUpdate(); err != nil {
		d.closeEarly()
		return nil, &config.Error{Key: "update", Msg: err.Error()}
	}

	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		d.closeEarly()
		return nil, fmt.Errorf("status page: listen on %s: %w", cfg.HTTP.Listen, err)
	}
	d.httpLn = ln
	// Streams (SSE) would hold Shutdown until its deadline: their request
	// contexts derive from httpCtx, which shutdown cancels first.
	httpCtx, httpCancel := context.WithCancel(context.Background())
	d.httpCancel = httpCancel
	d.httpSrv = &http.Server{
		Handler: d.routes(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return httpCtx },
	}
	return d, nil
}

func (d *Daemon) closeEarly() {
	if d.ecrLn != nil {
		d.ecrLn.Close()
	}
	d.closeStores()
}

// closeStores closes the face models, the transaction files and the
// embedded broker: the last step of a start that failed and of shutdown.
func (d *Daemon) closeStores() {
	if d.faceClose != nil {
		d.faceClose()
	}
	if d.tx != nil {
		d.tx.close()
	}
	if d.broker != nil {
		d.broker.Close()
	}
	d.storeMu.Lock()
	if d.tpm != nil {
		d.tpm.Close()
		d.tpm, d.keys = nil, nil
	}
	d.storeMu.Unlock()
}

// hubOptions: with a TPM-held key the client certificate's key is
// deviceKey (nil when no key exists yet: then no client certificate).
func hubOptions(cfg config.Config, brokers []string, deviceKey crypto.Signer) (hub.Options, error) {
	o := hub.Options{
		Brokers: brokers, ClientID: cfg.ClientID(), DeviceID: cfg.Device.ID, TopicPrefix: cfg.Hub.TopicPrefix,
		Username: cfg.Hub.Username, KeepAlive: cfg.Hub.KeepAlive, ConnectTimeout: cfg.Hub.ConnectTimeout,
		RetryMax: cfg.Hub.RetryMax,
	}
	if cfg.Hub.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Hub.PasswordFile)
		if err != nil {
			return o, &config.Error{Key: "hub.password_file", Msg: err.Error()}
		}
		o.Password = strings.TrimSpace(string(b))
	}
	var tlsCfg *tls.Config
	var err error
	if cfg.Tx.KeyStorage == "tpm" && cfg.Hub.CertFile != "" && deviceKey != nil {
		tlsCfg, err = hub.TLSConfigSigner(cfg.Hub.CAFile, cfg.Hub.CertFile, deviceKey)
	} else {
		tlsCfg, err = hub.TLSConfig(cfg.Hub.CAFile, cfg.Hub.CertFile, cfg.Hub.KeyFile)
	}
	if err != nil {
		return o, &config.Error{Key: "hub", Msg: err.Error()}
	}
	o.TLS = tlsCfg
	return o, nil
}

// Addr is the status page's listening address.
func (d *Daemon) Addr() string { return d.httpLn.Addr().String() }

// Bus is the kiosk's event stream.
func (d *Daemon) Bus() *event.Bus { return d.bus }

// Run starts every component and blocks until ctx ends, then shuts down
// within the configured timeout. It returns an error only when shutdown
// did not finish in time.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	compCtx, stopComponents := context.WithCancel(context.Background())
	defer stopComponents()
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(compCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, gpio.ErrClosed) {
				d.log.Error("component stopped with an error", "component", name, "err", err)
			}
		})
	}

	if d.pump != nil {
		run("camera", d.pump.Run)
	}
	if d.cards != nil {
		run("cardreader", func(ctx context.Context) error {
			return d.cards.Run(ctx, d.onCardEvent)
		})
	}
	if d.cfg.GPIO.Backend != "none" {
		run("gpio", d.runGPIO)
	}
	if d.hub != nil {
		run("hub", d.hub.Run)
		if d.jobs != nil {
			run("jobs", d.jobs.Run)
		}
		run("telemetry", d.telemetry)
		run("hub-events", d.forwardEvents)
	}
	if d.tx != nil {
		run("delivery", d.tx.flow.Run)
		if d.tx.renewer != nil {
			run("renewal", d.tx.renewer.Run)
		}
		if d.tx.refhub != nil {
			run("embedded-hub", d.tx.refhub.Run)
		}
	}
	if d.session != nil {
		run("session", d.session.Run)
	}
	run("feedback", d.runFeedback)
	run("update", d.runUpdate)
	if d.session != nil && d.cfg.Speech.Mode != "off" {
		run("speech", d.runSpeech)
	}
	if d.ecrSrv != nil {
		wg.Go(func() {
			var err error
			if d.ecrSrv.TLSConfig != nil {
				err = d.ecrSrv.ServeTLS(d.ecrLn, "", "")
			} else {
				err = d.ecrSrv.Serve(d.ecrLn)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("ECR API server failed", "err", err)
			}
		})
	}
	wg.Go(func() {
		if err := d.httpSrv.Serve(d.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("status page server failed", "err", err)
		}
	})

	d.notify("READY=1")
	d.notify("STATUS=running")
	d.ota.readyOnce.Do(func() { close(d.ota.ready) })
	d.log.Info("kioskd running", "device", d.cfg.Device.ID, "mode", d.cfg.Device.Mode, "status_page", "http://"+d.Addr())
	d.bus.Publish(event.Event{Source: "kioskd", Kind: "kioskd.started"})

	var tick <-chan time.Time
	if d.opts.WatchdogInterval > 0 {
		t := time.NewTicker(d.opts.WatchdogInterval)
		defer t.Stop()
		tick = t.C
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick:
			d.notify("WATCHDOG=1")
		}
	}

	d.lifeMu.Lock()
	d.stopping = true
	d.notify("STOPPING=1")
	d.lifeMu.Unlock()
	d.log.Info("kioskd stopping", "timeout", d.cfg.Shutdown.Timeout)
	deadline := time.Now().Add(d.cfg.Shutdown.Timeout)
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	stopComponents()
	d.httpCancel()
	_ = d.httpSrv.Shutdown(shutCtx)
	if d.ecrSrv != nil {
		_ = d.ecrSrv.Shutdown(shutCtx)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var err error
	select {
	case <-finished:
	case <-shutCtx.Done():
		err = fmt.Errorf("shutdown did not finish within %s", d.cfg.Shutdown.Timeout)
	}
	d.gpioMu.Lock()
	if d.gpio != nil {
		if cerr := d.gpio.Close(); cerr != nil {
			d.log.Warn("gpio close", "err", cerr)
		}
	}
	d.gpioMu.Unlock()
	d.closeStores()
	d.bus.Close()
	if err == nil {
		d.log.Info("kioskd stopped")
	}
	return err
}

func (d *Daemon) notify(state string) {
	if d.opts.Notify != nil {
		d.opts.Notify(state)
	}
}

type cameraState struct {
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

type cardEvent struct {
	Reader string              `json:"reader,omitempty"`
	ATR    cardreader.HexBytes `json:"atr,omitempty"`
	Err    string              `json:"error,omitempty"`
}

func (d *Daemon) onCardEvent(e cardreader.Event) {
	d.forwardCard(e)
	d.bus.Publish(event.Event{
		Source: "cardreader", Kind: e.Kind.String(), Time: e.Time,
		Data: cardEvent{Reader: e.Reader, ATR: e.ATR, Err: e.Err},
	})
}

type gpioEvent struct {
	Role   string `json:"role"`
	Active bool   `json:"active"`
}

// runGPIO opens the GPIO backend, retrying with back-off when the chip is
// missing (kioskd keeps running, degraded), then watches the inputs.
func (d *Daemon) runGPIO(ctx context.Context) error {
	cfg := gpio.Config{Pins: map[gpio.Role]gpio.PinConfig{}, Debounce: d.cfg.GPIO.Debounce}
	for role, p := range d.cfg.GPIO.Pins {
		cfg.Pins[gpio.Role(role)] = gpio.PinConfig{Line: p.Line, ActiveLow: p.ActiveLow, Pull: p.Pull}
	}
	log := d.log.With("component", "gpio")
	for attempt := 1; ; attempt++ {
		var drv gpio.Driver
		var err error
		if d.cfg.GPIO.Backend == "sim" {
			var s *gpio.Sim
			s, err = gpio.NewSim(cfg, log)
			if err == nil {
				d.gpioMu.Lock()
				d.simGPIO = s
				d.gpioMu.Unlock()
				drv = s
			}
		} else {
			drv, err = gpio.OpenHost(cfg, log)
		}
		if err == nil {
			d.gpioMu.Lock()
			d.gpio, d.gpioErr = drv, ""
			d.gpioMu.Unlock()
			return drv.Run(ctx, func(e gpio.InputEvent) {
				d.bus.Publish(event.Event{Source: "gpio", Kind: "gpio.input", Time: e.Time, Data: gpioEvent{Role: string(e.Role), Active: e.Active}})
			})
		}
		d.gpioMu.Lock()
		d.gpioErr = err.Error()
		d.gpioMu.Unlock()
		wait := backoff.Exp(500*time.Millisecond, 30*time.Second, attempt)
		log.Warn("gpio unavailable, retrying", "err", err, "retry_in", wait)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// cueCamera shows the simulated camera's configured part of its video
// as the face step ("face") and its smile phase ("smile") begin
// (camera.sim_cues; config refuses them outside simulation).
func (d *Daemon) cueCamera(sessionKind string) {
	if d.pump == nil || len(d.cfg.Camera.SimCues) == 0 {
		return
	}
	var cue string
	switch sessionKind {
	case "session." + string(session.FaceMatch):
		cue = "face"
	case "session." + string(session.Smile):
		cue = "smile"
	default:
		return
	}
	if _, ok := d.cfg.Camera.SimCues[cue]; !ok {
		return
	}
	if err := d.pump.Cue(cue); err != nil {
		d.log.Warn("camera cue", "cue", cue, "err", err)
	}
}

func (d *Daemon) now() time.Time {
	if d.opts.Now != nil {
		return d.opts.Now()
	}
	return time.Now()
}
