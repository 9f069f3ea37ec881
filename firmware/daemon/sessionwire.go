package daemon

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiosk/drivers/camera"
	"kiosk/drivers/cardreader"
	"kiosk/firmware/bankeid"
	"kiosk/firmware/config"
	"kiosk/firmware/ecr"
	"kiosk/firmware/emrtd"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/enroll"
	"kiosk/firmware/event"
	"kiosk/firmware/hub"
	"kiosk/firmware/session"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/refhub"
)

// buildSession assembles the transaction path: trust store, evidence and
// delivery, the face step, the session machine and the till's API. A kiosk
// without a card reader or hub link runs no sessions.
func (d *Daemon) buildSession() error {
	cfg := d.cfg
	if d.cards == nil || d.hub == nil {
		return nil
	}
	d.trust = openTrust(d.trustDir(), cfg.EID.HomeCountry, cfg.EID.CRLMaxAge)
	c := d.trust.Component(time.Now())
	if c.State != "ok" {
		d.log.Error("CSCA trust store", "dir", cfg.EID.TrustDir, "problem", c.Detail)
	}
	for _, p := range c.Info.(TrustInfo).Problems {
		d.log.Warn("trust store", "problem", p)
	}

	tx, err := d.openTx()
	if err != nil {
		return err
	}
	d.tx = tx
	// Whose signature on an authorization response counts: the bank
	// hub's certificates (hub.auth_cert) and, in simulation, the embedded
	// hub's key made for this run.
	var hubKeys *txreport.Keyring
	if cfg.Hub.AuthCert != "" {
		if hubKeys, err = txreport.LoadKeyringFile(cfg.Hub.AuthCert); err != nil {
			return &config.Error{Key: "hub.auth_cert", Msg: err.Error()}
		}
	}
	var hubSigner *txreport.Signer
	if cfg.Tx.EmbeddedHub && d.broker != nil {
		if hubSigner, err = ephemeralSigner("embedded-hub"); err != nil {
			return fmt.Errorf("embedded hub key: %w", err)
		}
		if hubKeys == nil {
			hubKeys = txreport.NewKeyring()
		}
		if err := hubKeys.Add(hubSigner.Certificate()); err != nil {
			return fmt.Errorf("embedded hub key: %w", err)
		}
	}
	// And the hub certificates the installed trust bundle brought.
	if hubKeys != nil {
		certs, err := d.bundleHubAuthCerts()
		if err != nil {
			d.log.Warn("trust bundle: its hub certificates are not used", "err", err)
		}
		for _, c := range certs {
			_ = hubKeys.Add(c) // checked by parseHubAuth
		}
	}
	if hubKeys == nil {
		d.log.Warn("authorization responses and report acks are not verified (simulation without hub.auth_cert)")
	} else {
		d.presenceKeys.Store(hubKeys)
	}
	tx.flow, err = txflow.New(txflow.Options{
		Hub: d.hub, Outbox: tx.outbox, Offline: tx.offline, Signer: tx.signer, HubKeys: hubKeys,
		AuthTimeout: cfg.Tx.AuthTimeout, Logger: d.log.With("component", "txflow"),
		OnDelivered: func(id string) {
			d.bus.Publish(event.Event{Source: "txflow", Kind: "tx.delivered", Data: map[string]string{"tx": id}})
		},
	})
	if err != nil {
		return fmt.Errorf("transaction flow: %w", err)
	}
	if err := d.buildJobs(nil); err != nil {
		return err
	}
	// An enrolled kiosk renews its certificate through the hub.
	if !tx.ephemeral && len(cfg.Hub.Brokers) > 0 {
		// Both stores make the new key beside the old one.
		var pending enroll.PendingKeys
		if _, ok := d.keyStore().(enroll.PendingKeys); ok {
			pending = pendingKeys{d}
		}
		tx.renewer, err = enroll.NewRenewer(enroll.RenewerOptions{
			Hub: d.hub, Signer: tx.signer, HubKeys: hubKeys, Keys: pending, Chain: cfg.Tx.DeviceCert, Now: d.now,
			Logger: d.log.With("component", "renewal"),
			// A tamper latched (or decommission begun) refuses the commit.
			Hold: func() error {
				if st := d.latched(); st.Latched {
					return errors.New("tamper latch is set")
				}
				return nil
			},
			OnRenewed: func(k crypto.Signer, _ *x509.Certificate) {
				d.keyMu.Lock()
				withdrawn := tx.signer.Withdrawn()
				if !withdrawn {
					d.deviceKey = k
				}
				d.keyMu.Unlock()
				if !withdrawn {
					d.hub.Reconnect("device certificate renewed")
				}
			},
		})
		if err != nil {
			return fmt.Errorf("certificate renewal: %w", err)
		}
	}
	// The bank eID authorities: the kiosk checks cards against them, the
	// embedded hub the holder signatures in reports.
	var bankTrust *bankeid.Trust
	if dir := cfg.EID.BankEIDTrustDir; dir != "" {
		if bankTrust, err = bankeid.LoadTrust(dir); err != nil {
			return &config.Error{Key: "eid.bankeid_trust_dir", Msg: err.Error()}
		}
	}
	if cfg.Tx.EmbeddedHub && d.broker != nil {
		// The embedded hub answers face reference requests from its
		// enrolment store (empty unless a test gives one): "none
		// enrolled" at once rather than a timeout.
		var enrolments hubstore.Enrolments = &hubstore.MemoryEnrolments{}
		if d.opts.Enrolments != nil {
			enrolments = d.opts.Enrolments
		}
		keys := txreport.NewKeyring()
		if err := keys.Add(tx.signer.Certificate()); err != nil {
			return fmt.Errorf("embedded hub keyring: %w", err)
		}
		store, err := hubstore.OpenBolt(filepath.Join(cfg.Tx.StateDir, "hub.db"))
		if err != nil {
			return fmt.Errorf("embedded hub store: %w", err)
		}
		tx.store, tx.hubKeys = store, keys
		tx.refhub, err = refhub.New(refhub.Options{
			Brokers: []string{d.broker.URL()}, Prefix: cfg.Hub.TopicPrefix, Keyring: keys, Signer: hubSigner, Store: store,
			Limits: hubstore.Limits{MaxTx: 500_00, MaxDaily: 5000_00}, Logger: d.log.With("component", "embedded-hub"),
			BankEIDTrust: bankTrust, Enrolments: enrolments,
		})
		if err != nil {
			return fmt.Errorf("embedded hub: %w", err)
		}
	}

	chip := &chipReader{d: d, trust: d.trust, bankTrust: bankTrust}
	if chip.staleCRL, err = pa.ParseCRLPolicy(cfg.EID.StaleCRL); err != nil {
		return &config.Error{Key: "eid.stale_crl", Msg: err.Error()}
	}
	if chip.missingCRL, err = pa.ParseCRLPolicy(cfg.EID.MissingCRL); err != nil {
		return &config.Error{Key: "eid.missing_crl", Msg: err.Error()}
	}
	if chip.policy, err = emrtd.ParsePolicy(cfg.EID.ChipAuth); err != nil {
		return &config.Error{Key: "eid.chip_auth", Msg: err.Error()}
	}
	chip.exempt = cfg.EID.ChipAuthExemptTypes
	// Fail closed, and say so: every document must prove its chip but
	// the legacy types named here.
	if len(chip.exempt) > 0 {
		d.log.Warn("chip authenticity: legacy document types exempted when their chip supports neither chip nor active authentication",
			"exempt_types", chip.exempt, "policy", chip.policy)
	} else {
		d.log.Info("chip authenticity required for every document type", "policy", chip.policy)
	}
	if chip.policy == emrtd.PolicyNone {
		d.log.Warn("chip authenticity disabled (eid.chip_auth = \"none\"): cloned chips are not detected")
	}
	if cfg.Policy.RequireChipAuthFor != nil {
		d.log.Warn("policy.require_chip_auth_for is obsolete and ignored: chip authenticity is required for every document type; see eid.chip_auth_exempt_types",
			"require_chip_auth_for", cfg.Policy.RequireChipAuthFor)
	}
	if chip.extended, err = emrtd.ParseExtendedMode(cfg.EID.ExtendedLength); err != nil {
		return &config.Error{Key: "eid.extended_length", Msg: err.Error()}
	}

	d.face, d.faceClose = d.newFace()
	var faceRefs session.FaceReferences
	if d.hub != nil {
		faceRefs = &hubFaceRefs{client: d.hub, signer: tx.signer, hubs: hubKeys, rsp: d.hub.Route(hub.TopicFaceRefRsp, 4),
			timeout: cfg.Policy.AuthorizeTimeout, now: d.now, log: d.log.With("component", "faceref")}
	}

	d.session = session.New(session.Options{
		Chip: chip, Face: d.face, Authorizer: &authorizer{d: d, tx: tx}, FaceReferences: faceRefs, Probe: chip.Probe,
		Policy: sessionPolicy(cfg, chip.exempt),
		Publish: func(kind string, data any) {
			d.cueCamera(kind)
			d.bus.Publish(event.Event{Source: "session", Kind: kind, Data: data})
			if kind == "session."+string(session.Idle) {
				trimCHeap()
			}
		},
		Logger: d.log.With("component", "session"),
		Ready:  d.sessionReady,
	})
	return d.buildECR()
}

