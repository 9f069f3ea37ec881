package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/drivers/cardreader/cardtest"
	"kiosk/drivers/cardreader/pcscdtest"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/config"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/firmware/event"
	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txreport"
	"kiosk/internal/testmedia"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/issuer"
)

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[camera]\nbackend = \"sim\"\nfps = \"fast\"\n"), 0o600)
	good := filepath.Join("..", "..", "provisioning", "config", "sim.toml")
	// Production without mutual TLS: a plain broker and no client certificate.
	plain := filepath.Join(dir, "plain.toml")
	os.WriteFile(plain, []byte("[device]\nmode = \"production\"\n[hub]\nbrokers = [\"tcp://hub:1883\"]\nauth_cert = \"/a.pem\"\n"), 0o600)
	// Production takes only a camera: a file or a GStreamer pipeline could
	// play a recording in the shopper's place.
	fileCam := filepath.Join(dir, "file-camera.toml")
	os.WriteFile(fileCam, []byte("[device]\nmode = \"production\"\n[camera]\nbackend = \"file\"\npath = \"/tmp/v.mp4\"\n"), 0o600)
	gstCam := filepath.Join(dir, "gst-camera.toml")
	os.WriteFile(gstCam, []byte("[device]\nmode = \"production\"\n[camera]\nbackend = \"gstreamer\"\npipeline = \"videotestsrc ! appsink\"\n"), 0o600)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--config", bad}, ExitConfig, "fps"},
		{[]string{"--config", filepath.Join(dir, "none.toml")}, ExitConfig, "no such file"},
		{[]string{"--config", fileCam, "--check-config"}, ExitConfig, "camera.backend: file is refused in production mode"},
		{[]string{"--config", gstCam, "--check-config"}, ExitConfig, "camera.backend: gstreamer is refused in production mode"},
		{[]string{"--config", good, "--check-config"}, ExitOK, "is valid"},
		{[]string{"--bogus"}, ExitConfig, "flag provided but not defined"},
		{[]string{"--config", good, "extra"}, ExitConfig, "unexpected argument"},
		{[]string{"--config", plain}, ExitConfig, "hub.brokers[0]"},
		{[]string{"--config", plain}, ExitConfig, "hub.cert_file"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		if code := Main(tt.args, &stderr, "test"); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("Main(%q) = %d, stderr %q; want %d containing %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
	}
}

// running is a daemon started by a test, stopped at cleanup.
type running struct {
	d       *Daemon
	base    string
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	notices []string
	events  *event.Subscription
	log     *lockedBuffer // everything the daemon logged
}

func start(t *testing.T, toml string) *running {
	t.Helper()
	return startWith(t, toml, nil)
}

// startWith is start with Options changed by mod.
func startWith(t *testing.T, toml string, mod func(*Options)) *running {
	t.Helper()
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// The test process hosts kiosk after kiosk: its RSS is not one
	// kioskd's, so the memory ceiling would turn health degraded.
	if !strings.Contains(toml, "rss_ceiling_mib") {
		cfg.Memory.RSSCeilingMiB = 16384
	}
	logger, logBuf := testLoggerBuf(t)
	r := &running{done: make(chan error, 1), log: logBuf}
	opts := Options{
		Logger: logger, Version: "test",
		Notify: func(s string) { r.mu.Lock(); r.notices = append(r.notices, s); r.mu.Unlock() },
		// Short so the test sees watchdog pings.
		WatchdogInterval: 50 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	d, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.d, r.base = d, "http://"+d.Addr()
	r.events = d.Bus().Subscribe(context.Background(), 1024)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15 s")
	}
}

func (r *running) notified(state string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.notices, state)
}

// waitEvent waits for an event of kind on the daemon's bus.
func (r *running) waitEvent(t *testing.T, kind string, match func(event.Event) bool) event.Event {
	t.Helper()
	return r.waitEventWithin(t, 15*time.Second, kind, match)
}

