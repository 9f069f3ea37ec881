// Package config loads and validates kioskd's TOML configuration.
//
// Every problem is reported with the dotted key it concerns, so staff can fix
// a file from the message alone: unknown keys (usually typos), wrong types
// and out-of-range values are all errors, never silently ignored.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"kiosk/drivers/gpio"
)

// Config is the whole kioskd configuration. The reference file with every
// key documented is provisioning/config/kioskd.toml.
type Config struct {
	Device     Device     `toml:"device"`
	Log        Log        `toml:"log"`
	HTTP       HTTP       `toml:"http"`
	Camera     Camera     `toml:"camera"`
	CardReader CardReader `toml:"cardreader"`
	GPIO       GPIO       `toml:"gpio"`
	Hub        Hub        `toml:"hub"`
	EID        EID        `toml:"eid"`
	Face       Face       `toml:"face"`
	Policy     Policy     `toml:"policy"`
	ECR        ECR        `toml:"ecr"`
	Tx         Tx         `toml:"transactions"`
	Shutdown   Shutdown   `toml:"shutdown"`
	Speech     Speech     `toml:"speech"`
	Memory     Memory     `toml:"memory"`
	Update     Update     `toml:"update"`
}

// Update configures signed firmware updates (RAUC A/B slots) delivered as
// update_firmware fleet jobs (README, "Firmware updates").
type Update struct {
	// Keyring is the bank's release CA certificate (PEM): a bundle whose
	// signature does not chain to it is refused before install. Empty:
	// every update job is rejected with that reason.
	Keyring string `toml:"keyring"`
	// RaucConf is rauc's system.conf ("" = /etc/rauc/system.conf).
	RaucConf string `toml:"rauc_conf"`
	// VersionFile holds the running firmware's version. Empty: the file
	// ../lib/kioskd/firmware-version beside the kioskd executable (in the
	// image /usr/lib/kioskd/firmware-version).
	VersionFile string `toml:"version_file"`
	// MaxBundleSize bounds a bundle's download (bytes).
	MaxBundleSize int64 `toml:"max_bundle_size"`
	// CommitWithin: after an update's first boot, kioskd must be ready and
	// healthy this soon, or it marks its slot bad and reboots into the
	// old one.
	CommitWithin time.Duration `toml:"commit_within"`
	// RebootWindow is the daily maintenance window ("HH:MM-HH:MM" local
	// time) an installed update reboots in; "" = as soon as no session
	// runs.
	RebootWindow string `toml:"reboot_window"`
	// RebootCommand restarts the machine (the reboot job and updates).
	RebootCommand []string `toml:"reboot_command"`
}

// Memory is the resident-memory budget kioskd watches in its health.
type Memory struct {
	// RSSCeilingMiB turns health "degraded" while kioskd's resident set
	// is above it: staff and the fleet see a kiosk that is growing before
	// systemd's MemoryMax= (set higher in kioskd.service) stops it.
	RSSCeilingMiB int `toml:"rss_ceiling_mib"`
}

// Speech configures speech output on the kiosk (espeak-ng).
type Speech struct {
	// Mode: "key" (the default) speaks once the shopper turns speech on
	// with the speech_key GPIO input (a tactile key or a headset's
	// detect switch) until the session ends; "always" speaks every
	// session; "off" never.
	Mode string `toml:"mode"`
	// Volume is the level every session starts at (1-8, default 4:
	// espeak-ng's own amplitude); the shopper's changes last until the
	// session ends (EN 301 549 §5.1.3.13 volume reset).
	Volume int `toml:"volume"`
	// The keypad's keys for speech control, as the page's keyboard
	// events name them (KeyboardEvent.key): repeat the step, pause and
	// resume, volume down and up. "" leaves an action without a key (the
	// speech_key input repeats, too).
	RepeatKey     string `toml:"repeat_key"`
	PauseKey      string `toml:"pause_key"`
	VolumeDownKey string `toml:"volume_down_key"`
	VolumeUpKey   string `toml:"volume_up_key"`
}

// SpeechVolumes is how many volume levels speech has (Speech.Volume).
const SpeechVolumes = 8

// Keys reports the speech control keys by action (repeat, pause,
// volume_down, volume_up), those that are set.
func (s Speech) Keys() map[string]string {
	k := map[string]string{}
	for action, key := range map[string]string{"repeat": s.RepeatKey, "pause": s.PauseKey, "volume_down": s.VolumeDownKey, "volume_up": s.VolumeUpKey} {
		if key != "" {
			k[action] = key
		}
	}
	return k
}

