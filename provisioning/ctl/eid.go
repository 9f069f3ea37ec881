package ctl

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/link"
	"kiosk/drivers/cardreader/pcsc"
	"kiosk/drivers/cardreader/vpcd"
	"kiosk/firmware/bankeid/bankcard"
	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/smcrypto"
	"kiosk/firmware/emrtd/vcard"
	"kiosk/internal/backoff"
	"kiosk/provisioning/issuer"
)

// profiles are the test cards `eid issue --profile` makes. Each defect
// profile must fail verification with its own reason. Every profile but
// "legacy", "no-chip-auth", "ca", "aa-ecdsa", "aa-rsa" and
// "aa-rsa-sha256" has the chip protocols of a modern document: Chip
// Authentication (ECDH on brainpoolP256r1, AES-128, explicit domain
// parameters in DG14) and Active Authentication (ECDSA P-256 with
// SHA-256). A PACE document's DG14 repeats EF.CardAccess.
func profiles() map[string]func(*issuer.Options) {
	modern := func(o *issuer.Options) {
		o.ChipAuth = &issuer.CAParams{ExplicitParams: true}
		o.ActiveAuth = issuer.AAECDSAP256
	}
	m := map[string]func(*issuer.Options){
		"good": func(*issuer.Options) {},
		"p256": func(o *issuer.Options) {
			o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHGMAES128, ParameterID: issuer.ParamNISTP256}
			o.ChipAuth.ParameterID = issuer.ParamNISTP256
		},
		"3des": func(o *issuer.Options) {
			o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHGM3DES, ParameterID: issuer.ParamBrainpoolP256}
			o.ChipAuth.Cipher = smcrypto.TDES
		},
		"bac":          func(o *issuer.Options) { o.BACOnly = true },
		"short":        func(o *issuer.Options) { o.ShortLengthOnly = true },
		"rsa":          func(o *issuer.Options) { o.SignatureAlg = issuer.SigRSA2048 },
		"rsa-pss":      func(o *issuer.Options) { o.SignatureAlg = issuer.SigRSAPSS },
		"td1":          func(o *issuer.Options) { o.DocType = issuer.TD1 },
		"dg1-altered":  func(o *issuer.Options) { o.AlterDGAfterSigning = 1 },
		"dg2-altered":  func(o *issuer.Options) { o.AlterDGAfterSigning = 2 },
		"ds-expired":   func(o *issuer.Options) { o.ExpiredDS = true },
		"csca-unknown": func(o *issuer.Options) { o.UnknownCSCA = true },
		"ca-dh":        func(o *issuer.Options) { o.ChipAuth = &issuer.CAParams{DH: true} },
		"clone-ca":     func(o *issuer.Options) { o.ClonedCA = true },
		"clone-aa":     func(o *issuer.Options) { o.ClonedAA = true },
		// EF.CardAccess rewritten on the way (9303-11 §9.3): the signed
		// DG14 names another PACE cipher than EF.CardAccess offers.
		"cardaccess-mismatch": func(o *issuer.Options) { o.CardAccessMismatch = true },
		// Revocation and master lists (9303-12 §7.1.4, §9).
		"ds-revoked":       func(o *issuer.Options) { o.RevokeDS = true },
		"csca-revoked":     func(o *issuer.Options) { o.RevokeCSCA = true },
		"crl-stale":        func(o *issuer.Options) { o.StaleCRL = true },
		"crl-missing":      func(o *issuer.Options) { o.NoCRL = true },
		"ml":               func(o *issuer.Options) { o.MasterList = issuer.MasterListGood },
		"ml-bad-signature": func(o *issuer.Options) { o.MasterList = issuer.MasterListBadSignature },
		// Trust profile of issue 11 (9303-12 §7.1.1, 9303-3 §5).
		"wrong-country":            func(o *issuer.Options) { o.WrongCountry = true },
		"ml-signer-not-authorized": func(o *issuer.Options) { o.MasterList = issuer.MasterListDSSigned },
		"brainpool-csca":           func(o *issuer.Options) { o.SignatureAlg = issuer.SigECDSABrainpool },
		// DG11 and DG12 (9303-10 §4.7.11, §4.7.12).
		"details": func(o *issuer.Options) {
			o.DG11 = &lds.DG11{FullName: o.Surname + "<<" + o.Given, PlaceOfBirth: "BERLIN", Profession: "ENGINEER",
				FullDateOfBirth: "19" + o.Birth, Address: "HEIDESTRASSE 17<KOELN"}
			o.DG12 = &lds.DG12{IssuingAuthority: "CITY OF KOELN", DateOfIssue: time.Now().Format("20060102")}
		},
	}
	// Every PACE Generic Mapping parameter set of 9303-11 §9.5.1 the
	// terminal implements: pace-<cipher>-<parameter id>.
	for _, c := range []struct {
		name   string
		ec, dh string
	}{{"3des", pace.OIDECDHGM3DES, pace.OIDDHGM3DES}, {"aes128", pace.OIDECDHGMAES128, pace.OIDDHGMAES128},
		{"aes192", pace.OIDECDHGMAES192, pace.OIDDHGMAES192}, {"aes256", pace.OIDECDHGMAES256, pace.OIDDHGMAES256}} {
		for _, id := range []int{0, 1, 2, 12, 13, 15, 16, 17, 18} {
			oid := c.ec
			if id <= 2 {
				oid = c.dh
			}
			m[fmt.Sprintf("pace-%s-%d", c.name, id)] = func(o *issuer.Options) {
				o.PACE = &issuer.PACEParams{OID: oid, ParameterID: id}
			}
		}
	}
	// Hostile chips (package vcard): the document is genuine, the chip
	// misbehaves.
	for _, h := range vcard.HostileProfiles() {
		m[h] = func(*issuer.Options) {}
	}
	// PACE with the Chip Authentication Mapping (9303-11 §4.4.3.3.3):
	// the chip proves its chip authentication key (brainpoolP256r1, as
	// PACE) in the mapping; EF.CardSecurity carries the key, signed.
	// pace-cam-tampered is the same document on a chip that alters its
	// mapping data (vcard.ProfilePACECAMTampered).
	paceCAM := func(o *issuer.Options) {
		o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHCAMAES128, ParameterID: issuer.ParamBrainpoolP256}
	}
	m["pace-cam"] = paceCAM
	m[vcard.ProfilePACECAMTampered] = paceCAM
	for name, f := range m {
		m[name] = func(o *issuer.Options) { modern(o); f(o) }
	}
	// Documents with one chip protocol or none: under the default policy
	// those with none are refused unless their type is exempted.
	m["legacy"] = func(*issuer.Options) {}
	// A genuine BAC document with neither DG14 nor DG15.
	m["no-chip-auth"] = func(o *issuer.Options) { o.BACOnly = true }
	m["ca"] = func(o *issuer.Options) { o.ChipAuth = &issuer.CAParams{} }
	m["aa-ecdsa"] = func(o *issuer.Options) { o.ActiveAuth = issuer.AAECDSAP256 }
	m["aa-rsa"] = func(o *issuer.Options) { o.ActiveAuth = issuer.AARSA2048 }
	m["aa-rsa-sha256"] = func(o *issuer.Options) { o.ActiveAuth, o.AAHash = issuer.AARSA2048, crypto.SHA256 }
	return m
}

