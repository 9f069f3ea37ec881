package hubd

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is kioskhub's configuration; provisioning/config/kioskhub.toml
// documents every key.
type Config struct {
	// Instance names this hub instance (MQTT client id, applied_by); it
	// must be unique among the instances sharing the work. Default:
	// kioskhub-<hostname>-<pid>.
	Instance string `toml:"instance"`
	// Mode is "production" or "simulation". Production refuses whatever
	// is only fit for a demo (see Validate).
	Mode   string `toml:"mode"`
	Log    Log    `toml:"log"`
	Store  Store  `toml:"store"`
	MQTT   MQTT   `toml:"mqtt"`
	AMQP   AMQP   `toml:"amqp"`
	Keys   Keys   `toml:"keys"`
	CA     CA     `toml:"ca"`
	Limits Limits `toml:"limits"`
	HTTP   HTTP   `toml:"http"`
	Fleet  Fleet  `toml:"fleet"`
}

// Fleet configures fleet jobs (docs/mqtt.md, "Jobs"); they run only with
// keys.operations_key, over mqtt.brokers.
type Fleet struct {
	// Groups name sets of devices a job can target (kioskctl fleet job
	// create --group NAME).
	Groups map[string][]string `toml:"groups"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text, json
}

// Store selects the hub's state.
type Store struct {
	Kind      string   `toml:"kind"` // postgres (production) or bolt
	DSN       string   `toml:"dsn"`  // postgres
	Path      string   `toml:"path"` // bolt
	MaxConns  int32    `toml:"max_conns"`
	Retention Duration `toml:"retention"` // transactions and answers older than this are pruned
}

// MQTT is the broker link.
type MQTT struct {
	Brokers []string `toml:"brokers"`
	Prefix  string   `toml:"prefix"`
	Group   string   `toml:"group"` // shared subscription group
	CA      string   `toml:"ca"`
	Cert    string   `toml:"cert"`
	Key     string   `toml:"key"`
	Workers int      `toml:"workers"`
}

// AMQP, when URLs are set, takes the work from RabbitMQ: one durable
// quorum queue bound to the MQTT plugin's topic exchange, consumed by
// every instance (RabbitMQ 3.10's MQTT has no shared subscriptions;
// docs/scale.md). The [mqtt] section is then unused; mqtt.prefix still
// names the topics.
type AMQP struct {
	URLs     []string `toml:"urls"` // amqps:// in production; every node of the cluster
	Queue    string   `toml:"queue"`
	Prefetch int      `toml:"prefetch"`
	CA       string   `toml:"ca"`
	Cert     string   `toml:"cert"`
	Key      string   `toml:"key"`
}

// Keys are the hub's signing key and the devices it trusts.
type Keys struct {
	// AuthKey/AuthCert seal authorization responses and report acks;
	// AuthCert is the kiosks' hub.auth_cert.
	AuthKey  string `toml:"auth_key"`
	AuthCert string `toml:"auth_cert"`
	// OperationsKey/OperationsCert seal fleet jobs; OperationsCert is the
	// kiosks' hub.operations_cert. Never the authorization pair: a job
	// key that leaks must not approve payments. Without them this
	// instance runs no fleet jobs.
	OperationsKey  string `toml:"operations_key"`
	OperationsCert string `toml:"operations_cert"`
	// Devices is a directory of pinned development device certificates
	// (CN = device id), trusted by fingerprint; simulation only.
	// Production trusts what the device CA ([ca]) issued.
	Devices string `toml:"devices"`
	// BankEIDTrust is a directory of eID authority roots and their CRLs
	// (package bankeid) against which holder signatures in reports are
	// verified; empty: reports carrying one are refused.
	BankEIDTrust string `toml:"bankeid_trust_dir"`
}

// CA is the bank's device CA as the hub uses it: device certificates are
// trusted by chain to Root, revocations are read from the store, and with
// the issuing key the hub answers enrollment requests.
type CA struct {
	Root        string   `toml:"root"`         // root certificate(s), PEM
	IssuingCert string   `toml:"issuing_cert"` // issuing CA certificate, PEM
	IssuingKey  string   `toml:"issuing_key"`  // its key (PKCS #8 PEM); "" = this instance does not enroll
	Validity    Duration `toml:"validity"`     // of device certificates
	// Handed to enrolling kiosks (PEM files): the brokers' CA and the
	// initial trust bundle (optional).
	BrokerCA    string `toml:"broker_ca"`
	TrustBundle string `toml:"trust_bundle"`
}

// Limits are the authorization rules, in minor units; 0 means none.
type Limits struct {
	MaxTx    int64 `toml:"max_tx"`
	MaxDaily int64 `toml:"max_daily"`
}

// HTTP serves health on a local port.
type HTTP struct {
	Listen string `toml:"listen"`
	// OperatorTokenFile holds the bearer token of the operator API
	// (/fleet/..., kioskctl fleet); without it the API is not served.
	// /healthz and /metrics need none (keep the port local).
	OperatorTokenFile string `toml:"operator_token_file"`
}

// Duration is a TOML string like "720h".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration, or a number of days like "400d".
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n {
			return fmt.Errorf("%q is not a number of days", s)
		}
		d.Duration = time.Duration(days) * 24 * time.Hour
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Error names the key a problem concerns.
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

// Default is the configuration every file starts from.
func Default() Config {
	return Config{
		Mode:  "production",
		Log:   Log{Level: "info", Format: "json"},
		Store: Store{Kind: "postgres", MaxConns: 16, Retention: Duration{400 * 24 * time.Hour}},
		MQTT:  MQTT{Prefix: "kiosk/v1", Group: "kioskhub", Workers: 4},
		AMQP:  AMQP{Queue: "kiosk-hub", Prefetch: 16},
		HTTP:  HTTP{Listen: "127.0.0.1:9180"},
		CA:    CA{Validity: Duration{365 * 24 * time.Hour}},
	}
}

// Load reads and validates a file; every problem is returned (errors.Join
// of *Error).
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
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
			return Config{}, &Error{Key: pe.LastKey, Msg: fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)}
		}
		return Config{}, &Error{Msg: err.Error()}
	}
	var errs []error
	keys := []string{}
	for _, k := range md.Undecoded() {
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

// Validate checks values and what production requires: PostgreSQL, TLS
// brokers with a client certificate, and a signing key (unsigned acks and
// answers are ignored by production kiosks, and must not be sent).
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, v string, allowed ...string) bool {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
			return false
		}
		return true
	}
	prod := c.Mode == "production"
	oneOf("mode", c.Mode, "production", "simulation")
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	if oneOf("store.kind", c.Store.Kind, "postgres", "bolt") {
		switch {
		case c.Store.Kind == "postgres" && c.Store.DSN == "":
			bad("store.dsn", "required for store.kind = \"postgres\"")
		case c.Store.Kind == "bolt" && c.Store.Path == "":
			bad("store.path", "required for store.kind = \"bolt\"")
		case c.Store.Kind == "bolt" && prod:
			bad("store.kind", "bolt is for one machine; production hubs share PostgreSQL")
		}
	}
	if c.Store.MaxConns < 1 || c.Store.MaxConns > 1000 {
		bad("store.max_conns", "%d out of range 1..1000", c.Store.MaxConns)
	}
	if c.Store.Retention.Duration < 24*time.Hour {
		bad("store.retention", "%s is under a day", c.Store.Retention.Duration)
	}
	amqpMode := len(c.AMQP.URLs) > 0
	if len(c.MQTT.Brokers) == 0 && !amqpMode {
		bad("mqtt.brokers", "at least one broker URL is required (or amqp.urls)")
	}
	for i, a := range c.AMQP.URLs {
		u, err := url.Parse(a)
		key := fmt.Sprintf("amqp.urls[%d]", i)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "amqp" && u.Scheme != "amqps"):
			bad(key, "%q is not an amqp:// or amqps:// URL", redactURL(a))
		case prod && u.Scheme != "amqps":
			bad(key, "%q is not TLS; production needs amqps://", redactURL(a))
		}
	}
	if amqpMode {
		if c.AMQP.Queue == "" {
			bad("amqp.queue", "a queue name is required")
		}
		if c.AMQP.Prefetch < 1 || c.AMQP.Prefetch > 1000 {
			bad("amqp.prefetch", "%d out of range 1..1000", c.AMQP.Prefetch)
		}
		if prod && (c.AMQP.Cert == "" || c.AMQP.Key == "") {
			bad("amqp.cert", "production needs a client certificate and key (mutual TLS)")
		}
		if (c.AMQP.Cert == "") != (c.AMQP.Key == "") {
			bad("amqp.key", "amqp.cert and amqp.key go together")
		}
		// Enrollment and renewal are answered on the MQTT provisioning
		// topics only; an AMQP-fed instance would take the CA key and
		// leave every kiosk unanswered.
		if c.CA.IssuingKey != "" {
			bad("ca.issuing_key", "an [amqp] hub does not enroll or renew kiosks (provisioning is served over MQTT): leave it empty here and run an MQTT-mode instance with the CA key")
		}
	}
	for i, b := range c.MQTT.Brokers {
		u, err := url.Parse(b)
		key := fmt.Sprintf("mqtt.brokers[%d]", i)
		switch {
		case err != nil || u.Host == "":
			bad(key, "%q is not a broker URL", b)
		case !slices.Contains([]string{"tcp", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme):
			bad(key, "scheme %q is not tcp, ssl, tls, mqtts, ws or wss", u.Scheme)
		case prod && !slices.Contains([]string{"ssl", "tls", "mqtts", "wss"}, u.Scheme):
			bad(key, "%q is not TLS; production needs ssl://, tls://, mqtts:// or wss://", b)
		}
	}
	if prod && !amqpMode && (c.MQTT.Cert == "" || c.MQTT.Key == "") {
		bad("mqtt.cert", "production needs a client certificate and key (mutual TLS)")
	}
	if (c.MQTT.Cert == "") != (c.MQTT.Key == "") {
		bad("mqtt.key", "mqtt.cert and mqtt.key go together")
	}
	if c.MQTT.Prefix == "" || strings.ContainsAny(c.MQTT.Prefix, "#+") {
		bad("mqtt.prefix", "%q must be a topic prefix without wildcards", c.MQTT.Prefix)
	}
	if c.MQTT.Group == "" || strings.ContainsAny(c.MQTT.Group, "/#+") {
		bad("mqtt.group", "%q must be a plain name", c.MQTT.Group)
	}
	if c.MQTT.Workers < 1 || c.MQTT.Workers > 256 {
		bad("mqtt.workers", "%d out of range 1..256", c.MQTT.Workers)
	}
	if (c.Keys.AuthKey == "") != (c.Keys.AuthCert == "") {
		bad("keys.auth_cert", "keys.auth_key and keys.auth_cert go together")
	}
	if prod && c.Keys.AuthKey == "" {
		bad("keys.auth_key", "production hubs seal every answer and ack; a key is required")
	}
	switch {
	case c.Keys.Devices == "" && c.CA.Root == "":
		bad("ca.root", "required: the device CA root whose certificates the hub trusts (or keys.devices in simulation)")
	case c.Keys.Devices != "" && prod:
		bad("keys.devices", "pinned development certificates are refused in production: devices are trusted by chain to ca.root")
	}
	if c.CA.Root != "" && c.CA.IssuingCert == "" {
		bad("ca.issuing_cert", "required with ca.root: device certificates chain through it")
	}
	if c.CA.IssuingKey != "" && c.Keys.AuthCert == "" {
		bad("keys.auth_cert", "enrollment (ca.issuing_key) hands the hub's authorization certificate to kiosks: required")
	}
	if c.CA.IssuingKey != "" && prod && c.CA.BrokerCA == "" {
		bad("ca.broker_ca", "enrolling kiosks need the brokers' CA in production")
	}
	if v := c.CA.Validity.Duration; v < 24*time.Hour || v > 5*365*24*time.Hour {
		bad("ca.validity", "%s out of range 1 day..5 years", v)
	}
	if (c.Keys.OperationsKey == "") != (c.Keys.OperationsCert == "") {
		bad("keys.operations_cert", "keys.operations_key and keys.operations_cert go together")
	}
	if c.Keys.OperationsKey != "" {
		if c.Keys.OperationsKey == c.Keys.AuthKey || c.Keys.OperationsCert == c.Keys.AuthCert {
			bad("keys.operations_key", "must not be the authorization key: jobs and payment answers are sealed by separate keys")
		}
		if len(c.MQTT.Brokers) == 0 {
			bad("keys.operations_key", "fleet jobs travel over MQTT: mqtt.brokers is required")
		}
	}
	for name, devs := range c.Fleet.Groups {
		if !groupRe.MatchString(name) {
			bad("fleet.groups", "%q is not a group name (letters, digits, '-', '_')", name)
		}
		for _, d := range devs {
			if !groupRe.MatchString(d) {
				bad("fleet.groups."+name, "%q is not a device id", d)
			}
		}
	}
	if c.Limits.MaxTx < 0 || c.Limits.MaxDaily < 0 {
		bad("limits", "limits cannot be negative")
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q: %v", c.HTTP.Listen, err)
		}
	}
	return errors.Join(errs...)
}

var groupRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// redactURL drops a URL's password (AMQP URLs carry credentials).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
