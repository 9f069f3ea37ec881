package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func settings(kv ...string) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = json.RawMessage(kv[i+1])
	}
	return m
}

func TestWithSettings(t *testing.T) {
	c, err := Parse([]byte("[device]\nmode = \"simulation\"\n[camera]\nbackend = \"none\"\n[cardreader]\nbackend = \"sim\"\n[gpio]\nbackend = \"sim\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.WithSettings(settings("policy.match_threshold", "0.45", "policy.card_timeout", `"45s"`, "policy.time_extensions", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy.MatchThreshold != 0.45 || got.Policy.CardTimeout != 45*time.Second || got.Policy.TimeExtensions != 2 {
		t.Fatalf("applied %+v", got.Policy)
	}
	if c.Policy.CardTimeout == 45*time.Second {
		t.Fatal("the original changed")
	}
	for name, tc := range map[string]struct {
		s    map[string]json.RawMessage
		keys []string
	}{
		"out of range":     {settings("policy.time_extensions", "99", "policy.match_threshold", "0.5"), []string{"policy.time_extensions"}},
		"not settable":     {settings("transactions.device_key", `"/tmp/k"`, "eid.trust_dir", `"/x"`), []string{"eid.trust_dir", "transactions.device_key"}},
		"wrong type":       {settings("policy.card_timeout", "true"), []string{"policy.card_timeout"}},
		"bad duration":     {settings("policy.card_timeout", `"soon"`), []string{"policy.card_timeout"}},
		"object":           {settings("policy.match_threshold", `{"a":1}`), []string{"policy.match_threshold"}},
		"two out of range": {settings("policy.card_timeout", `"1ms"`, "policy.time_extensions", "-1"), []string{"policy.card_timeout", "policy.time_extensions"}},
	} {
		_, err := c.WithSettings(tc.s)
		keys := ErrorKeys(err)
		slices.Sort(keys)
		if err == nil || !slices.Equal(keys, tc.keys) {
			t.Errorf("%s: keys %v, err %v", name, keys, err)
		}
	}
	if SettingsHash(settings("a", "1", "b", ` "x" `)) != SettingsHash(settings("b", `"x"`, "a", "1")) {
		t.Fatal("hash depends on order or spacing")
	}
	for _, k := range OperatorKeys {
		if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_dir") || strings.HasSuffix(k, "key") {
			t.Errorf("%s must not be operator-settable", k)
		}
	}
}

// FuzzWithSettings: operator documents come from the network.
func FuzzWithSettings(f *testing.F) {
	f.Add(`{"policy.match_threshold":0.5,"policy.card_timeout":"30s"}`)
	f.Add(`{"policy.time_extensions":1e400}`)
	f.Add(`{"x.y":[1]}`)
	base := Default()
	base.Device.Mode = "simulation"
	f.Fuzz(func(t *testing.T, doc string) {
		var s map[string]json.RawMessage
		if json.Unmarshal([]byte(doc), &s) != nil {
			return
		}
		got, err := base.WithSettings(s)
		if err == nil && got.Device != base.Device {
			t.Fatal("a setting changed the device section")
		}
		if err == nil {
			if err := got.Validate(); err != nil && len(ErrorKeys(err)) == 0 {
				t.Fatalf("applied settings fail validation without naming a key: %v", err)
			}
		}
	})
}
