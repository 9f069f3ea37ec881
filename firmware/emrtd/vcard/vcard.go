// Package vcard is a virtual eMRTD chip (ICAO Doc 9303) in software: a
// cardreader.CardHandler built from a card image (package cardimage) that
// serves the LDS1 file system of 9303-10 behind the access control of
// 9303-11 §4 (PACE §4.4 and/or BAC §4.3) and secure messaging (§9.8). It is
// used in-process through the simulated reader and through pcscd via vpcd
// (`kioskctl eid emulate`).
//
// What the chip does:
//
//   - Master file (implicitly selected after reset, ISO/IEC 7816-4 §7.1):
//     EF.CardAccess (011C, 9303-10 §3.11.2), EF.DIR (2F00) and EF.ATR/INFO
//     (2F01) when the image has them, readable without authentication.
//   - The eMRTD application, selected by its AID A0 00 00 02 47 10 01
//     (9303-10 §3.6.1; SELECT P1=04), holding every other EF of the image:
//     EF.COM, EF.SOD and the data groups, selectable by file identifier
//     (P1=02) and readable by short EF identifier (READ BINARY P1 b8=1).
//     They are readable only inside secure messaging (9303-11 §4.2): a plain
//     READ BINARY answers 6982.
//   - READ BINARY 'B0' with a 15-bit offset and 'B1' with the offset in
//     DO'54' (ISO/IEC 7816-4 §7.2.3 and §7.2.2); 6282 with the remainder when
//     reading past the end, 6B00 for an offset beyond it.
//   - Extended-length APDUs only when the image says so (card.json
//     extended_length); otherwise an extended command or Le > 256 is 6700.
//     A response that does not fit the command's Le (secure messaging adds
//     up to 30 bytes to a 256-byte read) is chained with 61xx and GET
//     RESPONSE (ISO/IEC 7816-4 §5.1.3, §7.6.1), as T=0 cards do.
//   - PACE with CAN, PIN and MRZ (package pace, chip side) when the image has
//     EF.CardAccess; BAC (package bac, chip side) on BAC-only images and, as
//     most real PACE chips do for legacy terminals, also on PACE images
//     unless Options.NoBACOnPACE is set. Whether to use BAC is the
//     terminal's decision (9303-11 §4.2: never after a failed PACE).
//   - Once a secure messaging session exists every command must be
//     protected; a command that fails the check is answered in plain with
//     6987/6988 and the session is gone, so the terminal must authenticate
//     again (9303-11 §9.8.4–§9.8.5).
//   - Chip Authentication (package ca, 9303-11 §6.2) with the image's
//     keys/ca.pem and the protocols of its DG14: MSE:Set KAT (3DES) or
//     MSE:Set AT + General Authenticate (AES) inside secure messaging; the
//     response is protected with the old keys, every later command with
//     the new ones. A cloned image holds another key than DG14 publishes,
//     so its new keys differ from the terminal's.
//   - Active Authentication (package aa, 9303-11 §6.1): INTERNAL
//     AUTHENTICATE inside secure messaging, signed with keys/aa.pem.
//   - PACE with the Chip Authentication Mapping when card.json names it
//     (9303-11 §4.4.3.3.3), proving keys/ca.pem; EF.CardSecurity (011D in
//     the master file, the image's card_security.bin) readable inside
//     secure messaging only.
//   - The PIN retry counter (pace.Card semantics) survives Reset; a session
//     and the file selection do not.
//
// Process never panics: inputs are validated before use, and a recover in
// Process answers 6F00 (and logs) as a last line of defence.
package vcard

import (
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/emrtd/aa"
	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/ca"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/sm"
)

// ErrImage is wrapped by New when the image cannot back a chip.
var ErrImage = errors.New("vcard: unusable card image")

// Hooks let a card profile intercept the chip's answers, e.g. a hostile or
// defective chip for terminal tests. Both are optional; they run under the
// card's lock and must not call back into the Card.
type Hooks struct {
	// Response alters the plain response to a command before secure
	// messaging protects it (a chip that serves wrong data with a valid
	// MAC). cmd is the plain command (unwrapped if it was protected).
	Response func(cmd apdu.Command, resp apdu.Response) apdu.Response
	// Mutate alters the R-APDU bytes as they leave the chip (after secure
	// messaging and response chaining): flip MAC bits, truncate, oversize.
	// cmd is the plain command, or the raw header when it did not parse.
	Mutate func(cmd apdu.Command, resp []byte) []byte
}

