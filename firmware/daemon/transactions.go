package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/audit"
	"kiosk/firmware/bankeid"
	"kiosk/firmware/config"
	"kiosk/firmware/devicekey"
	"kiosk/firmware/document"
	"kiosk/firmware/ecr"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/enroll"
	"kiosk/firmware/event"
	"kiosk/firmware/offline"
	"kiosk/firmware/outbox"
	"kiosk/firmware/session"
	"kiosk/firmware/tamperlatch"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

// txStack is the transaction half of kioskd: evidence, delivery, limits.
type txStack struct {
	signer  *txreport.Signer
	saltMu  sync.RWMutex
	salt    []byte
	outbox  *outbox.Outbox
	offline *offline.Ledger
	flow    *txflow.Flow
	refhub  *refhub.Hub // simulation only
	store   *hubstore.Bolt
	hubKeys *txreport.Keyring // the embedded hub's (simulation only)
	renewer *enroll.Renewer   // enrolled kiosks: certificate renewal
	audit   *audit.Log        // staff actions, hash chained
	// auditErr is why the audit log's chain does not hold (health).
	auditErr string
	// ephemeral: simulation without an enrolled key signs with a key
	// made for this run (and, after a tamper reset, a new one).
	ephemeral bool
	history   *ecr.History // what the till was told, across restarts
}

// The document salt is read by sessions and cleared or replaced by the
// tamper wipe, the reset and decommission (other goroutines): saltMu.

func (t *txStack) docHash(issuer, number string) string {
	t.saltMu.RLock()
	defer t.saltMu.RUnlock()
	return txreport.DocumentHash(t.salt, issuer, number)
}

func (t *txStack) clearSalt() {
	t.saltMu.Lock()
	clear(t.salt)
	t.saltMu.Unlock()
}

func (t *txStack) setSalt(b []byte) {
	t.saltMu.Lock()
	t.salt = b
	t.saltMu.Unlock()
}

// saltSet reports whether the salt holds anything but zeros.
func (t *txStack) saltSet() bool {
	t.saltMu.RLock()
	defer t.saltMu.RUnlock()
	for _, c := range t.salt {
		if c != 0 {
			return true
		}
	}
	return false
}

func (t *txStack) close() {
	if t.outbox != nil {
		t.outbox.Close()
	}
	if t.offline != nil {
		t.offline.Close()
	}
	if t.history != nil {
		t.history.Close()
	}
}