// EID configures the chip inspection.
type EID struct {
	TrustDir string `toml:"trust_dir"` // CSCA certificates (PEM/DER)
	ChipAuth string `toml:"chip_auth"` // any, ca, aa, none (lab only)
	// ChipAuthExemptTypes are the legacy document types (DG1 document
	// code, e.g. "P", "I", "ID"; "*" for all) accepted without chip
	// authenticity when their chip supports neither Chip nor Active
	// Authentication. Empty (the default): every document must prove its
	// chip. kioskd logs the list at start and each exemption it uses.
	ChipAuthExemptTypes []string `toml:"chip_auth_exempt_types"`
	ExtendedLength      string   `toml:"extended_length"` // auto, on, off
	// StaleCRL and MissingCRL say what a CSCA's CRL past its next update,
	// or no CRL at all, does to passive authentication: decline or warn;
	// MissingCRL "home" (the default) declines for the home country's
	// CSCAs and warns for the others.
	StaleCRL   string `toml:"stale_crl"`
	MissingCRL string `toml:"missing_crl"`
	// HomeCountry is the kiosk's state (ISO 3166 alpha-2 or its MRZ
	// code, e.g. "DE" or "D"); empty: no country is home.
	HomeCountry string `toml:"home_country"`
	// CRLMaxAge is how long a CRL without nextUpdate counts as fresh
	// after its thisUpdate.
	CRLMaxAge time.Duration `toml:"crl_max_age"`
	// BankEIDTrustDir holds the eID authorities whose bank eID cards the
	// kiosk accepts (root certificates and their CRLs, package bankeid);
	// empty: bank eID cards are refused.
	BankEIDTrustDir string `toml:"bankeid_trust_dir"`
	// SimCard is the card image the simulated reader inserts (simulation).
	SimCard string `toml:"sim_card"`
}

// Face configures the face pipeline.
type Face struct {
	ModelsDir string `toml:"models_dir"`
	// MatchTimeout and SmileTimeout bound the two halves of the face step
	// (on the camera's clock); policy.face_timeout bounds the whole step.
	MatchTimeout time.Duration `toml:"match_timeout"`
	SmileTimeout time.Duration `toml:"smile_timeout"`
	// The smile that consents: p(happy) of at least SmileThreshold and the
	// mouth widened by MouthRise over the person's own neutral, on
	// SmileFrames expression evaluations in a row, the model run at most
	// ExpressionHz times a second (README, "Face verification thresholds").
	SmileThreshold float64 `toml:"smile_threshold"`
	MouthRise      float64 `toml:"mouth_rise"`
	SmileFrames    int     `toml:"smile_frames"`
	ExpressionHz   float64 `toml:"expression_hz"`
	// DebugCaptureDir, for the lab only, receives the frames at the match
	// and consent decisions as JPEG; refused in production.
	DebugCaptureDir string `toml:"debug_capture_dir"`
}

// Policy is the decision policy.
type Policy struct {
	RequirePassiveAuth bool `toml:"require_passive_auth"`
	// RequireChipAuthFor is obsolete and ignored: chip authenticity is
	// required for every document type; eid.chip_auth_exempt_types names
	// the exceptions. Kept so older configuration files still load
	// (kioskd warns when it is set).
	RequireChipAuthFor  []string      `toml:"require_chip_auth_for"`
	AllowExpired        bool          `toml:"allow_expired"`
	MatchThreshold      float64       `toml:"match_threshold"`
	LivenessThreshold   float64       `toml:"liveness_threshold"`
	RequireConsent      bool          `toml:"require_consent"`
	MaxPasswordAttempts int           `toml:"max_password_attempts"`
	CardTimeout         time.Duration `toml:"card_timeout"`
	PasswordTimeout     time.Duration `toml:"password_timeout"`
	ChipTimeout         time.Duration `toml:"chip_timeout"`
	FaceTimeout         time.Duration `toml:"face_timeout"`
	AuthorizeTimeout    time.Duration `toml:"authorize_timeout"`
	ResultDisplay       time.Duration `toml:"result_display"`
	RemoveTimeout       time.Duration `toml:"remove_timeout"`
	// TimeExtensions: how often the shopper may take more time in each
	// of the card, code and face steps (0-10; default 1).
	// MoreTimeWarning: how long before such a step times out the offer
	// comes (in the face step at most half of its phase).
	TimeExtensions  int           `toml:"time_extensions"`
	MoreTimeWarning time.Duration `toml:"more_time_warning"`
}

// ECR configures the till's payment API.
type ECR struct {
	Listen    string `toml:"listen"`     // "" disables the API
	TokenFile string `toml:"token_file"` // bearer token; or mTLS with the three below
	TLSCert   string `toml:"tls_cert"`
	TLSKey    string `toml:"tls_key"`
	ClientCA  string `toml:"client_ca"`
}

// Tx configures transaction evidence, delivery and offline limits.
type Tx struct {
	StateDir   string `toml:"state_dir"` // outbox.db, offline.db
	Merchant   string `toml:"merchant"`
	DeviceKey  string `toml:"device_key"`
	DeviceCert string `toml:"device_cert"`
	// KeyStorage is where the device key lives: "file" (device_key, mode
	// 0600) or "tpm" (a TPM 2.0 at tpm_device; device_key is unused).
	KeyStorage       string        `toml:"key_storage"`
	TPMDevice        string        `toml:"tpm_device"`
	DocSaltFile      string        `toml:"doc_salt_file"`
	FloorLimitMinor  int64         `toml:"floor_limit_minor"`
	OfflineCapMinor  int64         `toml:"offline_cap_minor"`
	OfflineCurrency  string        `toml:"offline_currency"`
	OutboxMaxRecords int           `toml:"outbox_max_records"`
	OutboxMaxBytes   int64         `toml:"outbox_max_bytes"`
	AuthTimeout      time.Duration `toml:"auth_timeout"`
	// EmbeddedHub runs the reference hub inside kioskd (simulation only),
	// so `make run` shows a whole payment.
	EmbeddedHub bool `toml:"embedded_hub"`
}