// Options configure a Card. Zero values pick the defaults.
type Options struct {
	// Rand supplies the chip's nonces and keys (PACE, BAC, GET CHALLENGE);
	// nil means crypto/rand.
	Rand io.Reader
	// Logger gets a debug line per APDU (header, lengths, SW; never data)
	// and an error for a recovered panic. nil discards.
	Logger *slog.Logger
	// PINRetries, when not nil, is the current PIN retry counter (0 =
	// blocked), e.g. as persisted by `kioskctl eid emulate`; nil starts
	// from Meta.PINRetries. Meta.PINRetries is always the maximum a correct
	// PIN resets the counter to.
	PINRetries *int
	// OnPINRetries is called with the new counter whenever it changes. It
	// runs under the card's lock: it must not call the Card.
	OnPINRetries func(left int)
	// NoBACOnPACE makes a PACE chip refuse BAC (GET CHALLENGE / EXTERNAL
	// AUTHENTICATE answer 6D00). By default PACE chips also answer BAC,
	// as real ones do for legacy terminals.
	NoBACOnPACE bool
	// Hooks for card profiles.
	Hooks Hooks
}

// Auth is the access control that opened the current session.
type Auth int

// Access control protocols.
const (
	AuthNone Auth = iota
	AuthBAC
	AuthPACE
)

func (a Auth) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthBAC:
		return "BAC"
	case AuthPACE:
		return "PACE"
	}
	return fmt.Sprintf("Auth(%d)", int(a))
}

// Card is the virtual chip. It is safe for concurrent use; commands are
// processed one at a time, as by a real chip.
type Card struct {
	log      *slog.Logger
	hooks    Hooks
	rnd      io.Reader
	atr      []byte
	extended bool
	mf       map[uint16][]byte // EFs of the master file
	app      map[uint16][]byte // EFs of the eMRTD application
	appSFI   map[byte]uint16   // short EF identifiers of the application
	mfSFI    map[byte]uint16   // short EF identifiers of the master file
	hostile  *hostile          // behaviours of a hostile profile (profiles.go)

	mu      sync.Mutex
	pace    *pace.Card // nil: no PACE (BAC-only image)
	bac     *bac.Card  // nil: no BAC
	ca      *ca.Card   // nil: no Chip Authentication
	aa      *aa.Card   // nil: no Active Authentication
	sess    *sm.Session
	next    *sm.Session // Chip Authentication's session, installed after the current response
	auth    Auth
	pwd     pace.PasswordType
	df      df     // current DF
	ef      int32  // current EF id, -1 none
	pending []byte // response data still to be fetched with GET RESPONSE
	pendSW  uint16 // the final SW of the chained response
}

var _ cardreader.CardHandler = (*Card)(nil)

