package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"kiosk/firmware/hub"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
	"kiosk/provisioning/refhub"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// hubServe runs the reference bank hub until SIGINT/SIGTERM.
func hubServe(e *env, args []string) int {
	fs := flag.NewFlagSet("hub serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var brokers stringList
	fs.Var(&brokers, "broker", "MQTT broker URL (repeat for failover)")
	devices := fs.String("devices", "", "directory of device certificates (PEM, CN = device id)")
	db := fs.String("db", "", "bbolt file for transactions")
	maxTx := fs.Int64("max-tx", 0, "per-transaction limit in minor units (0 = none)")
	maxDaily := fs.Int64("max-daily", 0, "per-terminal daily limit in minor units (0 = none)")
	group := fs.String("group", "refhub", "shared subscription group")
	prefix := fs.String("prefix", "kiosk/v1", "topic prefix")
	clientID := fs.String("client-id", "", "MQTT client id (default refhub-<random>; unique per instance)")
	ca := fs.String("ca", "", "CA bundle for the broker (TLS)")
	cert := fs.String("cert", "", "client certificate (mutual TLS)")
	key := fs.String("key", "", "client key (mutual TLS)")
	authKey := fs.String("auth-key", "", "key that signs authorization responses (PEM; with --auth-cert)")
	authCert := fs.String("auth-cert", "", "its certificate: the kiosks' hub.auth_cert")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || len(brokers) == 0 || *devices == "" || *db == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl hub serve --broker URL [--broker URL2] --devices DIR --db FILE [--max-tx MINOR --max-daily MINOR] [--group NAME]")
		return ExitUsage
	}
	ring, err := txreport.LoadKeyring(*devices)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub serve:", err)
		return ExitUsage
	}
	store, err := hubstore.OpenBolt(*db)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub serve:", err)
		return ExitFail
	}
	tlsCfg, err := hub.TLSConfig(*ca, *cert, *key)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub serve:", err)
		return ExitUsage
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var authSigner *txreport.Signer
	switch {
	case *authKey != "" && *authCert != "":
		if authSigner, err = txreport.LoadSigner(*authKey, *authCert); err != nil {
			fmt.Fprintln(e.stderr, "kioskctl hub serve: --auth-key/--auth-cert:", err)
			return ExitUsage
		}
	case *authKey != "" || *authCert != "":
		fmt.Fprintln(e.stderr, "kioskctl hub serve: --auth-key and --auth-cert go together")
		return ExitUsage
	default:
		fmt.Fprintln(e.stderr, "kioskctl hub serve: warning: no --auth-key: authorization responses go unsigned, and kiosks with hub.auth_cert ignore them")
	}
	h, err := refhub.New(refhub.Options{
		Brokers: brokers, ClientID: *clientID, Group: *group, Prefix: *prefix, TLS: tlsCfg,
		Keyring: ring, Signer: authSigner, Store: store, Enrolments: store, Limits: hubstore.Limits{MaxTx: *maxTx, MaxDaily: *maxDaily},
		Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub serve:", err)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-h.Connected():
			fmt.Fprintf(e.stdout, "hub serving %d devices on %s\n", len(ring.Devices()), strings.Join(h.Filters(), " "))
		case <-ctx.Done():
		}
	}()
	if err := h.Run(ctx); err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub serve:", err)
		return ExitFail
	}
	st, _ := json.Marshal(h.Stats())
	fmt.Fprintf(e.stdout, "hub stopped: %s\n", st)
	return ExitOK
}

// txLister is what reads a hub store's transactions.
type txLister interface {
	List(context.Context, hubstore.ListQuery) (hubstore.Page, error)
}

// txSource opens a hub store for reading: a bbolt file (db) or the
// production PostgreSQL database (dsn).
func txSource(ctx context.Context, db, dsn string) (txLister, func(), error) {
	if db != "" {
		return &hubstore.File{Path: db}, func() {}, nil // read-only: a missing file is an error, never created
	}
	pg, err := pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 2})
	if err != nil {
		return nil, nil, err
	}
	return pg, func() { _ = pg.Close() }, nil
}

// hubTxList prints one page of the transactions a hub store holds, from
// a bbolt file or the production PostgreSQL database.
func hubTxList(e *env, args []string) int {
	fs := flag.NewFlagSet("hub tx list", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	db := fs.String("db", "", "the hub's bbolt file")
	dsn := fs.String("dsn", "", "the hub's PostgreSQL database (postgres:// URL)")
	terminal := fs.String("terminal", "", "only this terminal's transactions")
	limit := fs.Int("limit", 100, fmt.Sprintf("page size (at most %d)", hubstore.MaxPage))
	after := fs.String("after", "", "the cursor a previous page printed")
	asJSON := fs.Bool("json", false, "one JSON array of transaction objects (the next cursor goes to stderr)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*db == "") == (*dsn == "") || *limit <= 0 {
		fmt.Fprintln(e.stderr, "usage: kioskctl hub tx list (--db FILE | --dsn URL) [--terminal ID] [--limit N] [--after CURSOR] [--json]")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, closeSrc, err := txSource(ctx, *db, *dsn)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub tx list:", err)
		return ExitFail
	}
	defer closeSrc()
	page, err := src.List(ctx, hubstore.ListQuery{Terminal: *terminal, Limit: *limit, After: *after})
	if errors.Is(err, hubstore.ErrBadCursor) {
		fmt.Fprintln(e.stderr, "kioskctl hub tx list:", err)
		return ExitUsage
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl hub tx list:", err)
		return ExitFail
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(page.Items); err != nil {
			return ExitFail
		}
		if page.Next != "" {
			fmt.Fprintf(e.stderr, "next: --after %s\n", page.Next)
		}
		return ExitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TX\tTERMINAL\tAMOUNT\tDECISION\tAUTH\tRECEIVED\tDUPLICATES")
	for _, t := range page.Items {
		fmt.Fprintf(tw, "%s\t%s\t%d %s\t%s\t%s\t%s\t%d\n", t.TxID, t.Terminal, t.Amount, t.Currency, t.Decision, t.AuthMode, t.Received.Format(time.RFC3339), t.Duplicates)
	}
	tw.Flush()
	if page.Next != "" {
		fmt.Fprintf(e.stdout, "more: --after %s\n", page.Next)
	}
	return ExitOK
}

// devKeyCreate writes a development device key and certificate.
func devKeyCreate(e *env, args []string) int {
	fs := flag.NewFlagSet("dev-key create", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("out", "", "directory for <device>.key and <device>.crt")
	device := fs.String("device", "", "device id (the certificate's CN)")
	devices := fs.String("devices", "", "hub devices directory for the certificate copy (default OUT/devices)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *out == "" || *device == "" {
		fmt.Fprintln(e.stderr, "usage: kioskctl dev-key create --out DIR --device ID [--devices HUBDIR]")
		return ExitUsage
	}
	f, err := devkey.Create(*out, *devices, *device)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl dev-key create:", err)
		return ExitFail
	}
	signer, err := txreport.LoadSigner(f.Key, f.Cert)
	if err != nil {
		fmt.Fprintln(e.stderr, "kioskctl dev-key create: written key does not load:", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "key %s\ncertificate %s\nhub entry %s\nfingerprint %s\n", f.Key, f.Cert, f.HubEntry, signer.Fingerprint())
	return ExitOK
}