// Device identifies the kiosk and its operating mode.
type Device struct {
	ID string `toml:"id"`
	// Mode is "production" or "simulation". Simulation allows simulated
	// drivers and the demo controls on the status page; production refuses
	// them.
	Mode string `toml:"mode"`
}

// Log selects the slog handler.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // auto (JSON under systemd, text on a terminal), text, json
}

// HTTP is the local status/health server. It must stay on loopback.
type HTTP struct {
	Listen string `toml:"listen"`
	// StaffPINFile holds one shared staff PIN (4-12 digits) that opens
	// the maintenance screen; "" disables it. Simulation only: production
	// uses per-person accounts. Read at start, never logged.
	StaffPINFile string `toml:"staff_pin_file"`
	// StaffAccountsFile holds per-person staff accounts (name and
	// argon2id hash of a 6-12 digit PIN; kioskctl staff add), mode 0600.
	StaffAccountsFile string `toml:"staff_accounts_file"`
}

// Camera configures drivers/camera.
type Camera struct {
	Backend   string        `toml:"backend"` // v4l2, gstreamer, file, sim, none
	Device    string        `toml:"device"`  // v4l2: index "0" or "/dev/video0"
	Pipeline  string        `toml:"pipeline"`
	Path      string        `toml:"path"` // file/sim: video file or folder of images
	Width     int           `toml:"width"`
	Height    int           `toml:"height"`
	FPS       float64       `toml:"fps"`
	ReopenMin time.Duration `toml:"reopen_min"`
	ReopenMax time.Duration `toml:"reopen_max"`
	// USB pins the v4l2 device to a USB identity read from sysfs
	// (required in production, where only v4l2 is accepted).
	USB CameraUSB `toml:"usb"`
	// SimCues (backend sim, simulation only) name positions in the video
	// the simulated camera jumps to when a face phase starts: "face" as
	// the face step begins, "smile" as its smile phase begins. Soak and
	// test runs use them to show a smile on cue instead of waiting for
	// the looping video; the face pipeline still analyses every frame.
	SimCues map[string]time.Duration `toml:"sim_cues"`
	// SimCueLength, when set, loops each cued part: after this long the
	// camera jumps back to the cue, until the next one.
	SimCueLength time.Duration `toml:"sim_cue_length"`
}

// CameraUSB is a camera's USB identity as sysfs reports it: idVendor and
// idProduct (4 hex digits each) and, when the camera has one, serial.
type CameraUSB struct {
	Vendor  string `toml:"vendor"`
	Product string `toml:"product"`
	Serial  string `toml:"serial"`
}

// Pinned reports whether an identity is configured.
func (u CameraUSB) Pinned() bool { return u != CameraUSB{} }

// CardReader configures drivers/cardreader.
type CardReader struct {
	Backend         string        `toml:"backend"` // pcsc, sim, none
	Reader          string        `toml:"reader"`  // substring of the reader name; empty = any
	TransmitTimeout time.Duration `toml:"transmit_timeout"`
	RetryMin        time.Duration `toml:"retry_min"`
	RetryMax        time.Duration `toml:"retry_max"`
}

// GPIO configures drivers/gpio.
type GPIO struct {
	Backend  string         `toml:"backend"` // periph, sim, none
	Debounce time.Duration  `toml:"debounce"`
	Pins     map[string]Pin `toml:"pins"`
}

// Pin maps one role (led_green, tamper, ...) to a GPIO line.
type Pin struct {
	Line      string `toml:"line"`
	ActiveLow bool   `toml:"active_low"`
	Pull      string `toml:"pull"` // up, down, none
}

// Hub configures the MQTT connection to the bank hub.
type Hub struct {
	// Brokers are tried in order (tcp://, ssl://, ws://). Empty means an
	// embedded broker on Embedded.Listen, for demos and development only.
	Brokers      []string `toml:"brokers"`
	ClientID     string   `toml:"client_id"` // default: device id
	TopicPrefix  string   `toml:"topic_prefix"`
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
	CAFile       string   `toml:"ca_file"`
	CertFile     string   `toml:"cert_file"`
	KeyFile      string   `toml:"key_file"`
	// AuthCert is a PEM file of the certificates whose signatures on
	// authorization responses the kiosk accepts (docs/mqtt.md).
	AuthCert string `toml:"auth_cert"`
	// OperationsCert is a PEM file of the hub's operations certificates:
	// fleet jobs count only when sealed by one of them (docs/mqtt.md,
	// "Jobs"). It must not be the authorization key's certificate. Empty:
	// no job is accepted (simulation; required in production).
	OperationsCert string         `toml:"operations_cert"`
	KeepAlive      time.Duration  `toml:"keepalive"`
	ConnectTimeout time.Duration  `toml:"connect_timeout"`
	RetryMax       time.Duration  `toml:"retry_max"`
	TelemetryEvery time.Duration  `toml:"telemetry_every"`
	Embedded       EmbeddedBroker `toml:"embedded"`
}

