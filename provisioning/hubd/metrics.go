package hubd

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kiosk/provisioning/fleet"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

// metrics are the hub's Prometheus series, on their own registry (no
// global state), served at GET /metrics on the health port.
type metrics struct {
	reg      *prometheus.Registry
	authTime prometheus.Histogram
	jobs     *prometheus.CounterVec
	// listenerBack counts the fleet event listener's returns after a
	// lost connection (events of other instances may be missing).
	listenerBack prometheus.Counter
}

// newMetrics registers the series. stats and devices are read at each
// scrape; certs, when set, lists the known devices' certificate expiries.
func newMetrics(stats func() refhub.Stats, devices func() []fleet.Device, certs func(ctx context.Context) []time.Time, now func() time.Time) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.authTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "kioskhub_auth_duration_seconds", Help: "Time from an authorization request's receipt to the hub's decision.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	m.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kioskhub_job_outcomes_total", Help: "Job executions finished, by status (succeeded, failed, rejected, canceled).",
	}, []string{"status"})
	m.listenerBack = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kioskhub_fleet_events_listener_reconnects_total",
		Help: "Times the listener of the other instances' fleet events came back after losing its database connection.",
	})
	counter := func(name, help string, f func(refhub.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(stats())) })
	}
	m.reg.MustRegister(m.authTime, m.jobs, m.listenerBack,
		counter("kioskhub_tx_received_total", "Transaction reports received (applied, duplicate or rejected).", func(s refhub.Stats) uint64 {
			return s.Applied + s.Duplicates + s.Rejected + s.RefusedForGood
		}),
		counter("kioskhub_tx_applied_total", "Transaction reports applied for the first time.", func(s refhub.Stats) uint64 { return s.Applied }),
		counter("kioskhub_tx_duplicates_total", "Transaction reports already held (redeliveries).", func(s refhub.Stats) uint64 { return s.Duplicates }),
		counter("kioskhub_tx_rejected_total", "Reports and requests refused (signature, device, format).", func(s refhub.Stats) uint64 { return s.Rejected }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kioskhub_kiosks_online", Help: "Kiosks whose retained presence is online."},
			func() float64 {
				n := 0
				if devices != nil {
					for _, d := range devices() {
						if d.Online {
							n++
						}
					}
				}
				return float64(n)
			}),
	)
	if certs != nil {
		m.reg.MustRegister(certExpiries{certs: certs, now: now, desc: prometheus.NewDesc("kioskhub_device_certs_expiring",
			"Known kiosks' newest certificates expiring within the window (renewal starts at 30 days).", []string{"within"}, nil)})
	}
	return m
}

// certExpiries counts, at each scrape, certificates expiring within 7,
// 14 and 30 days.
type certExpiries struct {
	certs func(ctx context.Context) []time.Time
	now   func() time.Time
	desc  *prometheus.Desc
}

func (c certExpiries) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c certExpiries) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all := c.certs(ctx)
	now := c.now()
	for _, w := range []struct {
		label string
		d     time.Duration
	}{{"7d", 7 * 24 * time.Hour}, {"14d", 14 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}} {
		n := 0
		for _, t := range all {
			if t.Before(now.Add(w.d)) {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), w.label)
	}
}

func (m *metrics) observeAuth(d time.Duration) { m.authTime.Observe(d.Seconds()) }

func (m *metrics) onJobEvent(e fleet.Event) {
	if e.Kind == "status" && (e.Status == "succeeded" || e.Status == "failed" || e.Status == "rejected" || e.Status == "canceled") {
		m.jobs.WithLabelValues(e.Status).Inc()
	}
}

func (m *metrics) eventListenerReconnected() { m.listenerBack.Inc() }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// certExpiryLister reads the newest certificate of each device from the
// registry.
func certExpiryLister(reg hubstore.Registry, devices func() []fleet.Device) func(ctx context.Context) []time.Time {
	return func(ctx context.Context) []time.Time {
		var out []time.Time
		for _, d := range devices() {
			cs, err := reg.DeviceCerts(ctx, d.ID)
			if err != nil || len(cs) == 0 {
				continue
			}
			out = append(out, cs[len(cs)-1].NotAfter)
		}
		return out
	}
}