// New builds the chip for img. The image is validated and its files are
// copied: later changes to img do not affect the card.
func New(img *cardimage.Image, opts Options) (*Card, error) {
	if img == nil {
		return nil, fmt.Errorf("%w: nil image", ErrImage)
	}
	if err := img.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	m := img.Meta
	c := &Card{
		log:      opts.Logger,
		hooks:    opts.Hooks,
		rnd:      opts.Rand,
		extended: m.ExtendedLength,
		mf:       map[uint16][]byte{},
		app:      map[uint16][]byte{},
		appSFI:   map[byte]uint16{},
		mfSFI:    map[byte]uint16{},
		ef:       -1,
		hostile:  newHostile(m.Profile),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.rnd == nil {
		c.rnd = rand.Reader
	}
	c.atr = DefaultATR(m.ExtendedLength)
	if m.ATR != "" {
		atr, err := hex.DecodeString(m.ATR)
		if err != nil {
			return nil, fmt.Errorf("%w: atr: %w", ErrImage, err)
		}
		c.atr = atr
	}
	for fid, b := range img.Files {
		b = append([]byte(nil), b...)
		if isMFFile(fid) {
			c.mf[fid] = b
			continue
		}
		c.app[fid] = b
		if sfi, ok := appSFI(fid); ok {
			c.appSFI[sfi] = fid
		}
	}
	if err := c.hostile.mutateFiles(c.app); err != nil {
		return nil, fmt.Errorf("%w: profile %q: %w", ErrImage, m.Profile, err)
	}
	if _, ok := c.mf[fidCardAccess]; ok {
		c.mfSFI[sfiCardAccess] = fidCardAccess
	}
	if img.CardSecurity != nil {
		c.mf[lds.FIDCardSecurity] = append([]byte(nil), img.CardSecurity...)
	}

	key := bac.Key{DocumentNumber: m.MRZ.DocumentNumber, DateOfBirth: m.MRZ.Birth, DateOfExpiry: m.MRZ.Expiry}
	if m.PACE != nil {
		mrz, err := key.MRZInformation()
		if err != nil {
			return nil, fmt.Errorf("%w: mrz: %w", ErrImage, err)
		}
		left := m.PINRetries
		if opts.PINRetries != nil {
			left = max(*opts.PINRetries, 0)
		}
		// PACE-CAM proves the chip's static key in the mapping: the chip
		// authentication key (a cloned chip holds another one).
		var camKey []byte
		if img.CAKey != nil {
			if k, err := pubkey.ParsePrivateKeyPEM(img.CAKey); err == nil && k.EC != nil {
				camKey = k.EC.D
			}
		}
		// The PACEInfo comes from card.json rather than from parsing
		// EF.CardAccess, so a profile may serve a damaged EF.CardAccess
		// while the chip still runs PACE.
		c.pace, err = pace.NewCard(pace.CardOptions{
			Infos:         []pace.PACEInfo{{Protocol: m.PACE.OID, Version: 2, ParameterID: m.PACE.ParameterID, HasParameterID: true}},
			Secrets:       pace.CardSecrets{MRZ: mrz, CAN: m.CAN, PIN: m.PIN},
			PINRetries:    left,
			PINMaxRetries: m.PINRetries,
			OnPINRetries:  opts.OnPINRetries,
			Rand:          c.rnd,
			CAMKey:        camKey,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: pace: %w", ErrImage, err)
		}
	}
	if m.PACE == nil || !opts.NoBACOnPACE {
		var err error
		if c.bac, err = bac.NewCard(key, c.rnd); err != nil {
			return nil, fmt.Errorf("%w: bac: %w", ErrImage, err)
		}
	}
	if err := c.chipKeys(img); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	return c, nil
}

// chipKeys sets up Chip and Active Authentication from the image's keys
// and DG14 (9303-11 §9.2.5–§9.2.7).
func (c *Card) chipKeys(img *cardimage.Image) error {
	var dg14 *lds.DG14
	if b, ok := img.Files[0x010E]; ok {
		var err error
		if dg14, err = lds.ParseDG14(b); err != nil && (img.CAKey != nil || img.AAKey != nil) {
			return fmt.Errorf("DG14: %w", err)
		}
	}
	if img.CAKey != nil {
		if dg14 == nil {
			if img.CardSecurity != nil {
				// A PACE-CAM chip without DG14: its key serves the
				// mapping only (EF.CardSecurity publishes it).
				return c.aaKey(img, nil)
			}
			return errors.New("a chip authentication key needs DG14")
		}
		k, err := pubkey.ParsePrivateKeyPEM(img.CAKey)
		if err != nil {
			return fmt.Errorf("ca key: %w", err)
		}
		infos, _ := ca.Infos(dg14)
		if c.ca, err = ca.NewCard(k, infos); err != nil {
			return err
		}
	}
	return c.aaKey(img, dg14)
}

// aaKey sets up Active Authentication from keys/aa.pem (the hash from
// DG14's ActiveAuthenticationInfo for ECDSA, card.json for RSA).
func (c *Card) aaKey(img *cardimage.Image, dg14 *lds.DG14) error {
	if img.AAKey != nil {
		k, err := pubkey.ParsePrivateKeyPEM(img.AAKey)
		if err != nil {
			return fmt.Errorf("aa key: %w", err)
		}
		var h crypto.Hash
		switch {
		case k.RSA != nil:
			h = map[string]crypto.Hash{"": crypto.SHA1, "SHA-1": crypto.SHA1, "SHA-224": crypto.SHA224, "SHA-256": crypto.SHA256,
				"SHA-384": crypto.SHA384, "SHA-512": crypto.SHA512}[img.Meta.AAHash]
		case dg14 != nil && len(dg14.AA) > 0:
			h, _ = aa.HashForSignatureOID(dg14.AA[0].SignatureAlgorithm)
		}
		if c.aa, err = aa.NewCard(k, h, c.rnd); err != nil {
			return err
		}
	}
	return nil
}

// ATR implements cardreader.CardHandler.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Reset implements cardreader.CardHandler: a power cycle. The session, the
// selection (back to the MF) and any protocol run in progress are lost; the
// PIN retry counter is not (it lives in the chip's non-volatile memory).
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropSession("reset")
	if c.pace != nil {
		c.pace.Reset()
	}
	if c.bac != nil {
		c.bac.Reset()
	}
	c.df, c.ef = dfMF, -1
	c.pending, c.pendSW = nil, 0
}

// PINRetries returns the PIN retry counter (-1 on a chip without PACE).
func (c *Card) PINRetries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pace == nil {
		return -1
	}
	return c.pace.PINRetries()
}

