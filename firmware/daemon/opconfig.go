package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"kiosk/firmware/config"
	"kiosk/firmware/jobs"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/session"
)

// Operator configuration (docs/mqtt.md, "Configuration"): the fleet's
// desired settings for config.OperatorKeys arrive as a set_configuration
// job, are validated with the file's own validation, written atomically
// to <state_dir>/operator-config.json and applied from the next session;
// health reports the applied version and hash. At start the file is laid
// over the configuration file again.

// operatorFile is the persisted operator configuration.
const operatorFile = "operator-config.json"

// OperatorConfig is the applied operator document.
type OperatorConfig struct {
	Version  int                        `json:"version"`
	Settings map[string]json.RawMessage `json:"settings"`
	Hash     string                     `json:"hash"`
}

// configDoc is a set_configuration job's document.
type configDoc struct {
	Version  int                        `json:"version"`
	Settings map[string]json.RawMessage `json:"settings"`
}

// parseConfigDoc checks a set_configuration document from the network
// (the settings' values are checked by config.WithSettings).
func parseConfigDoc(s string) (configDoc, error) {
	var doc configDoc
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.Version < 1 || doc.Settings == nil {
		return configDoc{}, fmt.Errorf(`the document must be {"version":N≥1,"settings":{key: value}} (%v)`, err)
	}
	if len(doc.Settings) > config.MaxSettings {
		return configDoc{}, fmt.Errorf("%d settings (max %d)", len(doc.Settings), config.MaxSettings)
	}
	return doc, nil
}

func readOperatorConfig(stateDir string) (*OperatorConfig, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, operatorFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var oc OperatorConfig
	if err := json.Unmarshal(b, &oc); err != nil {
		return nil, fmt.Errorf("%s: %w", operatorFile, err)
	}
	return &oc, nil
}

// writeOperatorConfig replaces the file atomically: written aside,
// fsynced, renamed in, the directory fsynced.
func writeOperatorConfig(stateDir string, oc OperatorConfig) error {
	b, err := json.MarshalIndent(oc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(stateDir, operatorFile, b)
}

// applyOperatorConfig lays the persisted operator settings over cfg at
// start. A file that no longer validates (the configuration file changed
// under it) is not applied: the kiosk runs on its file, and health says
// why.
func applyOperatorConfig(cfg config.Config) (config.Config, *OperatorConfig, string) {
	oc, err := readOperatorConfig(cfg.Tx.StateDir)
	if err != nil {
		return cfg, nil, "operator configuration unreadable: " + err.Error()
	}
	if oc == nil {
		return cfg, nil, ""
	}
	merged, err := cfg.WithSettings(oc.Settings)
	if err != nil {
		return cfg, nil, fmt.Sprintf("operator configuration v%d refused at start (keys %s): %v", oc.Version,
			strings.Join(config.ErrorKeys(err), ", "), err)
	}
	return merged, oc, ""
}

// sessionPolicy is the session's policy from a configuration.
func sessionPolicy(cfg config.Config, exempt []string) session.Policy {
	p := cfg.Policy
	return session.Policy{
		RequirePassiveAuth: p.RequirePassiveAuth, ChipAuthExemptTypes: exempt, AllowExpired: p.AllowExpired,
		MatchThreshold: p.MatchThreshold, LivenessThreshold: p.LivenessThreshold, RequireConsent: p.RequireConsent,
		MaxPasswordAttempts: p.MaxPasswordAttempts, CardTimeout: p.CardTimeout, PasswordTimeout: p.PasswordTimeout,
		ChipTimeout: p.ChipTimeout, FaceTimeout: p.FaceTimeout, AuthorizeTimeout: p.AuthorizeTimeout,
		ResultDisplay: p.ResultDisplay, RemoveTimeout: p.RemoveTimeout,
		TimeExtensions: p.TimeExtensions, MoreTimeWarning: p.MoreTimeWarning,
	}
}

// setConfigJob applies a desired operator configuration. The document
// replaces the settings as a whole (keys it leaves out fall back to the
// file's values); its version must be newer than the applied one.
func (d *Daemon) setConfigJob(_ context.Context, j jobwire.Job) (jobs.Outcome, error) {
	if d.session == nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonUnsupported, "this kiosk runs no sessions")
	}
	doc, err := parseConfigDoc(j.Doc)
	if err != nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "%v", err)
	}
	d.opMu.Lock()
	defer d.opMu.Unlock()
	cur := 0
	if d.opConfig != nil {
		cur = d.opConfig.Version
	}
	if doc.Version <= cur {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "version %d is not newer than the applied version %d", doc.Version, cur)
	}
	merged, err := d.fileCfg.WithSettings(doc.Settings)
	if err != nil {
		return jobs.Outcome{}, jobs.Reject(jobwire.ReasonBadDocument, "offending keys %s: %v", strings.Join(config.ErrorKeys(err), ", "),
			strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	oc := OperatorConfig{Version: doc.Version, Settings: doc.Settings, Hash: config.SettingsHash(doc.Settings)}
	if err := writeOperatorConfig(d.cfg.Tx.StateDir, oc); err != nil {
		return jobs.Outcome{}, fmt.Errorf("persist the operator configuration (the old one stays): %w", err)
	}
	d.session.SetPolicy(sessionPolicy(merged, d.session.Policy().ChipAuthExemptTypes))
	d.opConfig, d.opErr = &oc, ""
	d.log.Info("operator configuration applied", "version", oc.Version, "hash", oc.Hash, "keys", len(oc.Settings))
	return jobs.Outcome{Result: map[string]any{"version": oc.Version, "hash": oc.Hash}}, nil
}

// configComponent is the operator configuration's health.
func (d *Daemon) configComponent() Component {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	info := map[string]any{"version": 0}
	if d.opConfig != nil {
		info = map[string]any{"version": d.opConfig.Version, "hash": d.opConfig.Hash}
	}
	if d.opErr != "" {
		return Component{State: "degraded", Detail: d.opErr, Info: info}
	}
	return Component{State: "ok", Info: info}
}
