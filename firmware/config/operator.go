package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// OperatorKeys are the keys fleet operators may set remotely (docs/mqtt.md,
// "Configuration"): the decision policy's thresholds, limits and timeouts.
// Never keys, paths, drivers, brokers or the device's mode: those stay
// with the file the bank's staff install.
var OperatorKeys = []string{
	"policy.match_threshold", "policy.liveness_threshold", "policy.max_password_attempts",
	"policy.card_timeout", "policy.password_timeout", "policy.chip_timeout", "policy.face_timeout",
	"policy.authorize_timeout", "policy.result_display", "policy.remove_timeout",
	"policy.time_extensions", "policy.more_time_warning",
}

// MaxSettings bounds an operator document.
const MaxSettings = 64

// WithSettings returns c with operator settings applied (dotted key →
// JSON value; durations as strings like "45s") and validated with the
// file's own validation. Every problem names its key: a key that is not
// operator-settable, a value of the wrong type, a value out of range. c is
// not changed.
func (c Config) WithSettings(settings map[string]json.RawMessage) (Config, error) {
	var errs []error
	if len(settings) > MaxSettings {
		return c, &Error{Msg: fmt.Sprintf("%d settings (max %d)", len(settings), MaxSettings)}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tables := map[string]map[string]any{}
	for _, k := range keys {
		if !slices.Contains(OperatorKeys, k) {
			errs = append(errs, &Error{Key: k, Msg: "not operator-settable"})
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(settings[k]))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			errs = append(errs, &Error{Key: k, Msg: "not a JSON value: " + err.Error()})
			continue
		}
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				v = i
			} else if f, err := n.Float64(); err == nil {
				v = f
			}
		}
		switch v.(type) {
		case string, int64, float64, bool:
		default:
			errs = append(errs, &Error{Key: k, Msg: "must be a string, number or boolean"})
			continue
		}
		section, name, _ := strings.Cut(k, ".")
		if tables[section] == nil {
			tables[section] = map[string]any{}
		}
		tables[section][name] = v
	}
	// The settable keys are checked too, so one answer names every
	// offending key.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(tables); err != nil {
		return c, errors.Join(append(errs, &Error{Msg: "encode settings: " + err.Error()})...)
	}
	out := c
	if _, err := toml.Decode(buf.String(), &out); err != nil {
		// A type mismatch names the key in the message only.
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return c, errors.Join(append(errs, &Error{Key: pe.LastKey, Msg: pe.Message})...)
		}
		return c, errors.Join(append(errs, &Error{Key: offendingKey(err.Error(), keys), Msg: err.Error()})...)
	}
	if err := out.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return out, nil
}

func offendingKey(msg string, keys []string) string {
	for _, k := range keys {
		if _, name, _ := strings.Cut(k, "."); strings.Contains(msg, name) {
			return k
		}
	}
	return ""
}

// SettingsHash identifies a set of operator settings: SHA-256 (hex) of
// their JSON with sorted keys.
func SettingsHash(settings map[string]json.RawMessage) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		var v bytes.Buffer
		_ = json.Compact(&v, settings[k])
		fmt.Fprintf(h, "%q=%s\n", k, v.Bytes())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ErrorKeys lists the keys an error from WithSettings or Validate names.
func ErrorKeys(err error) []string {
	var keys []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *Error
		if errors.As(err, &ce) && ce.Key != "" && !slices.Contains(keys, ce.Key) {
			keys = append(keys, ce.Key)
		}
	}
	walk(err)
	return keys
}