// sessionReady names, as a reason code, why a session cannot start now
// ("" when it can): a firmware update installing ("updating"), or a part
// a session needs that is not working: the card reader (no service, or no
// reader), the camera, the face models. The hub is not needed: the
// offline rules decide without it. The shopper screen shows the same.
func (d *Daemon) sessionReady() string {
	switch {
	case d.ota != nil && d.ota.installing.Load():
		return "updating"
	case d.cards == nil || d.cards.Status().State != cardreader.StateOK:
		return "cardreader_down"
	case d.pump == nil || d.pump.Status().State == camera.StateDown:
		return "camera_down"
	case d.faceErr != "":
		return "face_down"
	}
	return ""
}

// buildECR opens the till's payment API listener.
func (d *Daemon) buildECR() error {
	c := d.cfg.ECR
	if c.Listen == "" {
		return nil
	}
	token := ""
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		switch {
		case err == nil:
			token = strings.TrimSpace(string(b))
		case errors.Is(err, os.ErrNotExist) && d.cfg.Device.Mode == "simulation":
			// The demo makes its own token and tells where it is.
			buf := make([]byte, 24)
			_, _ = rand.Read(buf)
			token = hex.EncodeToString(buf)
			if err := os.MkdirAll(filepath.Dir(c.TokenFile), 0o700); err == nil {
				err = os.WriteFile(c.TokenFile, []byte(token+"\n"), 0o600)
				if err != nil {
					return &config.Error{Key: "ecr.token_file", Msg: err.Error()}
				}
			}
			d.log.Info("ECR token created (simulation)", "token_file", c.TokenFile)
		default:
			return &config.Error{Key: "ecr.token_file", Msg: err.Error()}
		}
		if len(token) < 16 {
			return &config.Error{Key: "ecr.token_file", Msg: "token shorter than 16 characters"}
		}
	}
	var tlsCfg *tls.Config
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return &config.Error{Key: "ecr.tls_cert", Msg: err.Error()}
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if c.ClientCA != "" {
			pem, err := os.ReadFile(c.ClientCA)
			if err != nil {
				return &config.Error{Key: "ecr.client_ca", Msg: err.Error()}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return &config.Error{Key: "ecr.client_ca", Msg: "no PEM certificate"}
			}
			tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("ECR API: listen on %s: %w", c.Listen, err)
	}
	d.ecrLn = ln
	d.ecrSrv = &http.Server{
		Handler:           ecr.Handler(ecr.Options{Sessions: d.session, Token: token, History: d.tx.history, Logger: d.log.With("component", "ecr")}),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
	}
	return nil
}

// ECRAddr is the till API's address ("" when disabled).
func (d *Daemon) ECRAddr() string {
	if d.ecrLn == nil {
		return ""
	}
	return d.ecrLn.Addr().String()
}