func profileNames() string {
	var names []string
	for n := range profiles() {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func eidIssue(e *env, args []string) int {
	switch k := kindOf(args); k {
	case "bankeid":
		return eidIssueBankEID(e, args)
	case "emrtd":
	default:
		fmt.Fprintf(e.stderr, "unknown --kind %q (emrtd or bankeid)\n", k)
		return ExitUsage
	}
	fs := flag.NewFlagSet("eid issue", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.String("kind", "emrtd", "document kind: emrtd (ICAO 9303) or bankeid (bank eID card; see --kind bankeid --help)")
	out := fs.String("out", "", "directory for the card image and its trust store (DIR/trust)")
	photo := fs.String("photo", "", "face photo for DG2 (JPEG, JP2 or J2K)")
	docNo := fs.String("doc-number", "C01X00T47", "document number")
	surname := fs.String("surname", "MUSTERMANN", "surname")
	given := fs.String("given", "ERIKA", "given names")
	nationality := fs.String("nationality", "UTO", "nationality and issuing state (3 letters)")
	sex := fs.String("sex", "F", "M, F or X")
	birth := fs.String("birth", "640812", "date of birth YYMMDD")
	expiry := fs.String("expiry", time.Now().AddDate(5, 0, 0).Format("060102"), "date of expiry YYMMDD")
	can := fs.String("can", "123456", "card access number (6 digits)")
	pin := fs.String("pin", "123456", "PIN (4-10 digits)")
	retries := fs.Int("pin-retries", 3, "PIN retry counter")
	profile := fs.String("profile", "good", "card profile: "+profileNames())
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *out == "" || *photo == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "usage: kioskctl eid issue --out DIR --photo FACE.jpg [--doc-number X --surname S --given G --birth YYMMDD --expiry YYMMDD --can N --pin N] [--profile NAME]")
		return ExitUsage
	}
	apply, ok := profiles()[*profile]
	if !ok {
		fmt.Fprintf(e.stderr, "unknown profile %q (known: %s)\n", *profile, profileNames())
		return ExitUsage
	}
	img, err := os.ReadFile(*photo)
	if err != nil {
		fmt.Fprintf(e.stderr, "photo: %v\n", err)
		return ExitUsage
	}
	opts := issuer.Options{
		DocNumber: *docNo, Surname: *surname, Given: *given, Nationality: *nationality, Sex: *sex,
		Birth: *birth, Expiry: *expiry, CAN: *can, PIN: *pin, PINRetries: *retries, Photo: img,
	}
	apply(&opts)
	card, trust, err := issuer.Issue(opts)
	clear(img)
	if err != nil {
		fmt.Fprintf(e.stderr, "issue: %v\n", err)
		return ExitUsage
	}
	card.Meta.Profile = *profile
	if err := card.Save(*out); err != nil {
		fmt.Fprintf(e.stderr, "save card: %v\n", err)
		return ExitFail
	}
	if err := trust.WriteDir(filepath.Join(*out, cardimage.TrustDirName)); err != nil {
		fmt.Fprintf(e.stderr, "write trust store: %v\n", err)
		return ExitFail
	}
	fmt.Fprintf(e.stdout, "issued %s card %s in %s (trust store: %s)\n", *profile, *docNo, *out, filepath.Join(*out, cardimage.TrustDirName))
	return ExitOK
}

func eidEmulate(e *env, args []string) int {
	fs := flag.NewFlagSet("eid emulate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("card", "", "card image directory (from eid issue)")
	addr := fs.String("vpcd", "127.0.0.1:35963", "pcscd's vpcd reader address")
	linkName := fs.String("link", "", "answer as over this physical link: "+strings.Join(link.Names(), ", ")+" (default: as fast as the host)")
	turnaround := fs.Duration("turnaround", 0, "with --link: added to every APDU (the chip's processing), e.g. 5ms")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *dir == "" || fs.NArg() > 0 || (*turnaround != 0 && *linkName == "") || *turnaround < 0 {
		fmt.Fprintln(e.stderr, "usage: kioskctl eid emulate --card DIR --vpcd 127.0.0.1:PORT [--link MODEL [--turnaround D]]")
		return ExitUsage
	}
	var model *link.Model
	if *linkName != "" {
		m, err := link.ByName(*linkName)
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			return ExitUsage
		}
		m.Turnaround = *turnaround
		model = &m
	}
	if bankcard.IsImage(*dir) {
		ctx, stop := signalContext()
		defer stop()
		return emulateBankEID(ctx, e, *dir, *addr, func(h cardreader.CardHandler) (cardreader.CardHandler, error) {
			if model == nil {
				return h, nil
			}
			return link.New(h, *model)
		})
	}
	img, err := cardimage.Load(*dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "card: %v\n", err)
		return ExitUsage
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	pins, err := loadPINState(*dir, img.Meta.PINRetries, log)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return ExitUsage
	}
	card, err := vcard.New(img, vcard.Options{Logger: log, PINRetries: pins.left, OnPINRetries: pins.save})
	if err != nil {
		fmt.Fprintf(e.stderr, "card: %v\n", err)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(e.stderr, "emulating %s card from %s on vpcd %s (Ctrl-C removes it)\n", img.Meta.Profile, *dir, *addr)
	if model != nil {
		fmt.Fprintf(e.stderr, "link model %s, %v turnaround per APDU\n", model.Name, model.Turnaround)
	}
	for {
		// A "pulled" card leaves mid-read: closing the vpcd connection is
		// what pcscd sees when a card is removed.
		serveCtx, cancelServe := context.WithCancel(ctx)
		var h cardreader.CardHandler = &pullable{Card: card, pull: cancelServe}
		if model != nil {
			if h, err = link.New(h, *model); err != nil {
				cancelServe()
				fmt.Fprintln(e.stderr, err)
				return ExitUsage
			}
		}
		err := vpcd.Serve(serveCtx, *addr, h, log)
		cancelServe()
		if ctx.Err() != nil {
			return ExitOK
		}
		select {
		case <-card.Removed():
			log.Info("card pulled out mid-read (profile pulled); it stays out until stopped")
			<-ctx.Done()
			return ExitOK
		default:
		}
		// pcscd closed the connection (restart): insert the card again.
		log.Warn("vpcd connection ended; reconnecting", "err", err)
		if !backoff.Sleep(ctx, 500*time.Millisecond) {
			return ExitOK
		}
	}
}

func eidRead(e *env, args []string) int {
	fs := flag.NewFlagSet("eid read", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	reader := fs.String("reader", "", "reader name (substring); default: the reader holding a card")
	can := fs.String("can", "", "card access number")
	pin := fs.String("pin", "", "PIN")
	mrz := fs.String("mrz", "", "DOCNO,BIRTH,EXPIRY (BAC or PACE-MRZ)")
	trustDir := fs.String("trust", "", "CSCA trust store directory")
	faceOut := fs.String("face-out", "", "write the chip photo to this file (staff diagnostics)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a card")
	timeout := fs.Duration("timeout", 60*time.Second, "limit for the whole read")
	ext := fs.String("extended", "auto", "extended-length APDUs: auto (from the ATR), on, off")
	chipAuth := fs.String("chip-auth", "any", "anti-cloning policy: any (every protocol the document supports must pass, and it must support one), ca, aa, none")
	exempt := fs.String("chip-auth-exempt", "", "comma-separated legacy document types (DG1 code: P, I, ID, or *) accepted without chip authenticity when the chip supports neither protocol")
	txn := fs.String("aa-transaction", "", "bind active authentication to this transaction data (challenge = SHA-256(data)[:8])")
	staleCRL := fs.String("stale-crl", "decline", "a CRL past its next update: decline or warn")
	missingCRL := fs.String("missing-crl", "home", "no CRL for the CSCA: home (decline for --home-country, warn otherwise), warn or decline")
	home := fs.String("home-country", "", "the kiosk's state (alpha-2 or MRZ code): a missing CRL of its CSCA declines")
	bank := addBankReadFlags(fs)
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	usage := func(msg string) int {
		fmt.Fprintf(e.stderr, "%s\nusage: kioskctl eid read [--reader NAME] (--can N | --pin N | --mrz DOCNO,BIRTH,EXPIRY) --trust DIR [--face-out FILE] --json\n", msg)
		return ExitUsage
	}
	var pw emrtd.Password
	set := 0
	if *can != "" {
		pw, set = emrtd.Password{Kind: emrtd.CAN, Secret: *can}, set+1
	}
	if *pin != "" {
		pw, set = emrtd.Password{Kind: emrtd.PIN, Secret: *pin}, set+1
	}
	if *mrz != "" {
		parts := strings.Split(*mrz, ",")
		if len(parts) != 3 {
			return usage("--mrz needs DOCNO,BIRTH,EXPIRY")
		}
		pw, set = emrtd.Password{Kind: emrtd.MRZ, MRZ: bac.Key{DocumentNumber: parts[0], DateOfBirth: parts[1], DateOfExpiry: parts[2]}}, set+1
	}
	if set != 1 || fs.NArg() > 0 {
		return usage("give exactly one of --can, --pin, --mrz")
	}
	if *trustDir == "" {
		return usage("--trust is required")
	}
	em, err := emrtd.ParseExtendedMode(*ext)
	if err != nil {
		return usage("--extended must be auto, on or off")
	}
	policy, err := emrtd.ParsePolicy(*chipAuth)
	if err != nil {
		return usage(err.Error())
	}
	stale, err := pa.ParseCRLPolicy(*staleCRL)
	if err != nil {
		return usage("--stale-crl: " + err.Error())
	}
	missing, err := pa.ParseCRLPolicy(*missingCRL)
	if err != nil {
		return usage("--missing-crl: " + err.Error())
	}
	var exemptTypes []string
	for t := range strings.SplitSeq(*exempt, ",") {
		if t = strings.TrimSpace(t); t != "" {
			exemptTypes = append(exemptTypes, t)
		}
	}
	if len(exemptTypes) > 0 {
		fmt.Fprintf(e.stderr, "warning: documents of type %v pass without chip authenticity when their chip supports neither protocol\n", exemptTypes)
	}
	var txnData []byte
	if *txn != "" {
		txnData = []byte(*txn)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// Reset on close: the next reader of this card starts from a chip
	// without our secure messaging session.
	drv := pcsc.New(pcsc.Options{ReaderFilter: *reader, TransmitTimeout: 10 * time.Second, ResetOnClose: true})
	defer drv.Wait()
	card, err := connectWaiting(ctx, drv, *wait)
	if err != nil {
		fmt.Fprintf(e.stderr, "card reader: %v\n", err)
		return ExitUsage
	}
	defer card.Close()

	// The driver comes from the card (SELECT of the bank eID AID).
	kind, err := document.Detect(ctx, card)
	if err != nil {
		fmt.Fprintf(e.stderr, "card reader: %v\n", err)
		return ExitUsage
	}
	if kind == document.KindBankEID {
		if pw.Kind != emrtd.PIN {
			return usage("a bank eID card takes --pin")
		}
		return readBankEID(ctx, e, card, pw.Secret, *trustDir, bank, *asJSON)
	}
	trust, ok := loadTrust(e, *trustDir, *home)
	if !ok {
		return ExitUsage
	}
	report, err := emrtd.Read(ctx, card, emrtd.Options{Password: pw, Trust: trust, ATR: card.ATR(), Extended: em,
		RequireChipAuthenticity: policy, ExemptTypes: exemptTypes, AATransaction: txnData, StaleCRL: stale, MissingCRL: missing,
		Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	defer report.Wipe()
	if err != nil {
		fmt.Fprintf(e.stderr, "read: %v\n", err)
		return ExitUsage
	}
	if *faceOut != "" && report.Face != nil {
		if err := os.WriteFile(*faceOut, report.Face.Image, 0o600); err != nil {
			fmt.Fprintf(e.stderr, "face-out: %v\n", err)
			return ExitUsage
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		if err := enc.Encode(struct {
			Reader string `json:"reader"`
			Kind   string `json:"kind"`
			*emrtd.Report
		}{card.Reader(), "emrtd", report}); err != nil {
			return ExitFail
		}
	} else {
		printReport(e.stdout, card.Reader(), report)
	}
	if !report.Passed {
		return ExitFail
	}
	return ExitOK
}

// connectWaiting connects to a card, waiting up to wait for one to be
// presented.
func connectWaiting(ctx context.Context, drv cardreader.Driver, wait time.Duration) (cardreader.Card, error) {
	deadline := time.Now().Add(wait)
	for {
		card, err := drv.Connect(ctx, "")
		if err == nil {
			return card, nil
		}
		if !errors.Is(err, cardreader.ErrNoCard) && !errors.Is(err, cardreader.ErrNoReader) && !errors.Is(err, cardreader.ErrServiceUnavailable) {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no card within %s: %w", wait, err)
		}
		if !backoff.Sleep(ctx, 200*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

func printReport(w io.Writer, reader string, r *emrtd.Report) {
	verdict := "FAILED"
	if r.Passed {
		verdict = "PASSED"
	}
	fmt.Fprintf(w, "%s  %s %s %s via %s-%s (%s %s)\n", verdict, r.Document.Type, r.Document.IssuingState,
		r.Document.DocumentNumber, r.Access.Protocol, r.Access.Password, r.Access.Cipher, r.Access.Curve)
	fmt.Fprintf(w, "reader %s; %d APDUs, %d bytes out, %d in; %.0f ms\n", reader, r.APDUs, r.BytesOut, r.BytesIn, r.PhasesMS["total"])
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-28s %s\n", mark, c.Name, c.Reason)
	}
}

// pullable drops the vpcd connection as soon as a "pulled" card says it
// has been removed, before the answer in progress reaches the reader.
type pullable struct {
	*vcard.Card
	pull context.CancelFunc
}

func (p *pullable) Process(capdu []byte) []byte {
	out := p.Card.Process(capdu)
	select {
	case <-p.Removed():
		p.pull()
		// Serve closes the socket when its context ends; let that happen
		// before returning so the answer is never written.
		time.Sleep(200 * time.Millisecond)
	default:
	}
	return out
}

// loadTrust reads a trust directory for a command, printing what it could
// not use (warnings) and the certificates that are no anchors (notes).
func loadTrust(e *env, dir, home string) (*pa.TrustStore, bool) {
	trust, err := pa.LoadTrustStore(dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "trust store: %v\n", err)
		return nil, false
	}
	for _, p := range trust.Problems() {
		fmt.Fprintf(e.stderr, "trust store warning: %v\n", p)
	}
	for _, p := range trust.NotAnchors() {
		fmt.Fprintf(e.stderr, "trust store note: %v\n", p)
	}
	trust.SetHomeCountry(home)
	return trust, true
}

// pinState is an emulated card's PIN retry counter, which survives
// restarts of the emulator as on a chip: the card's image holds the
// maximum, pin-state.json the current value.
type pinState struct {
	path string
	left *int // nil: none saved yet (the card starts at its maximum)
	log  *slog.Logger
}

func loadPINState(dir string, maxRetries int, log *slog.Logger) (*pinState, error) {
	ps := &pinState{path: filepath.Join(dir, "pin-state.json"), log: log}
	b, err := os.ReadFile(ps.path)
	if errors.Is(err, fs.ErrNotExist) {
		return ps, nil
	}
	var st struct {
		Left *int `json:"pin_retries_left"`
	}
	if err != nil || json.Unmarshal(b, &st) != nil || st.Left == nil || *st.Left < 0 || *st.Left > maxRetries {
		return nil, fmt.Errorf("%s: invalid PIN state", ps.path)
	}
	ps.left = st.Left
	return ps, nil
}

// save writes the counter atomically; a failure is logged, as a chip
// that cannot write its counter would be broken rather than lenient.
func (ps *pinState) save(left int) {
	b, _ := json.Marshal(map[string]int{"pin_retries_left": left})
	tmp := ps.path + ".tmp"
	err := os.WriteFile(tmp, b, 0o600)
	if err == nil {
		err = os.Rename(tmp, ps.path)
	}
	if err != nil {
		ps.log.Error("PIN retry counter not saved", "err", err)
	}
}
