package daemon

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"kiosk/firmware/diagnostics"
)

// stateFiles are the files whose growth the soak counters watch: the
// bbolt stores (bounded by their retention) and the audit log.
func (d *Daemon) stateFiles() []string {
	var out []string
	for _, name := range []string{"outbox.db", "offline.db", "payments.db", "hub.db", "audit.log"} {
		out = append(out, filepath.Join(d.cfg.Tx.StateDir, name))
	}
	return out
}

// memoryComponent is kioskd's own memory in health: "degraded" while the
// resident set is above memory.rss_ceiling_mib (systemd's MemoryMax=,
// higher, stops a runaway; this is the warning before it).
func (d *Daemon) memoryComponent() Component {
	c, err := diagnostics.Sample()
	if err != nil {
		return Component{State: "degraded", Detail: err.Error()}
	}
	info := map[string]any{
		"rss_mib": mib(c.RSSBytes), "peak_rss_mib": mib(c.HWMBytes), "ceiling_mib": d.cfg.Memory.RSSCeilingMiB,
		"heap_mib": mib(c.HeapObjectsBytes), "goroutines": c.Goroutines, "open_files": c.OpenFiles,
	}
	if c.RSSBytes > int64(d.cfg.Memory.RSSCeilingMiB)<<20 {
		return Component{State: "degraded", Info: info,
			Detail: fmt.Sprintf("resident memory %.0f MiB above the %d MiB ceiling", mib(c.RSSBytes), d.cfg.Memory.RSSCeilingMiB)}
	}
	return Component{State: "ok", Info: info}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// Counters samples the soak counters (GET /api/diagnostics/counters).
func (d *Daemon) Counters() (diagnostics.Counters, error) {
	return diagnostics.Sample(d.stateFiles()...)
}

// CollectDiagnostics is the archive staff pull from the staff screen (and
// a fleet job can send to the hub): counters, heap and goroutine profiles
// and the health report, bounded by diagnostics.MaxBytes. Health holds
// states and counts, no personal or biometric data.
func (d *Daemon) CollectDiagnostics(ctx context.Context) ([]byte, error) {
	return diagnostics.Collect(ctx, diagnostics.Options{
		Device: d.cfg.Device.ID, Version: d.opts.Version, StateFiles: d.stateFiles(),
		Extra: map[string]any{"health": d.Health()},
	})
}

func (d *Daemon) serveCounters(w http.ResponseWriter, r *http.Request) {
	c, err := d.Counters()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// diagnostics is POST /api/staff/diagnostics: the archive as a download.
func (u *uiState) diagnostics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	zb, err := u.d.CollectDiagnostics(ctx)
	if err != nil {
		u.d.log.Error("collect diagnostics", "err", err)
		writeError(w, http.StatusInternalServerError, "collect diagnostics: "+err.Error())
		return
	}
	u.d.recordStaff(r.Context(), u.who(r), "diagnostics", fmt.Sprintf("%d bytes", len(zb)))
	name := fmt.Sprintf("kioskd-diagnostics-%s-%s.zip", u.d.cfg.Device.ID, time.Now().UTC().Format("20060102T150405Z"))
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(zb)
}
