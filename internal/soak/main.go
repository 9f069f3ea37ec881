// Command soak pays N times back to back through one kioskd process (the
// till's API, the simulated card holding a virtual eID, the simulated
// camera playing a real video, the real face pipeline, the outbox and the
// embedded hub) and samples kioskd's counters after every payment: RSS,
// Go heap, live OpenCV Mats (kioskd built with -tags matprofile),
// goroutines, open files and the state files' sizes. It writes them as CSV
// and a PNG plot and ends with one line:
//
//	soak: N payments, approved A, RSS first F MiB after-100 H MiB last L MiB, slope S KiB/payment, goroutines G0→G1, fds D0→D1
//
// It exits 1 when a payment fails or the memory budget is broken: RSS
// after the last payment more than -rss-budget above the reference
// (after 100 payments, or after a tenth of them in a shorter run),
// goroutines or open files not back to the reference's, or a bbolt file
// past its retention bound. `make soak N=…` runs it.
//
// The camera jumps to a relaxed part of franck.mp4 (7 s) as the face
// step begins and to just before the smile that runs from about 1.5 s to
// 5 s as its smile phase begins (camera.sim_cues): the verification steps
// stay real (match, liveness and smile on the video's frames), only the
// wait for the looping video to come round to a smile goes. Each cued
// part loops (-cue-length), so a smile a loaded machine missed comes
// round again within seconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.IntVar(&o.n, "n", 200, "payments")
	flag.StringVar(&o.bin, "kioskd", "bin/kioskd-matprofile", "kioskd binary (built with -tags matprofile)")
	flag.StringVar(&o.media, "media", ".cache/testdata/media", "test media (franck.mp4, franck_01829.jpg)")
	flag.StringVar(&o.models, "models", ".cache/models", "face models")
	flag.StringVar(&o.out, "out", "test-artifacts", "directory for the CSV and the plot")
	flag.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary one, removed after)")
	flag.IntVar(&o.ref, "ref", 100, "the reference payment the budget compares the last one with (a tenth of -n when -n < 2×ref)")
	flag.Float64Var(&o.rssBudget, "rss-budget", 10, "MiB the RSS may grow from the reference to the last payment (scaled to the run: budget × (n−ref)/900, at least -rss-floor)")
	flag.Float64Var(&o.rssFloor, "rss-floor", 4, "MiB of RSS growth always allowed (allocator noise on a short run)")
	flag.StringVar(&o.faceCue, "face-cue", "7s", "position in franck.mp4 the camera shows as the face step begins")
	flag.StringVar(&o.smileCue, "smile-cue", "1s", "position in franck.mp4 the camera jumps to as the smile phase begins (just before the smile that lasts from about 1.5 s to 5 s)")
	flag.StringVar(&o.cueLength, "cue-length", "5s", "how long a cued part plays before the camera jumps back to its cue (a missed smile comes round again)")
	flag.DurationVar(&o.limit, "max", 2*time.Hour, "give up after this long")
	verbose := flag.Bool("v", false, "log each payment")
	flag.Parse()
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.limit)
	defer cancel()
	code, err := run(ctx, log, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
	}
	os.Exit(code)
}

type options struct {
	n, ref                       int
	bin, media, models, out, dir string
	rssBudget, rssFloor          float64
	faceCue, smileCue, cueLength string
	limit                        time.Duration
}
