package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"kiosk/firmware/diagnostics"
	"kiosk/internal/till"
)

// sample is kioskd after one payment.
type sample struct {
	i        int // 1-based payment number
	approved bool
	took     time.Duration // the payment, from creation to the session idle again
	c        diagnostics.Counters
}

func run(ctx context.Context, log *slog.Logger, o options) (int, error) {
	if o.n < 1 {
		return 2, errors.New("-n must be at least 1")
	}
	for _, p := range []string{o.bin, filepath.Join(o.media, "franck.mp4"), filepath.Join(o.media, "franck_01829.jpg"), o.models} {
		if _, err := os.Stat(p); err != nil {
			return 2, fmt.Errorf("%w (make build testdata models)", err)
		}
	}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "kiosk-soak-")
		if err != nil {
			return 2, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	k, err := prepare(dir, o)
	if err != nil {
		return 2, err
	}
	if err := k.start(o.bin); err != nil {
		return 2, err
	}
	defer k.stop()
	t := &till.Client{HTTP: k.HTTPAddr, ECR: k.ECRAddr, TokenFile: k.TokenFile, Ready: []string{"camera", "cardreader", "face"},
		Gone: k.gone, Watch: func() func() error { return k.gone }}
	if err := t.WaitReady(ctx, 90*time.Second); err != nil {
		return 2, fmt.Errorf("kioskd did not come up: %w (log: %s)", err, filepath.Join(dir, "kioskd.log"))
	}

	var samples []sample
	begin := time.Now()
	for i := 1; i <= o.n; i++ {
		ref := fmt.Sprintf("soak-%05d", i)
		t0 := time.Now()
		// ¥1.00: the embedded hub allows a terminal ¥5,000 a UTC day, which
		// ¥23.50 payments (the demo's) used up after 212 of them.
		p, err := t.Pay(ctx, ref, 100)
		if err != nil {
			return 1, fmt.Errorf("payment %d: %w (log: %s)", i, err, filepath.Join(dir, "kioskd.log"))
		}
		took := time.Since(t0)
		var c diagnostics.Counters
		err = t.Get(ctx, "/api/diagnostics/counters", &c)
		if err != nil {
			return 1, fmt.Errorf("counters after payment %d: %w", i, err)
		}
		samples = append(samples, sample{i: i, approved: p.Status == "approved", took: took, c: c})
		log.Info("payment", "n", i, "status", p.Status, "reasons", p.ReasonCodes(), "took", took.Round(time.Millisecond),
			"rss_mib", fmt.Sprintf("%.1f", mib(c.RSSBytes)), "goroutines", c.Goroutines, "fds", c.OpenFiles, "mats", c.Mats)
		if p.Status != "approved" {
			log.Warn("payment not approved", "n", i, "status", p.Status, "reasons", p.ReasonCodes())
		}
	}
	wall := time.Since(begin)
	stopErr := k.stop()

	r := summarize(samples, o)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return 2, err
	}
	base := filepath.Join(o.out, fmt.Sprintf("soak-%d", o.n))
	if err := writeCSV(base+".csv", samples); err != nil {
		return 2, err
	}
	if err := writePlot(base+".png", samples, r); err != nil {
		return 2, err
	}
	fmt.Fprintf(os.Stderr, "soak: %s per payment (median %s, slowest %s), %s in all; %s.csv, %s.png\n",
		(wall / time.Duration(o.n)).Round(time.Millisecond), r.medianTook.Round(time.Millisecond), r.maxTook.Round(time.Millisecond),
		wall.Round(time.Second), base, base)
	fmt.Fprintf(os.Stderr, "soak: from payment %d to %d: RSS anonymous %.1f→%.1f MiB, file-backed %.1f→%.1f MiB, Go heap %.1f→%.1f MiB, Go total %.1f→%.1f MiB\n",
		r.ref.i, r.last.i, mib(r.ref.c.RSSAnonBytes), mib(r.last.c.RSSAnonBytes), mib(r.ref.c.RSSFileBytes), mib(r.last.c.RSSFileBytes),
		mib(r.ref.c.HeapTotalBytes), mib(r.last.c.HeapTotalBytes), mib(r.ref.c.GoTotalBytes), mib(r.last.c.GoTotalBytes))
	fmt.Fprintf(os.Stderr, "soak: heap %.1f→%.1f MiB, Mats %d→%d, threads %d→%d, state files %s\n",
		mib(r.ref.c.HeapObjectsBytes), mib(r.last.c.HeapObjectsBytes), r.ref.c.Mats, r.last.c.Mats, r.ref.c.Threads, r.last.c.Threads, r.files)
	failures := r.check(o)
	if stopErr != nil {
		failures = append(failures, stopErr.Error())
	}
	for _, f := range failures {
		fmt.Fprintln(os.Stderr, "soak: budget:", f)
	}
	fmt.Println(r.line())
	if len(failures) > 0 {
		return 1, nil
	}
	return 0, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