func (r *running) waitEventWithin(t *testing.T, d time.Duration, kind string, match func(event.Event) bool) event.Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-r.events.C:
			if !ok {
				t.Fatalf("bus closed while waiting for %s", kind)
			}
			if e.Kind == kind && (match == nil || match(e)) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within %s; health %+v", kind, d, r.d.Health())
		}
	}
}

func (r *running) waitHealth(t *testing.T, what string, ok func(Health) bool) Health {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var h Health
		resp, err := http.Get(r.base + "/healthz")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
		}
		if err == nil && ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never %s: %+v (err %v)", what, h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// testLoggerBuf collects the daemon's log (returned too) and prints it only when the test
// fails (goroutines may still log after the test returns).
func testLoggerBuf(t *testing.T) (*slog.Logger, *lockedBuffer) {
	w := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kioskd log:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// simConfig is a simulated kiosk with a virtual eID (photo franck_01829)
// issued for the test, its trust store and the real face models.
func simConfig(t testing.TB, video string) string {
	cfg, _ := simConfigWith(t, video, nil, "")
	return cfg
}

// simConfigWith issues the card with mod applied and, with a broker URL,
// connects to that broker instead of the embedded one and its hub.
func simConfigWith(t testing.TB, video string, mod func(*issuer.Options), broker string) (cfg, dir string) {
	cfg, dir, _ = simKiosk(t, video, mod, broker)
	return cfg, dir
}

// simKiosk is simConfigWith that also returns the card's PKI; the trust
// directory is dir/card/trust.
func simKiosk(t testing.TB, video string, mod func(*issuer.Options), broker string) (cfg, dir string, trust *issuer.Trust) {
	dir = t.TempDir()
	if broker != "" {
		// A real hub needs the device certificate: make a development key.
		if _, err := devkey.Create(dir, filepath.Join(dir, "devices"), "kiosk-test"); err != nil {
			t.Fatal(err)
		}
	}
	// The hub's operations key: fleet jobs sealed by it run (sealJob).
	if _, err := devkey.Create(filepath.Join(dir, "ops"), filepath.Join(dir, "ops", "devices"), "hub-operations"); err != nil {
		t.Fatal(err)
	}
	photo, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	o := issuer.Options{
		DocNumber: "C01X00T47", Surname: "MUSTERMANN", Given: "ERIKA", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468", Photo: photo,
		// As issued today: the chip proves itself (the kiosk refuses
		// documents whose chip cannot, issue 11).
		ChipAuth: &issuer.CAParams{}, ActiveAuth: issuer.AAECDSAP256,
	}
	if mod != nil {
		mod(&o)
	}
	img, trust, err := issuer.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	card := filepath.Join(dir, "card")
	if err := img.Save(card); err != nil {
		t.Fatal(err)
	}
	if err := trust.WriteDir(filepath.Join(card, "trust")); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[eid]
trust_dir = %q
sim_card = %q
[face]
models_dir = %q
# The test video smiles now and then: leave it time to, whatever the
# machine's load when the face step starts.
smile_timeout = "25s"
[transactions]
state_dir = %q
floor_limit_minor = 5000
offline_cap_minor = 20000
embedded_hub = %v
auth_timeout = "1s"
device_key = %q
device_cert = %q
# A tamper wipes the salt file: never the machine's.
doc_salt_file = %q
[ecr]
listen = "127.0.0.1:0"
token_file = %q
[device]
id = "kiosk-test"
mode = "simulation"
[http]
listen = "127.0.0.1:0"
[camera]
backend = "sim"
path = %q
[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[hub]
telemetry_every = "1s"
retry_max = "1s"
brokers = [%s]
operations_cert = %q
[hub.embedded]
listen = "127.0.0.1:0"
[shutdown]
timeout = "5s"
`, filepath.Join(card, "trust"), card, testmedia.Models(t), filepath.Join(dir, "state"), broker == "",
		filepath.Join(dir, "kiosk-test.key"), filepath.Join(dir, "kiosk-test.crt"), filepath.Join(dir, "doc-salt"),
		filepath.Join(dir, "ecr-token"), video, quoteIf(broker), filepath.Join(dir, "ops", "hub-operations.crt")), dir, trust
}

func quoteIf(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("%q", s)
}

// The whole simulated kiosk: real video through OpenCV, the in-process
// card, simulated GPIO and the embedded broker, observed through the HTTP
// API exactly as the status page uses it.
func TestSimulationEndToEnd(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	cfg, dir := simConfigWith(t, video, nil, "")
	r := start(t, cfg)

	h := r.waitHealth(t, "ok", func(h Health) bool { return h.Status == "ok" })
	// The fleet pings the kiosk over MQTT (before the tamper below
	// withdraws the device key that seals the statuses).
	jobObs := mqttObserver(t, r.d.broker.URL(), "kiosk/v1/kiosk-test/#")
	// The unsigned command of earlier versions is gone: only a job
	// sealed by the operations key runs.
	jobObs.publish(t, "kiosk/v1/kiosk-test/cmd/ping", `{"id":"p1"}`)
	jobObs.publish(t, "kiosk/v1/kiosk-test/jobs/notify", string(sealJob(t, dir, "p2", jobwire.KindPing)))
	for _, want := range []string{`"status":"queued"`, `"status":"in_progress"`, `"status":"succeeded"`} {
		if st := jobObs.waitMatch(t, "kiosk/v1/kiosk-test/jobs/status", want); !strings.Contains(st, `"job_id":"p2"`) {
			t.Fatalf("ping job status %s", st)
		}
	}
	jobObs.mu.Lock()
	unsigned := len(jobObs.msgs["kiosk/v1/kiosk-test/reply/ping"])
	jobObs.mu.Unlock()
	if unsigned != 0 {
		t.Fatal("an unsigned command was answered")
	}
	for _, c := range []string{"camera", "cardreader", "gpio", "hub"} {
		if h.Components[c].State != "ok" {
			t.Fatalf("%s not ok: %+v", c, h.Components[c])
		}
	}
	if !r.notified("READY=1") {
		t.Fatal("READY=1 not sent")
	}

	// Server-Sent Events carry the bus to the page.
	req, _ := http.NewRequest("GET", r.base+"/api/events", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events content type %q", ct)
	}
	sse := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "event: ") {
				sse <- strings.TrimPrefix(l, "event: ")
			}
		}
		close(sse)
	}()

	if code, body := postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`); code != 200 {
		t.Fatalf("insert: %d %s", code, body)
	}
	e := r.waitEvent(t, "card.inserted", nil)
	if ce := e.Data.(cardEvent); !bytes.Equal(ce.ATR, vcard.DefaultATR(true)) {
		t.Fatalf("ATR %s", ce.ATR)
	}
	waitSSE(t, sse, "card.inserted")
	if code, _ := postJSON(t, r.base+"/api/sim/card", `{"action":"insert"}`); code != http.StatusConflict {
		t.Fatalf("second insert: %d, want 409", code)
	}
	postJSON(t, r.base+"/api/sim/card", `{"action":"remove"}`)
	r.waitEvent(t, "card.removed", nil)

	if code, body := postJSON(t, r.base+"/api/sim/gpio", `{"role":"tamper","active":true}`); code != 200 {
		t.Fatalf("gpio: %d %s", code, body)
	}
	r.waitEvent(t, "gpio.input", func(e event.Event) bool {
		g := e.Data.(gpioEvent)
		return g.Role == "tamper" && g.Active
	})
	waitSSE(t, sse, "gpio.input")

	// Bad control requests get clear errors.
	for _, tc := range []struct{ url, ct, body string }{
		{"/api/sim/gpio", "application/json", `{"role":"led_red","active":true}`},
		{"/api/sim/gpio", "application/json", `{"role":"tamper","active":"yes"}`},
		{"/api/sim/card", "application/json", `{"action":"shred"}`},
		{"/api/sim/card", "text/plain", `{"action":"insert"}`},
		{"/api/sim/card", "application/json", `{"action":"insert","extra":1}`},
	} {
		resp, err := http.Post(r.base+tc.url, tc.ct, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || !strings.Contains(string(b), "error") {
			t.Errorf("%s %s: %d %s", tc.url, tc.body, resp.StatusCode, b)
		}
	}

	// The thumbnail is a real JPEG of the video.
	resp2, err := http.Get(r.base + "/api/camera/frame.jpg")
	if err != nil {
		t.Fatal(err)
	}
	jpg, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 200 || len(jpg) < 1000 || !bytes.HasPrefix(jpg, []byte{0xFF, 0xD8}) {
		t.Fatalf("frame: %d, %d bytes", resp2.StatusCode, len(jpg))
	}
	// The status page itself is served.
	resp3, err := http.Get(r.base + "/status/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp3.Body)
	resp3.Body.Close()
	if !strings.Contains(string(page), "kioskd") || !strings.Contains(string(page), "status.js") {
		t.Fatalf("status page: %.200s", page)
	}

	// The fleet sees telemetry.
	obs := jobObs
	obs.wait(t, "kiosk/v1/kiosk-test/telemetry/health", 1)

	time.Sleep(120 * time.Millisecond)
	if !r.notified("WATCHDOG=1") {
		t.Fatal("no watchdog ping")
	}
	r.stop(t)
	if !r.notified("STOPPING=1") {
		t.Fatal("STOPPING=1 not sent")
	}
}

func waitSSE(t *testing.T, sse <-chan string, kind string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case k, ok := <-sse:
			if !ok {
				t.Fatalf("event stream ended before %s", kind)
			}
			if k == kind {
				return
			}
		case <-timeout:
			t.Fatalf("no %s on the event stream", kind)
		}
	}
}

// While a firmware update installs no session starts: the till hears
// "updating" and the screen's state says so; afterwards payments start again.
func TestNoSessionWhileInstalling(t *testing.T) {
	r := start(t, simConfig(t, testmedia.Path(t, "franck.mp4")))
	r.waitHealth(t, "camera ok", func(h Health) bool { return h.Components["camera"].State == "ok" })
	r.d.ota.installing.Store(true)
	notReady(t, r, "till-updating", "updating")
	r.d.ota.installing.Store(false)
	if code, body := ecrCreate(t, r, "till-updated", 2350); code != http.StatusCreated {
		t.Fatalf("payment after the install: %d %s", code, body)
	}
	r.waitEvent(t, "session.insert_card", nil)
}

// notReady checks that the till's payment request is refused now with
// reason why, and that the screen's state names the same.
func notReady(t *testing.T, r *running, till, why string) {
	t.Helper()
	if code, body := ecrCreate(t, r, till, 2350); code != http.StatusServiceUnavailable || !strings.Contains(body, why) {
		t.Fatalf("payment request: %d %s, want 503 %s", code, body, why)
	}
	var ui uiScreenState
	getJSON(t, r.base+"/api/ui/state", &ui)
	if ui.NotReady != why {
		t.Fatalf("screen state not_ready %q, want %s", ui.NotReady, why)
	}
}

// A kiosk whose camera file is missing keeps running, reports degraded
// health, and recovers when the camera returns, without a restart.
func TestDegradedCameraRecovers(t *testing.T) {
	src := testmedia.Path(t, "franck.mp4")
	video := filepath.Join(t.TempDir(), "camera.mp4")
	r := start(t, simConfig(t, video))
	h := r.waitHealth(t, "degraded", func(h Health) bool {
		return h.Status == "degraded" && h.Components["camera"].State != "ok"
	})
	if h.Components["camera"].Detail == "" {
		t.Fatal("degraded camera without a reason")
	}
	// No camera, no session: the till hears why at once, the screen too.
	r.waitHealth(t, "camera down", func(h Health) bool { return h.Components["camera"].State == "down" })
	notReady(t, r, "till-no-camera", "camera_down")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(video, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r.waitHealth(t, "ok again", func(h Health) bool { return h.Components["camera"].State == "ok" })
	if code, body := ecrCreate(t, r, "till-camera-back", 2350); code != http.StatusCreated {
		t.Fatalf("payment with the camera back: %d %s", code, body)
	}
	r.waitEvent(t, "session.insert_card", nil)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// The real stack: pcscd with a vpcd reader and a Go card, and a mosquitto
// broker. pcscd and the broker are restarted under the running kiosk.
func TestRealPCSCAndMosquitto(t *testing.T) {
	srv := pcscdtest.Start(t, 1)
	broker := mqtttest.StartMosquitto(t)
	r := start(t, fmt.Sprintf(`
[device]
id = "kiosk-real"
mode = "simulation"
[http]
listen = "127.0.0.1:0"
[camera]
backend = "none"
[cardreader]
backend = "pcsc"
retry_min = "50ms"
retry_max = "500ms"
[gpio]
backend = "sim"
[hub]
brokers = [%q]
retry_max = "1s"
[ecr]
listen = ""
[transactions]
state_dir = %q
`, broker.URL(), t.TempDir()))
	r.waitHealth(t, "reader and hub ok", func(h Health) bool {
		return h.Components["cardreader"].State == "ok" && h.Components["hub"].State == "ok"
	})

	ctx, cancel := context.WithCancel(context.Background())
	cardDone := make(chan error, 1)
	go func() { cardDone <- vpcd.Serve(ctx, srv.VPCDAddr(0), cardtest.New(nil), nil) }()
	r.waitEvent(t, "card.inserted", nil)
	cancel()
	<-cardDone
	r.waitEvent(t, "card.removed", nil)

	// pcscd restarts under the running daemon.
	srv.Restart(t)
	r.waitEvent(t, "service.down", nil)
	r.waitEvent(t, "service.up", nil)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _ = vpcd.Serve(ctx2, srv.VPCDAddr(0), cardtest.New(nil), nil) }()
	r.waitEvent(t, "card.inserted", nil)

	// The broker dies and comes back.
	broker.Stop()
	r.waitHealth(t, "degraded by the hub", func(h Health) bool { return h.Components["hub"].State == "down" && h.Status == "degraded" })
	broker.Start()
	r.waitHealth(t, "hub ok after the broker returned", func(h Health) bool { return h.Components["hub"].State == "ok" })
}

type observer struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs map[string][]string
}

func mqttObserver(t *testing.T, url, filter string) *observer {
	t.Helper()
	o := &observer{msgs: map[string][]string{}}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("obs-" + t.Name()))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: %v", tok.Error())
	}
	tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		o.mu.Lock()
		o.msgs[m.Topic()] = append(o.msgs[m.Topic()], string(m.Payload()))
		o.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer subscribe: %v", tok.Error())
	}
	o.c = c
	t.Cleanup(func() { c.Disconnect(100) })
	return o
}

func (o *observer) publish(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := o.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// wait returns the n-th message on topic.
func (o *observer) wait(t *testing.T, topic string, n int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		m := o.msgs[topic]
		o.mu.Unlock()
		if len(m) >= n {
			return m[n-1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d messages on %s", n, topic)
	return ""
}

// sealJob seals a job for kiosk-test with the operations key simKiosk
// made in dir.
func sealJob(t testing.TB, dir, id, kind string) []byte {
	t.Helper()
	return sealJobDoc(t, dir, id, kind, "")
}

func sealJobDoc(t testing.TB, dir, id, kind, doc string) []byte {
	t.Helper()
	ops, err := txreport.LoadSigner(filepath.Join(dir, "ops", "hub-operations.key"), filepath.Join(dir, "ops", "hub-operations.crt"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b, err := jobwire.Seal(ops, jobwire.Job{V: jobwire.Version, ID: id, Device: "kiosk-test", Kind: kind, Doc: doc, Created: now, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitMatch waits for a message on topic containing want.
func (o *observer) waitMatch(t *testing.T, topic, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		m := slices.Clone(o.msgs[topic])
		o.mu.Unlock()
		for _, s := range m {
			if strings.Contains(s, want) {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no message on %s with %s", topic, want)
	return ""
}