// openTx opens the outbox, the offline ledger and the device signer. In
// simulation a missing device key or salt is generated in memory (and
// said so in the log); in production they are configuration errors.
func (d *Daemon) openTx() (*txStack, error) {
	cfg := d.cfg.Tx
	sim := d.cfg.Device.Mode == "simulation"
	t := &txStack{}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, &config.Error{Key: "transactions.state_dir", Msg: err.Error()}
	}
	signer, err := d.deviceSigner()
	switch {
	case err == nil:
	case sim && (errors.Is(err, os.ErrNotExist) || errors.Is(err, devicekey.ErrNoKey)):
		d.log.Warn("no device key: using an ephemeral development key (simulation)", "device_key", cfg.DeviceKey)
		if signer, err = ephemeralSigner(d.cfg.Device.ID); err != nil {
			return nil, err
		}
		t.ephemeral = true
	default:
		return nil, &config.Error{Key: "transactions.device_key", Msg: err.Error() + " (not enrolled? kioskctl provision enroll)"}
	}
	if signer.DeviceID() != d.cfg.Device.ID {
		return nil, &config.Error{Key: "transactions.device_cert", Msg: fmt.Sprintf("certificate is for %q, this kiosk is %q", signer.DeviceID(), d.cfg.Device.ID)}
	}
	t.signer = signer
	salt, err := os.ReadFile(cfg.DocSaltFile)
	switch {
	case err == nil && len(strings.TrimSpace(string(salt))) >= 16:
		t.salt = []byte(strings.TrimSpace(string(salt)))
	case sim:
		d.log.Warn("no document salt file: using a random salt for this run (simulation)", "doc_salt_file", cfg.DocSaltFile)
		t.salt = make([]byte, 32)
		_, _ = rand.Read(t.salt)
	case err != nil:
		return nil, &config.Error{Key: "transactions.doc_salt_file", Msg: err.Error()}
	default:
		return nil, &config.Error{Key: "transactions.doc_salt_file", Msg: "salt shorter than 16 characters"}
	}
	// Fail closed: a salt the tamper wipe cannot destroy would survive
	// an opened enclosure (and leave the wipe to be retried forever).
	if !sim {
		if err := tamperlatch.CanWipe(cfg.DocSaltFile); err != nil {
			return nil, &config.Error{Key: "transactions.doc_salt_file", Msg: err.Error() + " (keep it under the state directory, e.g. /var/lib/kioskd/doc-salt)"}
		}
	}
	t.audit, err = audit.Open(filepath.Join(cfg.StateDir, "audit.log"))
	switch {
	case errors.Is(err, audit.ErrBroken):
		t.auditErr = err.Error()
		d.log.Error("staff audit log", "err", err)
	case err != nil:
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	t.outbox, err = outbox.Open(filepath.Join(cfg.StateDir, "outbox.db"), outbox.Options{
		MaxRecords: cfg.OutboxMaxRecords, MaxBytes: cfg.OutboxMaxBytes, Logger: d.log.With("component", "outbox"),
		OnAlarm: func(l outbox.Level, s outbox.Stats) {
			d.bus.Publish(event.Event{Source: "outbox", Kind: "outbox.alarm", Data: map[string]any{"level": l.String(), "stats": s}})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	t.offline, err = offline.Open(filepath.Join(cfg.StateDir, "offline.db"), offline.Limits{
		Floor: cfg.FloorLimitMinor, Cap: cfg.OfflineCapMinor, Currency: cfg.OfflineCurrency,
	})
	if err != nil {
		t.close()
		return nil, fmt.Errorf("open offline ledger: %w", err)
	}
	if t.history, err = ecr.OpenHistory(filepath.Join(cfg.StateDir, "payments.db"), 0); err != nil {
		t.close()
		return nil, err
	}
	if n, err := reconcileHistory(t.outbox, t.history); err != nil {
		d.log.Error("payment history", "err", err)
	} else if n > 0 {
		d.log.Warn("payment history restored from the outbox after an interrupted commit", "transactions", n)
	}
	return t, nil
}

// ephemeralSigner makes a throw-away key and self-signed certificate, as
// kioskctl dev-key create does, valid for a year.
func ephemeralSigner(device string) (*txreport.Signer, error) {
	key, cert, err := devkey.Generate(device, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return txreport.NewSigner(key, cert)
}

// chipReader reads the eID in the reader for the session.
type chipReader struct {
	d        *Daemon
	trust    *trustStore
	policy   emrtd.Policy
	extended emrtd.ExtendedMode
	// staleCRL and missingCRL are eid.stale_crl and eid.missing_crl.
	staleCRL, missingCRL pa.CRLPolicy
	exempt               []string // eid.chip_auth_exempt_types
	// bankTrust is eid.bankeid_trust_dir's eID authorities; nil: bank eID
	// cards are refused (cert_untrusted).
	bankTrust *bankeid.Trust
}

// Probe tells the kind of the card in the reader (document.Detect).
func (c *chipReader) Probe(ctx context.Context) (document.Kind, error) {
	card, err := c.d.cards.Connect(ctx, "")
	if err != nil {
		return "", fmt.Errorf("connect card: %w", err)
	}
	defer card.Close()
	return document.Detect(ctx, card)
}

// Read detects the document in the reader (package document) and reads
// it with its driver: an eMRTD with the CAN, PIN or MRZ, a bank eID with
// the PIN, signing a challenge for the session's transaction.
func (c *chipReader) Read(ctx context.Context, pw emrtd.Password) (document.Document, error) {
	card, err := c.d.cards.Connect(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("connect card: %w", err)
	}
	defer card.Close()
	kind, err := document.Detect(ctx, card)
	if err != nil {
		return nil, err
	}
	if kind == document.KindBankEID {
		// The pad's digits are the card's PIN, whichever label the
		// shopper chose (a bank eID has no CAN); MRZ entry fails pin_format.
		opts := bankeid.Options{PIN: bankeid.PIN(pw.Secret), Trust: c.bankTrust, Logger: c.d.log.With("component", "bankeid")}
		if st := c.d.session.Status(); st.Request != nil {
			r := st.Request
			opts.Transaction = bankeid.Challenge{KioskID: c.d.cfg.Device.ID, TransactionID: r.ID, Amount: r.AmountMinor, Currency: r.Currency}
		}
		return document.ReadAs(ctx, kind, card, document.Request{BankEID: opts})
	}
	opts := emrtd.Options{
		Password: pw, Trust: c.trust.Store(), ATR: card.ATR(), Extended: c.extended,
		StaleCRL: c.staleCRL, MissingCRL: c.missingCRL,
		RequireChipAuthenticity: c.policy, ExemptTypes: c.exempt, Logger: c.d.log.With("component", "emrtd"),
		Progress: func(p emrtd.Progress) {
			c.d.bus.Publish(event.Event{Source: "emrtd", Kind: "emrtd.progress", Data: p})
		},
	}
	// Active authentication signs a challenge derived from this
	// transaction, so the chip's signature also says which one.
	if st := c.d.session.Status(); st.Request != nil {
		r := st.Request
		opts.AATransaction = fmt.Appendf(nil, "%s|%s|%s|%d|%s", r.ID, c.d.cfg.Tx.Merchant, r.MerchantRef, r.AmountMinor, r.Currency)
	}
	return document.ReadAs(ctx, kind, card, document.Request{EMRTD: opts})
}

// authorizer joins the session to the transaction flow.
type authorizer struct {
	d  *Daemon
	tx *txStack
}

func (a *authorizer) Authorize(ctx context.Context, req session.Request) (session.Authorization, error) {
	if req.Kind != "payment" {
		// A branch service proves identity; nothing to authorize.
		return session.Authorization{Approved: true}, nil
	}
	au, err := a.tx.flow.Authorize(ctx, txflow.Payment{TxID: req.ID, Merchant: a.d.cfg.Tx.Merchant, Amount: req.AmountMinor, Currency: req.Currency})
	if err != nil {
		return session.Authorization{}, err
	}
	return session.Authorization{Approved: au.Approved, Online: au.Online, Reason: au.Reason, Ref: au.Ref}, nil
}

// Precheck declines at once what offline rules would decline anyway when
// the hub is unreachable: the floor limit, the cap and the currency.
func (a *authorizer) Precheck(_ context.Context, req session.Request) (bool, string) {
	if req.Kind != "payment" || a.d.hub.Status().Connected {
		return true, ""
	}
	reason := a.tx.offline.Check(req.AmountMinor, req.Currency)
	return reason == "", reason
}

func (a *authorizer) Commit(ctx context.Context, rec session.Record) error {
	r := toReport(a.d.cfg, a.tx, rec)
	if err := a.tx.flow.Commit(ctx, r); err != nil {
		if rec.Auth != nil && rec.Auth.Approved && !rec.Auth.Online {
			_ = a.tx.flow.Release(rec.Request.ID)
		}
		return err
	}
	// Kept before the result is shown, like the report: a till that
	// retries after a restart hears this result, not a new payment.
	st := session.Status{State: session.Result, Request: &rec.Request, Since: rec.Finished,
		Outcome: &session.Outcome{Approved: rec.Approved, Reasons: rec.Reasons, Finished: rec.Finished}}
	if err := a.tx.history.Put(st); err != nil {
		a.d.log.Error("payment history not kept", "tx", rec.Request.ID, "err", err)
	}
	return nil
}

// toReport turns the session's record into the signed report's content:
// outcomes, scores and model hashes; never images, templates or the
// document number itself.
func toReport(cfg config.Config, tx *txStack, rec session.Record) *txreport.Report {
	r := &txreport.Report{
		V: 1, TxID: rec.Request.ID, Terminal: cfg.Device.ID, Merchant: cfg.Tx.Merchant, MerchantRef: rec.Request.MerchantRef,
		Kind: "identity", Started: txreport.Timestamp(rec.Started), Decided: txreport.Timestamp(rec.Finished),
		Checks: []txreport.Check{}, Scores: []txreport.Score{}, Models: []txreport.Model{}, Reasons: []string{},
		Decision: "declined", Auth: txreport.Auth{Mode: "none"},
	}
	if rec.Request.Kind == "payment" {
		r.Kind, r.Amount, r.Currency = "payment", rec.Request.AmountMinor, rec.Request.Currency
	} else {
		r.Service = rec.Request.Service
	}
	if rec.Approved {
		r.Decision = "approved"
	}
	for _, reason := range rec.Reasons {
		r.Reasons = append(r.Reasons, reason.Code)
	}
	if rec.DocNumber != "" && rec.Chip != nil {
		r.DocHash = tx.docHash(rec.Chip.Issuer, rec.DocNumber)
	}
	if rec.Chip != nil {
		for _, c := range rec.Chip.Checks {
			r.Checks = append(r.Checks, txreport.Check{Name: "eid." + c.Name, OK: c.OK, Code: c.Code})
		}
	}
	if f := rec.Face; f != nil {
		r.Scores = append(r.Scores, txreport.NewScore("match", f.Similarity, f.MatchThreshold),
			txreport.NewScore("liveness", f.Liveness, f.LivenessThreshold))
		consent := 0.0
		if f.Consent {
			consent = 1
		}
		r.Scores = append(r.Scores, txreport.NewScore("consent", consent, 1))
		for name, sum := range f.Models {
			r.Models = append(r.Models, txreport.Model{Name: name, SHA256: sum})
		}
		if q := f.Quality; q != nil {
			fs := &txreport.FaceSummary{Frames: int64(q.Frames), Good: int64(q.Good), NoFace: int64(q.NoFace)}
			if len(q.Rejected) > 0 {
				fs.Rejected = make(map[string]int64, len(q.Rejected))
				for code, n := range q.Rejected {
					fs.Rejected[code] = int64(n)
				}
			}
			if f.Consent {
				fs.ConsentAt = txreport.Timestamp(f.ConsentAt)
			}
			r.Face = fs
		}
	}
	if h := rec.HolderSignature; h != nil {
		r.HolderSignature = &txreport.HolderSignature{Profile: h.Profile, Algorithm: h.Algorithm,
			Challenge: h.Challenge, Signature: h.Signature, Certificate: h.Certificate}
	}
	if a := rec.Auth; a != nil && rec.Request.Kind == "payment" {
		r.Auth.Mode = "offline"
		if a.Online {
			r.Auth.Mode, r.Auth.Ref = "online", a.Ref
		}
	}
	return r
}

// forwardCards feeds card presence to the session.
func (d *Daemon) forwardCard(e cardreader.Event) {
	if d.session == nil {
		return
	}
	switch e.Kind {
	case cardreader.CardInserted:
		d.session.CardPresent(true)
	case cardreader.CardRemoved, cardreader.ServiceDown, cardreader.ReaderRemoved:
		d.session.CardPresent(false)
	}
}
