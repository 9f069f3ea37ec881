package ctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/bankeid"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/internal/backoff"
	"kiosk/provisioning/bankissuer"
)

// kindOf finds --kind in args without parsing the rest (each kind has its
// own flags).
func kindOf(args []string) string {
	for i, a := range args {
		switch {
		case a == "--kind" || a == "-kind":
			if i+1 < len(args) {
				return args[i+1]
			}
		case strings.HasPrefix(a, "--kind="), strings.HasPrefix(a, "-kind="):
			return a[strings.Index(a, "=")+1:]
		}
	}
	return "emrtd"
}

func bankProfileNames() string {
	var names []string
	for n := range bankcard.Profiles() {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// eidIssueBankEID makes a virtual bank eID card and its authority:
// DIR holds the card image (package bankcard), DIR/trust the authority's
// root and CRL (what a kiosk trusts), DIR/authority its root key.
func eidIssueBankEID(e *env, args []string) int {
	fs := flag.NewFlagSet("eid issue --kind bankeid", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.String("kind", "bankeid", "document kind: emrtd or bankeid")
	out := fs.String("out", "", "directory for the card image, its trust store (DIR/trust) and authority (DIR/authority)")
	name := fs.String("name", "ZHANG SAN", "holder's name (certificate CN)")
	number := fs.String("eid-number", "EID-3301-0001", "eID number (certificate subject serialNumber)")
	authority := fs.String("authority", "Test eID Authority", "eID authority name")
	alg := fs.String("algorithm", "sm2", "key algorithm of the authority and the card: sm2 or ecdsa-p256")
	pin := fs.String("pin", "246810", "PIN (4-12 digits)")
	retries := fs.Int("pin-retries", 3, "PIN retry counter (1-15)")
	profile := fs.String("profile", bankcard.ProfileGood, "card profile: "+bankProfileNames())
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *out == "" || fs.NArg() > 0 || (*alg != "sm2" && *alg != "ecdsa-p256") || *retries < 1 || *retries > 15 {
		fmt.Fprintln(e.stderr, "usage: kioskctl eid issue --kind bankeid --out DIR [--name N --eid-number X --pin N --pin-retries N --algorithm sm2|ecdsa-p256] [--profile NAME]")
		return ExitUsage
	}
	if _, ok := bankcard.Profiles()[*profile]; !ok {
		fmt.Fprintf(e.stderr, "unknown profile %q (known: %s)\n", *profile, bankProfileNames())
		return ExitUsage
	}
	a, err := bankissuer.NewAuthority(*authority, *alg == "ecdsa-p256")
	if err != nil {
		fmt.Fprintf(e.stderr, "authority: %v\n", err)
		return ExitFail
	}
	im, err := a.Issue(bankissuer.Holder{Name: *name, EIDNumber: *number, PIN: *pin, Retries: *retries}, *profile)
	if err != nil {
		fmt.Fprintf(e.stderr, "issue: %v\n", err)
		return ExitUsage
	}
	trustDir := filepath.Join(*out, bankcard.TrustDirName)
	if err := im.Save(*out); err != nil {
		fmt.Fprintf(e.stderr, "save card: %v\n", err)
		return ExitFail
	}
	if err := a.WriteTrust(trustDir); err != nil {
		fmt.Fprintf(e.stderr, "write trust store: %v\n", err)
		return ExitFail
	}
	if err := a.SaveKey(filepath.Join(*out, bankcard.AuthorityDir)); err != nil {
		fmt.Fprintf(e.stderr, "save authority: %v\n", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "issued %s bank eID card %s (%s) in %s (trust store: %s)\n", *profile, *number, *alg, *out, trustDir)
	return ExitOK
}

// emulateBankEID serves a bank eID image to pcscd through vpcd until ctx
// ends; the PIN retry counter survives restarts (pin-state.json).
func emulateBankEID(ctx context.Context, e *env, dir, addr string, wrap func(cardreader.CardHandler) (cardreader.CardHandler, error)) int {
	im, err := bankcard.Load(dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "card: %v\n", err)
		return ExitUsage
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	pins, err := loadPINState(dir, im.Meta.PINRetries, log)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return ExitUsage
	}
	card, err := bankcard.New(im, bankcard.Options{Logger: log, PINRetries: pins.left, OnPINRetries: pins.save})
	if err != nil {
		fmt.Fprintf(e.stderr, "card: %v\n", err)
		return ExitUsage
	}
	h, err := wrap(card)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return ExitUsage
	}
	fmt.Fprintf(e.stderr, "emulating %s bank eID card from %s on vpcd %s (Ctrl-C removes it)\n", im.Meta.Profile, dir, addr)
	for {
		err := vpcd.Serve(ctx, addr, h, log)
		if ctx.Err() != nil {
			return ExitOK
		}
		log.Warn("vpcd connection ended; reconnecting", "err", err)
		if !backoff.Sleep(ctx, 500*time.Millisecond) {
			return ExitOK
		}
	}
}

// bankReadFlags are eid read's flags for the bank eID's challenge.
type bankReadFlags struct {
	kioskID, txID, currency *string
	amount                  *int64
}

func addBankReadFlags(fs *flag.FlagSet) bankReadFlags {
	return bankReadFlags{
		kioskID:  fs.String("kiosk-id", "kioskctl", "bank eID: the kiosk named in the signed challenge"),
		txID:     fs.String("tx-id", "", "bank eID: the transaction id in the signed challenge (default: random)"),
		amount:   fs.Int64("amount", 0, "bank eID: amount in minor units (fen, cents) in the signed challenge"),
		currency: fs.String("currency", "", "bank eID: ISO 4217 currency of --amount"),
	}
}

// readBankEID reads a bank eID card: exit 0 when it passed, 1 when it
// was refused (the reasons on stderr and in --json), 2 for bad usage.
func readBankEID(ctx context.Context, e *env, card cardreader.Card, pin, trustDir string, f bankReadFlags, asJSON bool) int {
	trust, err := bankeid.LoadTrust(trustDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "trust store: %v\n", err)
		return ExitUsage
	}
	tx := *f.txID
	if tx == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		tx = "kioskctl-" + hex.EncodeToString(b[:])
	}
	r, err := bankeid.Read(ctx, card, bankeid.Options{PIN: bankeid.PIN(pin), Trust: trust,
		Transaction: bankeid.Challenge{KioskID: *f.kioskID, TransactionID: tx, Amount: *f.amount, Currency: *f.currency},
		Logger:      slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintf(e.stderr, "read: %v\n", err)
		return ExitUsage
	}
	if asJSON {
		if err := json.NewEncoder(e.stdout).Encode(struct {
			Reader string `json:"reader"`
			Kind   string `json:"kind"`
			*bankeid.Report
		}{card.Reader(), "bankeid", r}); err != nil {
			return ExitFail
		}
	} else {
		printBankReport(e.stdout, card.Reader(), r)
	}
	if !r.Passed {
		for _, c := range r.Checks {
			if !c.OK {
				fmt.Fprintf(e.stderr, "refused: %s: %s\n", c.Code, c.Reason)
			}
		}
		return ExitFail
	}
	return ExitOK
}

func printBankReport(w io.Writer, reader string, r *bankeid.Report) {
	verdict := "FAILED"
	if r.Passed {
		verdict = "PASSED"
	}
	who := ""
	if r.Identity != nil {
		who = fmt.Sprintf("%s %s (%s, %s)", r.Identity.Number, r.Identity.Name, r.Identity.Authority, r.Identity.KeyAlgorithm)
	}
	fmt.Fprintf(w, "%s  bank eID %s via %s\n", verdict, who, r.Profile)
	fmt.Fprintf(w, "reader %s; %d APDUs\n", reader, r.APDUs)
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-12s %s\n", mark, c.Name, c.Reason)
	}
}

// signalContext is the commands' context: SIGINT and SIGTERM end it.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
