// Package emrtd is the kiosk's eMRTD inspection procedure (ICAO Doc 9303-11
// §4.2, §5, §6 in the order of BSI TR-03135 / TR-03110-1): access control
// (PACE, or BAC when the chip has no EF.CardAccess), the security objects
// (EF.COM, EF.SOD, DG14, DG15) and their passive authentication, the
// EF.CardAccess ⊆ DG14 check, then the proof that the chip is the
// issuer's — Chip Authentication (§6.2, DG14) or Active Authentication
// (§6.1, DG15) — and only then DG1, DG2 (and DG11, DG12) under the
// strongest secure messaging the chip offers, with their hashes. It
// produces a Report with every check's outcome.
//
// Chip authenticity is required for every document (fail closed); a chip
// that supports neither protocol passes only when Options.ExemptTypes
// names its document type (legacy documents, an explicit operator
// choice).
//
// The packages below it implement the pieces: apdu (ISO/IEC 7816-4), sm
// (§9.8), bac (§4.3), pace (§4.4), lds (9303-10), pa (§5.1), ca (§6.2),
// aa (§6.1).
package emrtd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/atr"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/sm"
	"kiosk/firmware/emrtd/tlv"
)

// PasswordKind says which secret the holder gave.
type PasswordKind string

// Password kinds.
const (
	CAN PasswordKind = "CAN"
	PIN PasswordKind = "PIN"
	MRZ PasswordKind = "MRZ"
)

// Password is the access secret. It is never logged or reported: String,
// LogValue and GoString show the kind only, and JSON leaves the secret out.
type Password struct {
	Kind   PasswordKind
	Secret string  `json:"-"` // CAN or PIN digits
	MRZ    bac.Key `json:"-"` // for Kind MRZ
}

// String hides the secret (so %v in a log line cannot leak it).
func (p Password) String() string { return string(p.Kind) + ":***" }

// LogValue implements slog.LogValuer: any handler, text or JSON, sees the
// kind only.
func (p Password) LogValue() slog.Value { return slog.StringValue(p.String()) }

// GoString keeps %#v from printing the secret.
func (p Password) GoString() string { return p.String() }

// ExtendedMode chooses extended-length APDUs.
type ExtendedMode int

// Extended-length modes.
const (
	ExtendedAuto   ExtendedMode = iota // from the ATR's card capabilities
	ExtendedAlways                     // force
	ExtendedNever                      // short APDUs only
)

// ParseExtendedMode reads "auto", "on" or "off" (config and kioskctl).
func ParseExtendedMode(s string) (ExtendedMode, error) {
	switch s {
	case "auto", "":
		return ExtendedAuto, nil
	case "on":
		return ExtendedAlways, nil
	case "off":
		return ExtendedNever, nil
	}
	return 0, fmt.Errorf("extended length %q: want auto, on or off", s)
}

// Options configure one inspection.
type Options struct {
	Password Password
	Trust    *pa.TrustStore
	// ATR of the card, for the extended-length capability.
	ATR      []byte
	Extended ExtendedMode
	// Now is the verification time (certificate validity); nil = time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Progress, when set, hears each step of the read as it starts (for
	// the shopper's progress bar); it must not block.
	Progress func(Progress)
	// RequireChipAuthenticity is the anti-cloning policy; "" means
	// PolicyAny.
	RequireChipAuthenticity Policy
	// ExemptTypes are the document types (DG1's document code, e.g. "P",
	// "I", "ID"; "*" for all) that pass without chip authenticity when
	// their chip supports neither Chip nor Active Authentication (and, with
	// PACE, has no DG14 to authenticate EF.CardAccess): legacy documents
	// an operator chose to accept. Empty (the default) exempts none. Each
	// exemption used is logged. It applies under PolicyAny only (PolicyCA
	// and PolicyAA demand their protocol of every document), and a
	// protocol the chip supports is run and required whatever this says.
	ExemptTypes []string
	// AATransaction, when not nil, binds Active Authentication to a
	// transaction: the challenge is the first 8 bytes of
	// SHA-256(AATransaction) (aa.ChallengeFor), so the chip's signature
	// commits to it. nil means a random challenge.
	AATransaction []byte
	// StaleCRL and MissingCRL are the revocation policy (pa.Options):
	// by default a stale CRL declines, a missing one warns.
	StaleCRL, MissingCRL pa.CRLPolicy
}