// EmbeddedBroker is the in-process MQTT broker used when no hub is set.
type EmbeddedBroker struct {
	Listen string `toml:"listen"`
}

// Shutdown bounds graceful shutdown.
type Shutdown struct {
	Timeout time.Duration `toml:"timeout"`
}

// Default returns the configuration used for keys a file leaves out. It
// describes a real appliance: V4L2 camera, PC/SC reader, GPIO chip.
func Default() Config {
	return Config{
		Device: Device{ID: "kiosk-0001", Mode: "production"},
		Log:    Log{Level: "info", Format: "auto"},
		HTTP:   HTTP{Listen: "127.0.0.1:8080"},
		Camera: Camera{
			Backend: "v4l2", Device: "/dev/video0", Width: 640, Height: 480, FPS: 30,
			ReopenMin: 250 * time.Millisecond, ReopenMax: 5 * time.Second,
		},
		CardReader: CardReader{
			Backend: "pcsc", TransmitTimeout: 5 * time.Second,
			RetryMin: 250 * time.Millisecond, RetryMax: 10 * time.Second,
		},
		GPIO: GPIO{Backend: "periph", Debounce: 20 * time.Millisecond},
		Hub: Hub{
			TopicPrefix: "kiosk/v1", KeepAlive: 30 * time.Second,
			ConnectTimeout: 10 * time.Second, RetryMax: 60 * time.Second,
			TelemetryEvery: 60 * time.Second,
			Embedded:       EmbeddedBroker{Listen: "127.0.0.1:1883"},
		},
		EID: EID{TrustDir: "/etc/kioskd/csca", ChipAuth: "any", ExtendedLength: "auto", StaleCRL: "decline", MissingCRL: "home",
			CRLMaxAge: 90 * 24 * time.Hour},
		Face: Face{ModelsDir: "/usr/share/kioskd/models", MatchTimeout: 10 * time.Second, SmileTimeout: 10 * time.Second,
			SmileThreshold: 0.8, MouthRise: 0.10, SmileFrames: 4, ExpressionHz: 8},
		Policy: Policy{
			RequirePassiveAuth: true, MatchThreshold: 0.392, LivenessThreshold: 0.5, RequireConsent: true,
			MaxPasswordAttempts: 3, CardTimeout: 60 * time.Second, PasswordTimeout: 60 * time.Second,
			ChipTimeout: 30 * time.Second, FaceTimeout: 30 * time.Second, AuthorizeTimeout: 15 * time.Second,
			ResultDisplay: 4 * time.Second, RemoveTimeout: 30 * time.Second,
			TimeExtensions: 1, MoreTimeWarning: 15 * time.Second,
		},
		ECR: ECR{Listen: "127.0.0.1:8081", TokenFile: "/etc/kioskd/ecr-token"},
		Tx: Tx{
			StateDir: "/var/lib/kioskd", Merchant: "MERCHANT-0001",
			DeviceKey: "/var/lib/kioskd/identity/device.key", DeviceCert: "/var/lib/kioskd/identity/device.crt", DocSaltFile: "/var/lib/kioskd/doc-salt",
			KeyStorage: "file", TPMDevice: "/dev/tpmrm0",
			OfflineCurrency: "CNY", OutboxMaxRecords: 10000, OutboxMaxBytes: 64 << 20, AuthTimeout: 5 * time.Second,
		},
		Shutdown: Shutdown{Timeout: 10 * time.Second},
		Memory:   Memory{RSSCeilingMiB: 512},
		Speech:   Speech{Mode: "key", Volume: 4, RepeatKey: "F2", PauseKey: "F3", VolumeDownKey: "F4", VolumeUpKey: "F5"},
		Update: Update{MaxBundleSize: 1 << 30, CommitWithin: 5 * time.Minute,
			RebootCommand: []string{"systemctl", "reboot"}},
	}
}

