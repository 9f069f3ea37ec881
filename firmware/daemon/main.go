package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"kiosk/firmware/config"
	"kiosk/firmware/logging"
)

// Exit statuses of kioskd.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime failure, or shutdown exceeded its bound
	ExitConfig  = 2 // bad flags or configuration
)

// Main is kioskd's entry point, separate from package main so tests can
// run it.
func Main(args []string, stderr io.Writer, version string) int {
	fs := flag.NewFlagSet("kioskd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/kioskd/kioskd.toml", "configuration file (TOML)")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kioskd: unexpected argument %q\n", fs.Arg(0))
		return ExitConfig
	}
	if *showVersion {
		fmt.Fprintln(stderr, "kioskd", version)
		return ExitOK
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "kioskd: invalid configuration:\n%v\n", err)
		return ExitConfig
	}
	if *check {
		fmt.Fprintf(stderr, "kioskd: %s is valid\n", *cfgPath)
		return ExitOK
	}
	log := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, os.Getenv)

	opts := Options{Logger: log, Version: version}
	if os.Getenv("NOTIFY_SOCKET") != "" {
		opts.Notify = func(state string) {
			if _, err := sd.SdNotify(false, state); err != nil {
				log.Warn("sd_notify failed", "state", state, "err", err)
			}
		}
		if iv, err := sd.SdWatchdogEnabled(false); err == nil && iv > 0 {
			opts.WatchdogInterval = iv / 2
		}
	}
	d, err := New(cfg, opts)
	if err != nil {
		log.Error("kioskd cannot start", "err", err)
		var ce *config.Error
		if errors.As(err, &ce) {
			return ExitConfig
		}
		return ExitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP (systemctl reload) re-reads the trust store: new CRLs and
	// CSCAs without dropping a session.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloads, stopReloads := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopReloads()
	wg.Go(func() {
		for {
			select {
			case <-reloads.Done():
				return
			case <-hup:
				_, _ = d.ReloadTrust() // logs its outcome
			}
		}
	})
	if err := d.Run(ctx); err != nil {
		log.Error("kioskd shutdown", "err", err)
		return ExitFailure
	}
	return ExitOK
}