// ErrDevice marks failures of the reader or the link rather than of the
// document: the card was pulled, the reader or pcscd went away, a timeout.
var ErrDevice = errors.New("emrtd: card or reader failure")

func deviceError(err error) bool {
	return errors.Is(err, cardreader.ErrCardRemoved) || errors.Is(err, cardreader.ErrTimeout) ||
		errors.Is(err, cardreader.ErrServiceUnavailable) || errors.Is(err, cardreader.ErrClosed) ||
		errors.Is(err, cardreader.ErrNoCard) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// Progress is a step of Read: Step of Total, named by ReadSteps.
type Progress struct {
	Step  int    `json:"step"`
	Total int    `json:"total"`
	Name  string `json:"name"`
}

// ReadSteps are the names of Read's progress steps, in order (TR-03135
// order: the chip proves itself before the personal data is read):
// access control, EF.COM, EF.SOD, DG14/DG15 ("security_infos", read
// whether or not the chip has them), chip authenticity (passive
// authentication of the security objects, EF.CardAccess ⊆ DG14, CA/AA),
// DG1, DG2, verify (passive authentication of everything read).
func ReadSteps() []string {
	return []string{"access", "EF.COM", "EF.SOD", "security_infos", "chip_authenticity", "DG1", "DG2", "verify"}
}

// readSteps is Progress.Total.
const readSteps = 8

// Read runs the inspection on a connected card. It returns an error only
// for device failures (wrapping ErrDevice); every failure of the document
// itself — a wrong password, a bad signature, garbage from a hostile chip
// — is a failed check in the returned report.
//
// Order (BSI TR-03135, 9303-11 §4.2 / §5 / §6): access control → EF.COM,
// EF.SOD → DG14, DG15 → passive authentication of the SOD and the
// DG14/DG15 hashes → EF.CardAccess ⊆ DG14 → Chip Authentication (then
// Active Authentication) → DG1, DG2, DG11, DG12 under the chip
// authentication keys → passive authentication of every data group. A
// step that refuses the document ends the read there: no personal data
// is read from a chip that failed to prove itself.
func Read(ctx context.Context, t apdu.Transport, opts Options) (*Report, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	step := 0
	progress := func(name string) {
		step++
		if opts.Progress != nil {
			opts.Progress(Progress{Step: step, Total: readSteps, Name: name})
		}
	}
	extended := opts.Extended == ExtendedAlways || (opts.Extended == ExtendedAuto && atr.ExtendedLength(opts.ATR))
	ch := apdu.NewChannel(t, apdu.Options{Extended: extended, Logger: log})
	r := &Report{ExtendedLength: extended, PhasesMS: map[string]float64{}}
	started := time.Now()
	defer func() {
		s := ch.Stats()
		r.APDUs, r.BytesOut, r.BytesIn = s.APDUs, int(s.BytesOut), int(s.BytesIn)
		r.PhasesMS["total"] = ms(time.Since(started))
	}()
	paOpts := pa.Options{At: now(), StaleCRL: opts.StaleCRL, MissingCRL: opts.MissingCRL}

	// Phase 1: access control (9303-11 §4.2: PACE if EF.CardAccess says so).
	phase := time.Now()
	progress("access")
	acc, err := access(ctx, ch, opts.Password, r, log)
	r.PhasesMS["access"] = ms(time.Since(phase))
	if err != nil {
		if deviceError(err) {
			return r, fmt.Errorf("%w: access control: %w", ErrDevice, err)
		}
		return r, nil
	}

	// Phase 2: the security objects under secure messaging.
	phase = time.Now()
	files, err := readSecurityObjects(ctx, ch, r, progress)
	r.PhasesMS["read"] = ms(time.Since(phase))
	if err != nil {
		if deviceError(err) {
			return r, fmt.Errorf("%w: reading: %w", ErrDevice, err)
		}
		return r, nil
	}

	// Phase 3: is the chip the issuer's (9303-11 §6)? Its keys count only
	// once passive authentication vouched for DG14/DG15.
	progress("chip_authenticity")
	gate, err := authenticateChip(ctx, ch, files, acc, paOpts, opts, r, log)
	if err != nil {
		return r, fmt.Errorf("%w: chip authenticity: %w", ErrDevice, err)
	}
	if gate.stop {
		return r, nil
	}

	// Phase 4: the data groups, under the chip authentication keys when
	// CA ran.
	phase = time.Now()
	err = readDataGroups(ctx, ch, files, r, progress)
	r.PhasesMS["read"] += ms(time.Since(phase))
	if err != nil {
		if deviceError(err) {
			return r, fmt.Errorf("%w: reading: %w", ErrDevice, err)
		}
		return r, nil
	}
	r.dg2 = files.dg2

	// Phase 5: parse and verify everything read.
	phase = time.Now()
	progress("verify")
	verify(files, opts.Trust, paOpts, r)
	r.PhasesMS["verify"] += ms(time.Since(phase))
	gate.resolve(r, opts, log)
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// accessResult is what access control used: EF.CardAccess and the
// PACEInfo chosen from it (nil for BAC), for the check against DG14.
type accessResult struct {
	cardAccess *pace.SecurityInfos
	raw        [][]byte // EF.CardAccess's SecurityInfos as DER
	used       *pace.PACEInfo
	// cam is set after PACE-CAM, with EF.CardSecurity as read (or why it
	// could not be): the chip is proven only once both check out.
	cam             *pace.CAMData
	cardSecurity    []byte
	cardSecurityErr error
}

// access establishes secure messaging. PACE failure never falls back to
// BAC (9303-11 §4.2: a terminal that tried PACE must not downgrade).
func access(ctx context.Context, ch *apdu.Channel, pw Password, r *Report, log *slog.Logger) (*accessResult, error) {
	fail := func(code, reason string, err error) (*accessResult, error) {
		r.add(Check{Name: "access_control", Code: code, Reason: reason, Required: true})
		if err == nil {
			err = errors.New(reason)
		}
		return nil, err
	}
	mfErr := ch.SelectMF(ctx)
	if mfErr != nil && deviceError(mfErr) {
		return nil, mfErr
	}
	cardAccess, err := ch.ReadFile(ctx, lds.FIDCardAccess)
	switch {
	case err == nil:
	case deviceError(err):
		return nil, err
	case apdu.IsSW(err, apdu.SWFileNotFound) && mfErr == nil:
		// Only an absent EF.CardAccess in a selected MF means "no PACE";
		// a chip in some other state must not push us down to BAC.
		cardAccess = nil
	default:
		return fail("card_access_unreadable", fmt.Sprintf("EF.CardAccess could not be read: %v", err), err)
	}

	if cardAccess == nil {
		// No EF.CardAccess: the chip offers BAC only (9303-11 §4.3).
		r.Access = AccessInfo{Protocol: "BAC", Password: string(MRZ), Cipher: "3DES"}
		if pw.Kind != MRZ {
			return fail("bac_needs_mrz", "the chip supports BAC only, which needs the MRZ (document number, birth and expiry dates)", nil)
		}
		sess, err := bac.Authenticate(ctx, ch, pw.MRZ, bac.Options{Logger: log})
		if err != nil {
			if deviceError(err) {
				return nil, err
			}
			return fail("bac_failed", fmt.Sprintf("BAC failed (wrong MRZ data?): %v", err), err)
		}
		ch.SetWrapper(sess)
		r.add(Check{Name: "access_control", OK: true, Reason: "BAC established 3DES secure messaging", Required: true})
		return &accessResult{}, nil
	}

	infos, err := pace.ParseCardAccess(cardAccess)
	if err != nil {
		return fail("card_access_malformed", fmt.Sprintf("EF.CardAccess is malformed: %v", err), err)
	}
	raw, err := lds.SecurityInfoElements(cardAccess)
	if err != nil {
		return fail("card_access_malformed", fmt.Sprintf("EF.CardAccess is malformed: %v", err), err)
	}
	info, several, err := infos.Select()
	if err != nil {
		return fail("pace_unsupported", fmt.Sprintf("no supported PACE parameters: %v", err), err)
	}
	proto, params, err := info.Resolve()
	if err != nil {
		return fail("pace_unsupported", fmt.Sprintf("PACE parameters not supported: %v", err), err)
	}
	r.Access = AccessInfo{Protocol: "PACE", Password: string(pw.Kind), OID: proto.OID, Mapping: proto.Mapping.String(),
		Cipher: proto.Cipher.String(), Curve: params.Name, ParameterID: params.ID}
	var ppw pace.Password
	switch pw.Kind {
	case CAN:
		ppw = pace.CANPassword(pw.Secret)
	case PIN:
		ppw = pace.PINPassword(pw.Secret)
	case MRZ:
		ppw, err = pace.MRZPassword(pw.MRZ)
		if err != nil {
			return fail("password_invalid", fmt.Sprintf("MRZ data invalid: %v", err), err)
		}
	default:
		return fail("password_invalid", "no password given", nil)
	}
	res, err := pace.Establish(ctx, ch, ppw, info, pace.Options{SendParameterID: several, Logger: log})
	if err != nil {
		if deviceError(err) {
			return nil, err
		}
		var wp *pace.WrongPasswordError
		switch {
		case errors.Is(err, pace.ErrCAMFailed):
			// The password was right (the tokens verified) but the chip's
			// mapping data is missing or garbled: not the issuer's chip.
			return fail(CodeCAMFailed, fmt.Sprintf("PACE-CAM: the chip's authentication data is unusable: %v", err), err)
		case errors.Is(err, pace.ErrPINBlocked):
			r.Access.RetriesLeft = intp(0)
			return fail("pin_blocked", "the PIN is blocked after too many wrong attempts; the PUK unblocks it", err)
		case errors.As(err, &wp):
			if wp.RetriesLeft >= 0 {
				r.Access.RetriesLeft = intp(wp.RetriesLeft)
				return fail("wrong_password", fmt.Sprintf("wrong %s (%d attempts left)", pw.Kind, wp.RetriesLeft), err)
			}
			return fail("wrong_password", fmt.Sprintf("wrong %s", pw.Kind), err)
		case errors.Is(err, pace.ErrPasswordDeactivated):
			return fail("password_deactivated", fmt.Sprintf("the %s is deactivated", pw.Kind), err)
		case errors.Is(err, pace.ErrUnsupportedParameters):
			return fail("pace_unsupported", fmt.Sprintf("PACE parameters not supported: %v", err), err)
		default:
			return fail("pace_failed", fmt.Sprintf("PACE failed: %v", err), err)
		}
	}
	if res.RetriesLeft >= 0 {
		r.Access.RetriesLeft = intp(res.RetriesLeft)
	}
	ch.SetWrapper(res.Session)
	r.add(Check{Name: "access_control", OK: true, Required: true,
		Reason: fmt.Sprintf("PACE-%s (%s) established %s secure messaging", pw.Kind, proto.Mapping, proto.Cipher)})
	acc := &accessResult{cardAccess: infos, raw: raw, used: &info, cam: res.CAM}
	if res.CAM != nil {
		// 9303-11 §4.4.3.5.2: the static key CAM proved is in
		// EF.CardSecurity (master file, read under the new session).
		acc.cardSecurity, acc.cardSecurityErr = ch.ReadFile(ctx, lds.FIDCardSecurity)
		if acc.cardSecurityErr != nil && deviceError(acc.cardSecurityErr) {
			return nil, acc.cardSecurityErr
		}
	}
	return acc, nil
}

func intp(v int) *int { return &v }

type files struct {
	com, dg1, dg2, sod []byte
	// DG14/DG15 when EF.COM or the SOD lists them; errors when listed but
	// unreadable (a chip hiding them is reported, never ignored).
	dg14, dg15       []byte
	dg14Err, dg15Err error
	// DG11/DG12 (additional personal and document details) when listed.
	dg11, dg12 []byte
	listed     map[int]bool
}

// readSecurityObjects selects the LDS1 application and reads EF.COM,
// EF.SOD and — when EF.COM or the SOD lists them — DG14 and DG15
// (9303-10 §3.6, §4.6, §4.7.14, §4.7.15): what passive authentication and
// the chip authenticity protocols need before any personal data.
func readSecurityObjects(ctx context.Context, ch *apdu.Channel, r *Report, progress func(string)) (*files, error) {
	if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
		return nil, readFailed(r, "application", err)
	}
	f := &files{}
	var err error
	progress("EF.COM")
	if f.com, err = readEF(ctx, ch, lds.FIDCOM); err != nil {
		return nil, readFailed(r, "EF.COM", err)
	}
	r.DataGroups = append(r.DataGroups, "EF.COM")
	progress("EF.SOD")
	if f.sod, err = readEF(ctx, ch, lds.FIDSOD); err != nil {
		return nil, readFailed(r, "EF.SOD", err)
	}
	r.DataGroups = append(r.DataGroups, "EF.SOD")
	// What the chip has: EF.COM is unauthenticated, the SOD's list is
	// checked by PA later; either is reason to read.
	f.listed = map[int]bool{}
	if com, err := lds.ParseCOM(f.com); err == nil {
		for _, n := range com.DataGroups() {
			f.listed[n] = true
		}
	}
	if sod, err := lds.ParseSOD(f.sod); err == nil && sod.LDS != nil {
		for _, h := range sod.LDS.Hashes {
			f.listed[h.DataGroupNumber] = true
		}
	}
	progress("security_infos")
	return f, readListed(ctx, ch, f, r, 14, 15)
}

// readDataGroups reads DG1 and DG2 (9303-10 §4.7.1, §4.7.2) and DG11,
// DG12 when listed.
func readDataGroups(ctx context.Context, ch *apdu.Channel, f *files, r *Report, progress func(string)) error {
	var err error
	for _, x := range []struct {
		name string
		n    int
		dst  *[]byte
	}{{"DG1", 1, &f.dg1}, {"DG2", 2, &f.dg2}} {
		progress(x.name)
		if *x.dst, err = readEF(ctx, ch, fidOf(x.n)); err != nil {
			return readFailed(r, x.name, err)
		}
		r.DataGroups = append(r.DataGroups, x.name)
	}
	return readListed(ctx, ch, f, r, 11, 12)
}

// readListed reads the optional data groups ns that the chip lists. One
// it lists but does not serve is noted in files (a chip hiding DG14/DG15
// is reported, never ignored), not a failed read.
func readListed(ctx context.Context, ch *apdu.Channel, f *files, r *Report, ns ...int) error {
	for _, n := range ns {
		if !f.listed[n] {
			continue
		}
		b, err := ch.ReadFile(ctx, fidOf(n))
		if err != nil {
			if deviceError(err) {
				return err
			}
			f.setErr(n, err)
			continue
		}
		f.set(n, b)
		r.DataGroups = append(r.DataGroups, fmt.Sprintf("DG%d", n))
	}
	return nil
}

func (f *files) set(n int, b []byte) {
	switch n {
	case 11:
		f.dg11 = b
	case 12:
		f.dg12 = b
	case 14:
		f.dg14 = b
	case 15:
		f.dg15 = b
	}
}

func (f *files) setErr(n int, err error) {
	switch n {
	case 14:
		f.dg14Err = err
	case 15:
		f.dg15Err = err
	}
}

// readEF reads a file and checks its first tag.
func readEF(ctx context.Context, ch *apdu.Channel, fid uint16) ([]byte, error) {
	b, err := ch.ReadFile(ctx, fid)
	if err != nil {
		return nil, err
	}
	if err := expectTag(fid, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readFailed records a required file that could not be read and returns
// err.
func readFailed(r *Report, name string, err error) error {
	r.add(Check{Name: "read_" + name, Code: readFailureCode(err), Required: true,
		Reason: fmt.Sprintf("%s could not be read: %v", name, err)})
	return err
}

// errUnexpectedContent: a file read starts with another file's tag — the
// chip answered a different command than the one sent.
var errUnexpectedContent = errors.New("file content does not belong to the file asked for")

// expectTag checks the first tag of a file against the one 9303-10 §4.6
// and §4.7 assign to its file identifier.
func expectTag(fid uint16, b []byte) error {
	f, ok := lds.FileForFID(fid)
	if !ok {
		return nil
	}
	o, _, err := tlv.Read(b)
	if err != nil {
		return fmt.Errorf("%w: %w", apdu.ErrBadFileHeader, err)
	}
	if o.Tag != f.Tag {
		return fmt.Errorf("%w: file %04X starts with tag %s, want %s", errUnexpectedContent, fid, o.Tag, f.Tag)
	}
	return nil
}

// readFailureCode names why a file could not be read, so each defect of
// a hostile chip has its own reason.
func readFailureCode(err error) string {
	switch {
	case errors.Is(err, sm.ErrBadMAC):
		return "sm_mac_invalid"
	case errors.Is(err, sm.ErrMissingDO), errors.Is(err, sm.ErrMalformed), errors.Is(err, sm.ErrBadPadding):
		return "sm_response_malformed"
	case errors.Is(err, apdu.ErrTooManyChained), errors.Is(err, apdu.ErrResponseTooLong):
		return "response_chaining_endless"
	case errors.Is(err, errUnexpectedContent):
		return "unexpected_file_content"
	case errors.Is(err, apdu.ErrBadFileHeader), errors.Is(err, tlv.ErrMalformed):
		return "file_malformed"
	case errors.Is(err, apdu.ErrShortRead), errors.Is(err, apdu.ErrTooMuchData), errors.Is(err, apdu.ErrFileTooLarge),
		apdu.IsSW(err, apdu.SWWrongP1P2), apdu.IsSW(err, apdu.SWEndOfFile):
		return "file_length_mismatch"
	}
	return "read_failed"
}

func fidOf(dg int) uint16 {
	f, _ := lds.DGFile(dg)
	return f.FID
}

// verify parses the data groups and runs passive authentication (9303-11
// §5.1) over everything read. Parsing failures and PA failures are
// checks; nothing here fails open. It reports whether PA passed.
func verify(f *files, trust *pa.TrustStore, opts pa.Options, r *Report) bool {
	at := opts.At
	if com, err := lds.ParseCOM(f.com); err != nil {
		r.add(Check{Name: "ef_com", Code: "com_malformed", Reason: err.Error(), Required: true})
	} else {
		r.Document.LDSVersion = com.LDSVersion
	}

	mrz, err := lds.ParseDG1(f.dg1)
	if err != nil {
		r.add(Check{Name: "dg1_mrz", Code: "dg1_malformed", Reason: err.Error(), Required: true})
	} else {
		r.Document.fromMRZ(mrz)
		if mrz.Valid() {
			r.add(Check{Name: "dg1_mrz", OK: true, Required: true, Reason: "every MRZ check digit is correct"})
		} else {
			r.add(Check{Name: "dg1_mrz", Code: "mrz_check_digit", Required: true,
				Reason: fmt.Sprintf("wrong MRZ check digit in %v", mrz.Failed())})
		}
		if exp, ok := expiryDate(mrz.Expiry); ok {
			if at.After(exp.AddDate(0, 0, 1)) {
				r.add(Check{Name: "document_not_expired", Code: "document_expired", Reason: "the document expired on " + exp.Format("2006-01-02")})
			} else {
				r.add(Check{Name: "document_not_expired", OK: true, Reason: "valid until " + exp.Format("2006-01-02")})
			}
		}
	}

	dg2, err := lds.ParseDG2(f.dg2)
	if err != nil {
		r.add(Check{Name: "dg2_face", Code: "dg2_malformed", Reason: err.Error(), Required: true})
	} else if face, ok := dg2.Primary(); !ok {
		r.add(Check{Name: "dg2_face", Code: "dg2_no_face", Reason: "DG2 holds no facial image", Required: true})
	} else {
		r.Face = &Face{Image: face.Image, Format: face.Format.String(), Width: int(face.Width), Height: int(face.Height)}
		r.add(Check{Name: "dg2_face", OK: true, Required: true,
			Reason: fmt.Sprintf("%s face image %dx%d, %d bytes", face.Format, face.Width, face.Height, len(face.Image))})
	}

	// 9303-10 §4.7.11/§4.7.12: optional; a malformed one is reported but
	// only its hash (PA) decides about the document.
	if f.dg11 != nil {
		if d, err := lds.ParseDG11(f.dg11); err != nil {
			r.add(Check{Name: "dg11_details", Code: "dg11_malformed", Reason: err.Error()})
		} else {
			r.Document.Details = d
		}
	}
	if f.dg12 != nil {
		if d, err := lds.ParseDG12(f.dg12); err != nil {
			r.add(Check{Name: "dg12_details", Code: "dg12_malformed", Reason: err.Error()})
		} else {
			r.Document.DocumentDetails = d
		}
	}

	dgs := map[int][]byte{1: f.dg1, 2: f.dg2}
	for n, b := range map[int][]byte{11: f.dg11, 12: f.dg12, 14: f.dg14, 15: f.dg15} {
		if b != nil {
			dgs[n] = b
		}
	}
	return passiveAuthentication(f.sod, dgs, trust, opts, r)
}

// passiveAuthentication runs PA (9303-11 §5.1) on the SOD and the data
// groups dgs and reports its checks and summary. It reports whether PA
// passed.
func passiveAuthentication(sod []byte, dgs map[int][]byte, trust *pa.TrustStore, opts pa.Options, r *Report) bool {
	if trust == nil {
		r.add(Check{Name: "passive_authentication", Code: "trust_store_missing", Reason: "no CSCA trust store configured", Required: true})
		return false
	}
	return reportPA(pa.VerifyWith(sod, dgs, trust, opts), r)
}

// reportPA adds PA's checks and its summary to the report.
func reportPA(res *pa.Result, r *Report) bool {
	for _, c := range res.Checks {
		name := "pa_" + c.Name
		r.add(Check{Name: name, OK: c.OK, Code: c.Code, Reason: c.Reason, Required: true, Warning: c.Warn})
	}
	r.Revocation = res.Revocation
	summary := Check{Name: "passive_authentication", OK: res.Passed, Required: true}
	if res.Passed {
		summary.Reason = fmt.Sprintf("SOD signed (%s) by a document signer chaining to a trusted CSCA; data group hashes match", res.SignatureAlgorithm)
	} else {
		summary.Code = "passive_authentication_failed"
		var codes []string
		for _, c := range res.Failures() {
			codes = append(codes, c.Code)
		}
		summary.Reason = fmt.Sprintf("passive authentication failed: %v", codes)
	}
	r.add(summary)
	if res.DS != nil {
		r.Document.Signer = res.DS.Subject.String()
	}
	return res.Passed
}

// expiryDate reads a YYMMDD expiry; expiry years are always in this
// century or the next few decades, so 00-99 map to 2000-2099.
func expiryDate(s string) (time.Time, bool) {
	t, err := time.Parse("060102", s)
	if err != nil {
		return time.Time{}, false
	}
	if t.Year() < 2000 {
		t = t.AddDate(100, 0, 0)
	}
	return t, true
}