// Error is one configuration problem, tied to a dotted key.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Load reads and validates a file. With path "" it returns the defaults.
// All problems found are returned together (errors.Join of *Error).
func Load(path string) (Config, error) {
	if path == "" {
		c := Default()
		return c, c.Validate()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes TOML over the defaults and validates the result.
func Parse(b []byte) (Config, error) {
	c := Default()
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			key := pe.LastKey
			return Config{}, &Error{Key: key, Msg: fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)}
		}
		return Config{}, &Error{Msg: err.Error()}
	}
	var errs []error
	undecoded := md.Undecoded()
	keys := make([]string, 0, len(undecoded))
	for _, k := range undecoded {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	for _, k := range keys {
		errs = append(errs, &Error{Key: k, Msg: "unknown key"})
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

var deviceIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// docTypeRe is a document code of the MRZ (9303-3 §4.2.2: one or two
// letters) or "*".
var docTypeRe = regexp.MustCompile(`^([A-Z]{1,2}|\*)$`)

var homeCountryRe = regexp.MustCompile(`^[A-Z]{1,3}$`)

var usbHex = regexp.MustCompile(`^[0-9a-fA-F]{4}$`)

// Validate checks values and cross-field rules.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	durIn := func(key string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			bad(key, "%s out of range %s..%s", d, lo, hi)
		}
	}

	if !deviceIDRe.MatchString(c.Device.ID) {
		bad("device.id", "%q must be 1-64 letters, digits, '-' or '_' (it is used in MQTT topics)", c.Device.ID)
	}
	oneOf("device.mode", c.Device.Mode, "production", "simulation")
	oneOf("transactions.key_storage", c.Tx.KeyStorage, "file", "tpm")
	if c.Tx.KeyStorage == "tpm" && c.Tx.TPMDevice == "" {
		bad("transactions.tpm_device", "required with key_storage = \"tpm\"")
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "auto", "text", "json")

	if host, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen", "%q is not host:port: %v", c.HTTP.Listen, err)
	} else if !isLoopback(host) {
		bad("http.listen", "%q must be a loopback address: the status page has no authentication", c.HTTP.Listen)
	}
	// A relative path would depend on the working directory; simulation
	// (make run, from the repository) allows it like its other paths.
	if f := c.HTTP.StaffPINFile; f != "" && !filepath.IsAbs(f) && c.Device.Mode != "simulation" {
		bad("http.staff_pin_file", "%q must be an absolute path", f)
	}
	if c.HTTP.StaffPINFile != "" && c.Device.Mode == "production" {
		bad("http.staff_pin_file", "a shared staff PIN is refused in production mode: per-person accounts in http.staff_accounts_file (kioskctl staff add)")
	}
	if c.HTTP.StaffPINFile != "" && c.HTTP.StaffAccountsFile != "" {
		bad("http.staff_accounts_file", "staff_pin_file and staff_accounts_file exclude each other")
	}
	if f := c.HTTP.StaffAccountsFile; f != "" && !filepath.IsAbs(f) && c.Device.Mode != "simulation" {
		bad("http.staff_accounts_file", "%q must be an absolute path", f)
	}

	cam := c.Camera
	oneOf("camera.backend", cam.Backend, "v4l2", "gstreamer", "file", "sim", "none")
	switch cam.Backend {
	case "v4l2":
		if cam.Device == "" {
			bad("camera.device", "required for backend v4l2")
		}
	case "gstreamer":
		if cam.Pipeline == "" {
			bad("camera.pipeline", "required for backend gstreamer")
		}
	case "file", "sim":
		if cam.Path == "" {
			bad("camera.path", "required for backend %s", cam.Backend)
		}
	}
	if cam.Width < 0 || cam.Width > 7680 {
		bad("camera.width", "%d out of range 0..7680", cam.Width)
	}
	if cam.Height < 0 || cam.Height > 4320 {
		bad("camera.height", "%d out of range 0..4320", cam.Height)
	}
	if cam.FPS < 0 || cam.FPS > 240 {
		bad("camera.fps", "%g out of range 0..240", cam.FPS)
	}
	if u := cam.USB; u.Pinned() {
		if cam.Backend != "v4l2" {
			bad("camera.usb", "a USB identity pins only backend v4l2, not %q", cam.Backend)
		}
		if !usbHex.MatchString(u.Vendor) {
			bad("camera.usb.vendor", "%q is not 4 hex digits (sysfs idVendor)", u.Vendor)
		}
		if !usbHex.MatchString(u.Product) {
			bad("camera.usb.product", "%q is not 4 hex digits (sysfs idProduct)", u.Product)
		}
		if len(u.Serial) > 255 || strings.ContainsAny(u.Serial, "\x00\n") {
			bad("camera.usb.serial", "not a USB serial number")
		}
	}
	for name, at := range cam.SimCues {
		switch {
		case cam.Backend != "sim":
			bad("camera.sim_cues", "only for backend sim, not %q", cam.Backend)
		case name != "face" && name != "smile":
			bad("camera.sim_cues", "cue %q is not one of face, smile", name)
		case at < 0 || at > 24*time.Hour:
			bad("camera.sim_cues", "cue %s at %s out of range 0s..24h", name, at)
		}
	}
	if cam.SimCueLength != 0 && len(cam.SimCues) == 0 {
		bad("camera.sim_cue_length", "only with camera.sim_cues")
	}
	durIn("camera.sim_cue_length", cam.SimCueLength, 0, time.Hour)
	if m := c.Memory.RSSCeilingMiB; m < 128 || m > 16384 {
		bad("memory.rss_ceiling_mib", "%d out of range 128..16384 (MiB)", m)
	}
	durIn("camera.reopen_min", cam.ReopenMin, 10*time.Millisecond, time.Minute)
	durIn("camera.reopen_max", cam.ReopenMax, cam.ReopenMin, 10*time.Minute)

	cr := c.CardReader
	oneOf("cardreader.backend", cr.Backend, "pcsc", "sim", "none")
	durIn("cardreader.transmit_timeout", cr.TransmitTimeout, 100*time.Millisecond, 2*time.Minute)
	durIn("cardreader.retry_min", cr.RetryMin, 10*time.Millisecond, time.Minute)
	durIn("cardreader.retry_max", cr.RetryMax, cr.RetryMin, 10*time.Minute)

	g := c.GPIO
	oneOf("gpio.backend", g.Backend, "periph", "sim", "none")
	durIn("gpio.debounce", g.Debounce, 0, time.Second)
	roles := make([]string, 0, len(g.Pins))
	for r := range g.Pins {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	lines := map[string]string{}
	for _, r := range roles {
		p := g.Pins[r]
		key := "gpio.pins." + r
		if !slices.Contains(gpioRoles(), r) {
			bad(key, "unknown role (known: %s)", strings.Join(gpioRoles(), ", "))
			continue
		}
		if p.Line == "" {
			bad(key+".line", "required")
		} else if other, dup := lines[p.Line]; dup {
			bad(key+".line", "line %q is already used by %s", p.Line, other)
		} else {
			lines[p.Line] = r
		}
		if !slices.Contains([]string{"", "up", "down", "none"}, p.Pull) {
			bad(key+".pull", "%q is not one of up, down, none", p.Pull)
		}
	}
	if g.Backend == "periph" && len(g.Pins) == 0 {
		bad("gpio.pins", "backend periph needs a pin map")
	}

	h := c.Hub
	for i, b := range h.Brokers {
		u, err := url.Parse(b)
		key := fmt.Sprintf("hub.brokers[%d]", i)
		if err != nil {
			bad(key, "%q: %v", b, err)
			continue
		}
		if !slices.Contains([]string{"tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss"}, u.Scheme) || u.Host == "" {
			bad(key, "%q must be scheme://host:port with scheme tcp, ssl, tls, mqtt, mqtts, ws or wss", b)
		}
	}
	if h.TopicPrefix == "" || strings.ContainsAny(h.TopicPrefix, "#+") || strings.HasPrefix(h.TopicPrefix, "/") || strings.HasSuffix(h.TopicPrefix, "/") {
		bad("hub.topic_prefix", "%q must be non-empty, without wildcards or leading/trailing '/'", h.TopicPrefix)
	}
	if h.ClientID != "" && len(h.ClientID) > 64 {
		bad("hub.client_id", "longer than 64 characters")
	}
	if c.Tx.KeyStorage != "tpm" && (h.CertFile == "") != (h.KeyFile == "") {
		bad("hub.cert_file", "cert_file and key_file must be set together")
	}
	durIn("hub.keepalive", h.KeepAlive, 5*time.Second, 20*time.Minute)
	durIn("hub.connect_timeout", h.ConnectTimeout, time.Second, 5*time.Minute)
	durIn("hub.retry_max", h.RetryMax, time.Second, time.Hour)
	durIn("hub.telemetry_every", h.TelemetryEvery, time.Second, 24*time.Hour)
	if len(h.Brokers) == 0 {
		if host, _, err := net.SplitHostPort(h.Embedded.Listen); err != nil {
			bad("hub.embedded.listen", "%q is not host:port: %v", h.Embedded.Listen, err)
		} else if !isLoopback(host) {
			bad("hub.embedded.listen", "%q must be a loopback address", h.Embedded.Listen)
		}
	}
	durIn("shutdown.timeout", c.Shutdown.Timeout, 100*time.Millisecond, 5*time.Minute)
	if u := c.Update; u.MaxBundleSize < 1<<20 || u.MaxBundleSize > 16<<30 {
		bad("update.max_bundle_size", "%d out of range 1 MiB..16 GiB", u.MaxBundleSize)
	}
	durIn("update.commit_within", c.Update.CommitWithin, 5*time.Second, time.Hour)
	if len(c.Update.RebootCommand) == 0 || c.Update.RebootCommand[0] == "" {
		bad("update.reboot_command", "must name a command")
	}
	if !validWindow(c.Update.RebootWindow) {
		bad("update.reboot_window", "%q is not HH:MM-HH:MM (local time) or empty", c.Update.RebootWindow)
	}
	oneOf("speech.mode", c.Speech.Mode, "off", "key", "always")
	if v := c.Speech.Volume; v < 1 || v > SpeechVolumes {
		bad("speech.volume", "%d out of range 1..%d", v, SpeechVolumes)
	}
	// The pad's own keys (digits, Enter, Escape, Backspace, Delete, Tab,
	// Space, F1 the accessibility key) cannot also control speech.
	seenKey := map[string]string{}
	for _, k := range []struct{ name, key string }{{"speech.repeat_key", c.Speech.RepeatKey}, {"speech.pause_key", c.Speech.PauseKey},
		{"speech.volume_down_key", c.Speech.VolumeDownKey}, {"speech.volume_up_key", c.Speech.VolumeUpKey}} {
		switch {
		case k.key == "":
		case len(k.key) > 32 || strings.ContainsAny(k.key, " \t\n\"'<>&") || (len(k.key) == 1 && strings.Contains("0123456789", k.key)):
			bad(k.name, "%q is not a key for speech control", k.key)
		case slices.Contains([]string{"Enter", "Escape", "Backspace", "Delete", "Tab", "F1"}, k.key):
			bad(k.name, "%q is one of the keypad's own keys", k.key)
		case seenKey[k.key] != "":
			bad(k.name, "%q is also %s", k.key, seenKey[k.key])
		default:
			seenKey[k.key] = k.name
		}
	}

	oneOf("eid.chip_auth", c.EID.ChipAuth, "any", "ca", "aa", "none")
	if c.EID.ChipAuth == "none" && c.Device.Mode == "production" {
		bad("eid.chip_auth", "\"none\" is refused in production mode: clone detection cannot be switched off (exempt legacy document types with eid.chip_auth_exempt_types)")
	}
	for _, t := range c.EID.ChipAuthExemptTypes {
		if !docTypeRe.MatchString(t) {
			bad("eid.chip_auth_exempt_types", "%q is not a document type (one or two letters A-Z, as in DG1, or \"*\")", t)
		}
	}
	oneOf("eid.extended_length", c.EID.ExtendedLength, "auto", "on", "off")
	oneOf("eid.stale_crl", c.EID.StaleCRL, "decline", "warn")
	oneOf("eid.missing_crl", c.EID.MissingCRL, "home", "decline", "warn")
	if h := c.EID.HomeCountry; h != "" && !homeCountryRe.MatchString(h) {
		bad("eid.home_country", "%q is not an ISO 3166 alpha-2 or MRZ country code (e.g. \"DE\", \"D\", \"NLD\")", h)
	}
	durIn("eid.crl_max_age", c.EID.CRLMaxAge, time.Hour, 400*24*time.Hour)
	if c.EID.TrustDir == "" {
		bad("eid.trust_dir", "required: passive authentication needs CSCA certificates")
	}
	if c.Face.ModelsDir == "" {
		bad("face.models_dir", "required")
	}
	durIn("face.match_timeout", c.Face.MatchTimeout, time.Second, 5*time.Minute)
	durIn("face.smile_timeout", c.Face.SmileTimeout, time.Second, 5*time.Minute)
	if f := c.Face.SmileThreshold; f <= 0 || f >= 1 {
		bad("face.smile_threshold", "%g out of range (0, 1)", f)
	}
	if f := c.Face.MouthRise; f <= 0 || f >= 1 {
		bad("face.mouth_rise", "%g out of range (0, 1)", f)
	}
	if n := c.Face.SmileFrames; n < 1 || n > 30 {
		bad("face.smile_frames", "%d out of range 1..30", n)
	}
	if f := c.Face.ExpressionHz; f < 1 || f > 30 {
		bad("face.expression_hz", "%g out of range 1..30", f)
	}
	if c.Face.DebugCaptureDir != "" && c.Device.Mode != "simulation" {
		bad("face.debug_capture_dir", "lab only: refused in production mode (it writes face images to disk)")
	}
	pol := c.Policy
	if pol.MatchThreshold <= 0 || pol.MatchThreshold >= 1 {
		bad("policy.match_threshold", "%g out of range (0, 1)", pol.MatchThreshold)
	}
	if pol.LivenessThreshold <= 0 || pol.LivenessThreshold >= 1 {
		bad("policy.liveness_threshold", "%g out of range (0, 1)", pol.LivenessThreshold)
	}
	if pol.MaxPasswordAttempts < 1 || pol.MaxPasswordAttempts > 10 {
		bad("policy.max_password_attempts", "%d out of range 1..10", pol.MaxPasswordAttempts)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"card_timeout", pol.CardTimeout}, {"password_timeout", pol.PasswordTimeout}, {"chip_timeout", pol.ChipTimeout},
		{"face_timeout", pol.FaceTimeout}, {"authorize_timeout", pol.AuthorizeTimeout}, {"remove_timeout", pol.RemoveTimeout}} {
		durIn("policy."+d.key, d.v, time.Second, 10*time.Minute)
	}
	durIn("policy.result_display", pol.ResultDisplay, 0, time.Minute)
	if pol.TimeExtensions < 0 || pol.TimeExtensions > 10 {
		bad("policy.time_extensions", "%d out of range 0..10", pol.TimeExtensions)
	}
	durIn("policy.more_time_warning", pol.MoreTimeWarning, time.Second, 5*time.Minute)
	if c.Device.Mode == "production" && !pol.RequirePassiveAuth {
		bad("policy.require_passive_auth", "cannot be false in production mode")
	}
	if c.ECR.Listen != "" {
		if _, _, err := net.SplitHostPort(c.ECR.Listen); err != nil {
			bad("ecr.listen", "%q is not host:port: %v", c.ECR.Listen, err)
		}
		if c.ECR.TokenFile == "" && c.ECR.ClientCA == "" {
			bad("ecr.token_file", "the till API needs a bearer token file or client_ca (mutual TLS)")
		}
		if (c.ECR.TLSCert == "") != (c.ECR.TLSKey == "") {
			bad("ecr.tls_cert", "tls_cert and tls_key must be set together")
		}
		if c.ECR.ClientCA != "" && c.ECR.TLSCert == "" {
			bad("ecr.client_ca", "mutual TLS needs tls_cert and tls_key")
		}
	}
	tx := c.Tx
	if tx.StateDir == "" {
		bad("transactions.state_dir", "required")
	}
	if tx.Merchant == "" || len(tx.Merchant) > 64 {
		bad("transactions.merchant", "1-64 characters required")
	}
	if tx.FloorLimitMinor < 0 || tx.OfflineCapMinor < 0 || (tx.FloorLimitMinor > 0 && tx.OfflineCapMinor < tx.FloorLimitMinor) {
		bad("transactions.offline_cap_minor", "must be ≥ floor_limit_minor ≥ 0")
	}
	if len(tx.OfflineCurrency) != 3 {
		bad("transactions.offline_currency", "%q is not an ISO 4217 code", tx.OfflineCurrency)
	}
	if tx.OutboxMaxRecords < 10 || tx.OutboxMaxRecords > 10_000_000 {
		bad("transactions.outbox_max_records", "%d out of range 10..10000000", tx.OutboxMaxRecords)
	}
	if tx.OutboxMaxBytes < 1<<20 {
		bad("transactions.outbox_max_bytes", "at least 1 MiB")
	}
	durIn("transactions.auth_timeout", tx.AuthTimeout, 100*time.Millisecond, 2*time.Minute)
	if h.OperationsCert != "" && h.OperationsCert == h.AuthCert {
		bad("hub.operations_cert", "must not be hub.auth_cert: the operations key is separate from the authorization key")
	}
	if tx.EmbeddedHub && (c.Device.Mode != "simulation" || len(h.Brokers) != 0) {
		bad("transactions.embedded_hub", "only with the embedded broker in simulation mode")
	}

	if c.Device.Mode == "production" {
		// Only a camera is a camera: a file, a GStreamer pipeline (which
		// can read a file or a network stream) or the simulator would
		// let recorded video stand in for the person at the kiosk.
		switch cam.Backend {
		case "v4l2":
			if !cam.USB.Pinned() {
				bad("camera.usb.vendor", "required in production mode: pin the camera by its USB identity (vendor, product and serial from sysfs)")
			}
		case "none":
		default:
			bad("camera.backend", "%s is refused in production mode (only v4l2)", cam.Backend)
		}
		if len(cam.SimCues) != 0 {
			bad("camera.sim_cues", "the simulated camera's cues are refused in production mode")
		}
		if cr.Backend == "sim" {
			bad("cardreader.backend", "sim is refused in production mode")
		}
		if g.Backend == "sim" {
			bad("gpio.backend", "sim is refused in production mode")
		}
		if len(h.Brokers) == 0 {
			bad("hub.brokers", "required in production mode (the embedded broker is for simulation)")
		}
		// Mutual TLS: the broker must know which kiosk it talks to, and
		// the kiosk which broker.
		for i, b := range h.Brokers {
			if u, err := url.Parse(b); err == nil && !slices.Contains([]string{"ssl", "tls", "mqtts", "wss"}, u.Scheme) {
				bad(fmt.Sprintf("hub.brokers[%d]", i), "%q is not TLS: production mode needs ssl://, tls://, mqtts:// or wss://", b)
			}
		}
		if h.CertFile == "" || (h.KeyFile == "" && c.Tx.KeyStorage != "tpm") {
			bad("hub.cert_file", "required in production mode: the kiosk authenticates to the broker with its device certificate (mutual TLS; kioskctl provision enroll writes it)")
		}
		if h.AuthCert == "" {
			bad("hub.auth_cert", "required in production mode: an unsigned approval would be taken on trust")
		}
		if h.OperationsCert == "" {
			bad("hub.operations_cert", "required in production mode: fleet jobs are verified with the hub's operations certificate")
		}
		// One identity: renewal and the tamper wipe touch the transactions
		// pair, so a hub pair elsewhere would keep an old (or wiped) key
		// on the link.
		if h.CertFile != "" && h.CertFile != c.Tx.DeviceCert {
			bad("hub.cert_file", "%q must be transactions.device_cert (%q) in production mode: renewal and the tamper wipe act on that one", h.CertFile, c.Tx.DeviceCert)
		}
		if h.KeyFile != "" && c.Tx.KeyStorage != "tpm" && h.KeyFile != c.Tx.DeviceKey {
			bad("hub.key_file", "%q must be transactions.device_key (%q) in production mode: renewal and the tamper wipe act on that one", h.KeyFile, c.Tx.DeviceKey)
		}
	}
	return errors.Join(errs...)
}

func gpioRoles() []string {
	var out []string
	for _, r := range gpio.Roles() {
		out = append(out, string(r))
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ClientID returns the MQTT client id: hub.client_id or the device id.
func (c *Config) ClientID() string {
	if c.Hub.ClientID != "" {
		return c.Hub.ClientID
	}
	return c.Device.ID
}

var windowRe = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$`)

// validWindow: "" or HH:MM-HH:MM with different ends (parsed again by
// firmware/update).
func validWindow(s string) bool {
	return s == "" || windowRe.MatchString(s) && s[:5] != s[6:]
}