// Session reports the access control of the current secure messaging
// session (AuthNone if there is none) and, for PACE, its password.
func (c *Card) Session() (Auth, pace.PasswordType) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth, c.pwd
}

// Process implements cardreader.CardHandler: it answers one C-APDU.
func (c *Card) Process(capdu []byte) (out []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var hdr apdu.Command
	if len(capdu) >= 4 {
		hdr = apdu.Command{CLA: capdu[0], INS: capdu[1], P1: capdu[2], P2: capdu[3]}
	}
	defer func() {
		// Last line of defence: the dispatch is written not to need it.
		if r := recover(); r != nil {
			c.log.Error("vcard: panic while processing a command", "ins", fmt.Sprintf("%02X", hdr.INS),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.dropSession("panic")
			c.pending = nil
			out = []byte{0x6F, 0x00}
		}
	}()
	cmd, out := c.process(capdu, hdr)
	out = c.afterHostile(cmd, out)
	if c.hooks.Mutate != nil {
		out = c.hooks.Mutate(cmd, out)
	}
	sw := uint16(0)
	if len(out) >= 2 {
		sw = uint16(out[len(out)-2])<<8 | uint16(out[len(out)-1])
	}
	c.log.Debug("vcard apdu", "cla", hdr.CLA, "ins", hdr.INS, "p1", hdr.P1, "p2", hdr.P2,
		"in", len(capdu), "out", len(out), "sw", fmt.Sprintf("%04X", sw), "auth", c.auth.String())
	return out
}

// process parses, checks and unwraps a command, executes it and protects
// and chains the response. It returns the plain command for the hooks.
func (c *Card) process(capdu []byte, hdr apdu.Command) (apdu.Command, []byte) {
	cmd, ext, err := apdu.ParseCommand(capdu)
	if err != nil {
		c.dropSession("malformed command")
		c.pending = nil
		return hdr, status(apdu.SWWrongLength)
	}
	if ext && !c.extended {
		// A chip without extended length cannot parse the command.
		c.dropSession("extended length not supported")
		c.pending = nil
		return cmd, status(apdu.SWWrongLength)
	}
	// GET RESPONSE belongs to the transport (ISO/IEC 7816-4 §7.6.1): it
	// is never protected and does not touch the session.
	if cmd.INS == insGetResponse && cmd.CLA&0xFC == 0 {
		return cmd, c.getResponse(cmd)
	}
	c.pending = nil
	if sw, ok := c.checkCLA(cmd); !ok {
		c.dropSession("bad class byte")
		return cmd, status(sw)
	}
	outerNe := cmd.Ne
	if c.sess == nil {
		if cmd.CLA&0x0C != 0 {
			return cmd, status(apdu.SWSMDataObjectsIncorrect) // protected, but no session
		}
		resp := c.execute(cmd, false)
		return cmd, c.chain(c.respHook(cmd, resp), outerNe)
	}
	// 9303-11 §9.8: every command of a session is protected.
	plain, err := c.sess.UnwrapCommand(cmd)
	if err != nil {
		sw := sm.ErrorStatus(err)
		c.dropSession(err.Error())
		return cmd, status(sw)
	}
	var resp apdu.Response
	if plain.Ne > apdu.MaxShortNe && !c.extended {
		resp = apdu.Status(apdu.SWWrongLength)
	} else {
		resp = c.execute(plain, true)
	}
	resp = c.respHook(plain, resp)
	wrapped, err := c.sess.WrapResponse(resp)
	if err != nil {
		c.dropSession(err.Error())
		return plain, status(apdu.SWUnknown)
	}
	if c.next != nil {
		// Chip Authentication: its response went out under the old keys;
		// from now on the new ones (9303-11 §6.2.4).
		c.sess, c.next = c.next, nil
		c.log.Debug("vcard: secure messaging re-keyed by chip authentication")
	}
	return plain, c.chain(wrapped, outerNe)
}

func (c *Card) respHook(cmd apdu.Command, r apdu.Response) apdu.Response {
	if c.hooks.Response != nil {
		return c.hooks.Response(cmd, r)
	}
	return r
}

// checkCLA accepts the interindustry class of ISO/IEC 7816-4 §5.1.1 on the
// basic logical channel: secure messaging indication 00 or 0C, command
// chaining (bit 5) only for General Authenticate (PACE chains its steps).
func (c *Card) checkCLA(cmd apdu.Command) (uint16, bool) {
	switch {
	case cmd.CLA&0xE0 != 0:
		return apdu.SWCLANotSupported, false
	case cmd.CLA&0x03 != 0:
		return 0x6881, false // logical channel not supported
	case cmd.CLA&0x0C == 0x04 || cmd.CLA&0x0C == 0x08:
		return 0x6882, false // proprietary SM / SM without header authentication
	case cmd.CLA&0x10 != 0 && cmd.INS != insGeneralAuthenticate:
		return 0x6884, false // command chaining not supported
	}
	return 0, true
}

// execute runs one plain command. secured says whether it arrived inside
// secure messaging.
func (c *Card) execute(cmd apdu.Command, secured bool) apdu.Response {
	switch cmd.INS {
	case insSelect:
		return c.selectFile(cmd)
	case insReadBinary, insReadBinaryOdd:
		return c.readBinary(cmd, secured)
	case insMSE:
		if cmd.P1 == 0x41 { // set for internal authentication: Chip Authentication
			if c.ca == nil {
				return apdu.Status(apdu.SWReferencedDataNotFound)
			}
			if !secured {
				return apdu.Status(apdu.SWSecurityNotSatisfied)
			}
			if cmd.P2 == 0xA6 {
				resp, sess := c.ca.SetKAT(cmd)
				c.next = sess
				return resp
			}
			return c.ca.SetAT(cmd)
		}
		if c.pace == nil {
			return apdu.Status(apdu.SWINSNotSupported)
		}
		if secured {
			// PACE runs on a plain channel (9303-11 §4.4.4).
			return apdu.Status(apdu.SWConditionsNotSatisfied)
		}
		return c.pace.SetAT(cmd)
	case insGeneralAuthenticate:
		if secured && c.ca != nil && c.ca.Pending() {
			resp, sess := c.ca.GeneralAuthenticate(cmd)
			c.next = sess
			return resp
		}
		if c.pace == nil {
			return apdu.Status(apdu.SWINSNotSupported)
		}
		if secured {
			return apdu.Status(apdu.SWConditionsNotSatisfied)
		}
		resp, sess := c.pace.GeneralAuthenticate(cmd)
		if sess != nil {
			pw, _ := c.pace.Authenticated()
			c.startSession(sess, AuthPACE, pw)
		}
		return resp
	case insInternalAuthenticate:
		if c.aa == nil {
			return apdu.Status(apdu.SWINSNotSupported)
		}
		if !secured {
			return apdu.Status(apdu.SWSecurityNotSatisfied)
		}
		return c.aa.InternalAuthenticate(cmd)
	case insGetChallenge:
		if c.bac == nil {
			return apdu.Status(apdu.SWINSNotSupported)
		}
		if secured {
			return apdu.Status(apdu.SWConditionsNotSatisfied)
		}
		return c.bac.GetChallenge(cmd)
	case insExternalAuthenticate:
		if c.bac == nil {
			return apdu.Status(apdu.SWINSNotSupported)
		}
		if secured {
			return apdu.Status(apdu.SWConditionsNotSatisfied)
		}
		resp, sess := c.bac.ExternalAuthenticate(cmd)
		if sess != nil {
			c.startSession(sess, AuthBAC, 0)
		}
		return resp
	}
	return apdu.Status(apdu.SWINSNotSupported)
}

// startSession installs the session a protocol handed out: it protects
// from the next command on (the protocol's last response is plain).
func (c *Card) startSession(s *sm.Session, a Auth, pw pace.PasswordType) {
	c.sess, c.auth, c.pwd = s, a, pw
	c.log.Debug("vcard: secure messaging started", "auth", a.String(), "password", pw.String())
}

func (c *Card) dropSession(why string) {
	if c.sess == nil {
		return
	}
	c.sess, c.next, c.auth, c.pwd = nil, nil, AuthNone, 0
	if c.ca != nil {
		c.ca.Reset()
	}
	if c.pace != nil {
		c.pace.Reset()
	}
	c.log.Debug("vcard: secure messaging ended", "reason", why)
}

func status(sw uint16) []byte { return []byte{byte(sw >> 8), byte(sw)} }
