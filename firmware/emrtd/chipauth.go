package emrtd

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"kiosk/firmware/emrtd/aa"
	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/ca"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pubkey"
)

// Policy says which anti-cloning protocol must prove the chip genuine
// (9303-11 §6). Under every policy but PolicyNone the chip must prove
// itself with one protocol at least (fail closed; only Options.ExemptTypes
// waives that, for chips with neither protocol). Whatever the policy, a
// protocol that runs and fails fails the inspection: it is evidence of a
// cloned chip.
type Policy string

// Policies.
const (
	// PolicyAny (the default) runs every protocol the document supports
	// and requires each to pass, and one at least to be supported.
	PolicyAny Policy = "any"
	// PolicyCA requires Chip Authentication (DG14); AA runs too if present.
	PolicyCA Policy = "ca"
	// PolicyAA requires Active Authentication (DG15); CA runs too if present.
	PolicyAA Policy = "aa"
	// PolicyNone runs neither (reported as not run). For benchmarks and
	// the lab; kioskd refuses it in production mode.
	PolicyNone Policy = "none"
)

// ParsePolicy validates a policy name ("" is PolicyAny).
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return PolicyAny, nil
	case PolicyAny, PolicyCA, PolicyAA, PolicyNone:
		return p, nil
	}
	return "", fmt.Errorf("unknown chip authenticity policy %q (any, ca, aa, none)", s)
}

// Check names and codes of the anti-cloning phase.
const (
	checkCA             = "chip_authentication"
	checkAA             = "active_authentication"
	checkClone          = "clone_suspected"
	checkAuthenticity   = "chip_authenticity"
	checkCardAccessAuth = "card_access_authenticated"

	CodeCAFailed      = "chip_authentication_failed"
	CodeCAUnavailable = "chip_authentication_unavailable"
	CodeCAUnsupported = "chip_authentication_unsupported"
	CodeAAFailed      = "active_authentication_failed"
	CodeAAUnavailable = "active_authentication_unavailable"
	CodeAAUnsupported = "active_authentication_unsupported"
	CodeDG14Malformed = "dg14_malformed"
	CodeDG15Malformed = "dg15_malformed"
	CodeClone         = "clone_suspected"
	// CodeAuthenticityUnavailable: the chip supports neither Chip nor
	// Active Authentication, and its document type is not exempted.
	CodeAuthenticityUnavailable = "chip_authenticity_unavailable"
	// CodeCardAccessMismatch: EF.CardAccess is not what the signed DG14
	// says (a SecurityInfo of EF.CardAccess missing from DG14, a stronger
	// PACEInfo in DG14 than the one offered, or a PACE chip read with BAC).
	CodeCardAccessMismatch = "card_access_mismatch"
	// CodeCardAccessUnauthenticated: a PACE chip without DG14, so nothing
	// signed vouches for EF.CardAccess (legacy; exemptable like
	// CodeAuthenticityUnavailable).
	CodeCardAccessUnauthenticated = "card_access_unauthenticated"
	// CodeCAMFailed: after PACE-CAM, the chip's Chip Authentication
	// Mapping data is missing or does not prove the static key of
	// EF.CardSecurity (9303-11 §4.4.3.5.2): not the issuer's chip.
	CodeCAMFailed = "pace_cam_failed"
	// CodeCardSecurityUnreadable: a PACE-CAM chip whose EF.CardSecurity
	// cannot be read or holds no usable chip authentication key.
	CodeCardSecurityUnreadable = "card_security_unreadable"
	// CodeCardSecurityInvalid: EF.CardSecurity fails passive
	// authentication (its signature, signer or chain).
	CodeCardSecurityInvalid = "card_security_invalid"

	checkCardSecurity = "card_security"
)

// chipGate is what the chip authenticity phase decided for the rest of
// the read.
type chipGate struct {
	policy Policy
	// stop: the document is refused already; read no personal data.
	stop bool
	// unavailable: the chip supports neither protocol; whether that fails
	// depends on the document type (DG1), decided by resolve.
	unavailable bool
	// cardAccessUnchecked: PACE was used but there is no DG14.
	cardAccessUnchecked bool
}

// authenticateChip is the phase between the security objects and the
// data groups (BSI TR-03135; 9303-11 §5.1, §6): passive authentication of
// the SOD with DG14/DG15, EF.CardAccess ⊆ DG14, then Chip and Active
// Authentication. It returns only device errors.
func authenticateChip(ctx context.Context, ch *apdu.Channel, f *files, acc *accessResult, paOpts pa.Options, opts Options, r *Report, log *slog.Logger) (*chipGate, error) {
	phase := time.Now()
	policy, err := ParsePolicy(string(opts.RequireChipAuthenticity))
	if err != nil {
		r.add(Check{Name: checkCA, Code: "policy_invalid", Reason: err.Error(), Required: true})
		return &chipGate{stop: true}, nil
	}
	g := &chipGate{policy: policy}
	defer acc.cam.Wipe() // CA_IC, whatever path the phase takes
	caRep := &ChipAuthenticity{Required: policy == PolicyCA}
	aaRep := &ChipAuthenticity{Required: policy == PolicyAA}
	r.ChipAuthentication, r.ActiveAuthentication = caRep, aaRep
	hasDG14, hasDG15 := f.listed[14] || f.dg14 != nil, f.listed[15] || f.dg15 != nil
	if !hasDG14 && !hasDG15 {
		why := "the document supports neither chip nor active authentication (no DG14/DG15)"
		caRep.Reason, aaRep.Reason = why, why
		g.unavailable = policy != PolicyNone
		g.cardAccessUnchecked = acc.used != nil
		if policy == PolicyNone {
			caRep.Reason, aaRep.Reason = "not run: disabled by policy", "not run: disabled by policy"
			return g, nil
		}
		if acc.cam != nil {
			// PACE-CAM proves the chip without DG14, and the signed
			// EF.CardSecurity vouches for EF.CardAccess in DG14's place.
			g.unavailable = false
			ok, infos := pacecam(acc, paOpts, opts, r)
			if !ok {
				g.stop = true
				return g, nil
			}
			c := checkCardAccessIn(acc, infos, "EF.CardSecurity")
			r.add(c)
			g.stop, g.cardAccessUnchecked = !c.OK, false
		}
		return g, nil
	}

	// 9303-11 §5.1 before §6: DG14/DG15 keys come from the chip; they are
	// worth what the SOD's signature makes them.
	sec := map[int][]byte{}
	for n, b := range map[int][]byte{14: f.dg14, 15: f.dg15} {
		if b != nil {
			sec[n] = b
		}
	}
	if len(sec) > 0 && !securityObjectsTrusted(f.sod, sec, opts.Trust, paOpts, r) {
		why := "not run: passive authentication did not pass, so the chip's DG14/DG15 keys are not trusted"
		caRep.Reason, aaRep.Reason = why, why
		g.stop = true
		r.PhasesMS["verify"] += ms(time.Since(phase))
		return g, nil
	}
	r.PhasesMS["verify"] += ms(time.Since(phase))

	var dg14 *lds.DG14
	if f.dg14 != nil {
		if dg14, err = lds.ParseDG14(f.dg14); err != nil {
			dg14 = nil
			caRep.Code, caRep.Reason = CodeDG14Malformed, fmt.Sprintf("DG14 is malformed: %v", err)
		}
	}
	// EF.CardAccess ⊆ DG14 (9303-11 §9.3): the parameters PACE used
	// were the chip's, not a man in the middle's.
	switch {
	case dg14 != nil:
		if c := checkCardAccess(acc, dg14); !c.OK {
			r.add(c)
			g.stop = true
			caRep.Reason, aaRep.Reason = "not run: "+c.Reason, "not run: "+c.Reason
			return g, nil
		} else if acc.used != nil {
			r.add(c)
		}
	case f.dg14 == nil && acc.used != nil:
		g.cardAccessUnchecked = true
	}

	if policy == PolicyNone {
		caRep.Reason, aaRep.Reason = "not run: disabled by policy", "not run: disabled by policy"
		return g, nil
	}
	camOK := false
	if acc.cam != nil {
		// PACE-CAM ran: the chip proves itself with EF.CardSecurity's key
		// instead of Chip Authentication (9303-11 §4.4.3.5.2, §6.2).
		if ok, _ := pacecam(acc, paOpts, opts, r); !ok {
			g.stop = true
			aaRep.Reason = "not run: the chip failed PACE-CAM"
			return g, nil
		}
		camOK = true
	}
	res, err := chipAuthenticity(ctx, ch, f, dg14, policy, camOK, opts, r, log)
	if err != nil {
		return nil, err
	}
	switch {
	case res.failed:
		g.stop = true
	case res.established:
	case res.supported:
		// The chip announces a protocol the terminal could not complete
		// (unsupported parameters, malformed DG14/DG15): a modern chip
		// that did not prove itself.
		r.add(Check{Name: checkAuthenticity, Code: CodeAuthenticityUnavailable, Required: true,
			Reason: "the chip supports chip or active authentication, but neither could be completed: " + firstReason(caRep, aaRep)})
		g.stop = true
	default:
		g.unavailable = true
	}
	return g, nil
}

func firstReason(reps ...*ChipAuthenticity) string {
	for _, c := range reps {
		if c.Code != "" {
			return c.Reason
		}
	}
	return "no reason given"
}

// securityObjectsTrusted runs passive authentication on the SOD and the
// DG14/DG15 read so far. On failure it reports PA's checks (the read ends
// there); on success nothing: verify reports PA over every data group.
func securityObjectsTrusted(sod []byte, dgs map[int][]byte, trust *pa.TrustStore, opts pa.Options, r *Report) bool {
	if trust == nil {
		r.add(Check{Name: "passive_authentication", Code: "trust_store_missing", Reason: "no CSCA trust store configured", Required: true})
		return false
	}
	if res := pa.VerifyWith(sod, dgs, trust, opts); !res.Passed {
		return reportPA(res, r)
	}
	return true
}

// resolve decides, once DG1 named the document type, what a chip without
// chip authenticity means: a failure, or a logged exemption of a legacy
// document type (Options.ExemptTypes).
func (g *chipGate) resolve(r *Report, opts Options, log *slog.Logger) {
	if !g.unavailable && !g.cardAccessUnchecked {
		return
	}
	// Policies "ca" and "aa" demand their protocol of every document;
	// the exemption is for "any".
	docType := r.Document.Type
	exempt := g.policy == PolicyAny && docType != "" &&
		(slices.Contains(opts.ExemptTypes, "*") || slices.Contains(opts.ExemptTypes, docType))
	note := ""
	if exempt {
		note = fmt.Sprintf("; document type %q is exempted as legacy by configuration", docType)
		log.Warn("chip authenticity not established; legacy document type exempted by configuration",
			"document_type", docType, "exempt_types", opts.ExemptTypes)
	}
	if g.cardAccessUnchecked {
		r.add(Check{Name: checkCardAccessAuth, Code: CodeCardAccessUnauthenticated, Required: !exempt,
			Reason: "PACE chip without DG14: nothing signed vouches for the parameters EF.CardAccess offered (9303-11 requires DG14 to repeat them)" + note})
	}
	if g.unavailable {
		c := Check{Name: checkAuthenticity, Code: CodeAuthenticityUnavailable, Required: !exempt,
			Reason: "the document supports neither chip nor active authentication: a cloned chip cannot be detected" + note}
		switch g.policy {
		case PolicyCA:
			c.Name, c.Code = checkCA, CodeCAUnavailable
		case PolicyAA:
			c.Name, c.Code = checkAA, CodeAAUnavailable
		}
		if !slices.ContainsFunc(r.Checks, func(x Check) bool { return x.Code == c.Code }) {
			r.add(c)
		}
	}
}

// caResult sums up the anti-cloning protocols.
type caResult struct {
	established bool // CA or AA passed
	failed      bool // CA or AA ran and failed (clone)
	supported   bool // DG14 or DG15 announces a protocol
}

// chipAuthenticity runs Chip Authentication then Active Authentication
// (CA first: it upgrades secure messaging, and AA then runs under the
// chip-authenticated keys). It returns only device errors.
func chipAuthenticity(ctx context.Context, ch *apdu.Channel, f *files, dg14 *lds.DG14, policy Policy, camOK bool, opts Options, r *Report, log *slog.Logger) (caResult, error) {
	caRep, aaRep := r.ChipAuthentication, r.ActiveAuthentication
	hasCA, hasAA := f.listed[14], f.listed[15]
	var caInfos []lds.ChipAuthenticationInfo
	implied := false
	if dg14 != nil {
		caInfos, implied = ca.Infos(dg14)
	}

	// Chip Authentication (9303-11 §6.2).
	caFailed := false
	phase := time.Now()
	switch {
	case camOK:
		// Proven by PACE-CAM already (caRep filled by pacecam).
	case !hasCA:
		caRep.Code, caRep.Reason = CodeCAUnavailable, "the document has no DG14"
	case f.dg14 == nil:
		caRep.Code, caRep.Reason = CodeCAFailed, fmt.Sprintf("the SOD lists DG14 but the chip does not serve it: %v", f.dg14Err)
		caRep.Required, caFailed = true, true
	case dg14 == nil:
		caRep.Required = true
	case len(caInfos) == 0:
		caRep.Code, caRep.Reason = CodeCAUnavailable, "DG14 holds no chip authentication key"
	default:
		info, key, err := chooseCA(dg14, caInfos)
		if err != nil {
			caRep.Code, caRep.Reason = CodeCAUnsupported, err.Error()
			break
		}
		caRep.Ran, caRep.Required = true, true
		caRep.OID = info.Protocol.String()
		if p, err := ca.ProtocolByOID(info.Protocol); err == nil {
			caRep.Protocol, caRep.Cipher = p.String(), p.Cipher.String()
		}
		caRep.Key = key.Describe()
		if info.HasKeyID {
			caRep.KeyID = intp(info.KeyID)
		}
		_, err = ca.Authenticate(ctx, ch, info, key, ca.Options{Logger: log})
		switch {
		case err == nil:
			caRep.OK = true
			caRep.Reason = fmt.Sprintf("%s on %s: secure messaging re-keyed and verified; the chip holds the DG14 private key", caRep.Protocol, caRep.Key)
			if implied {
				caRep.Reason += " (DG14 has no ChipAuthenticationInfo: 3DES assumed, 9303-11 §9.2.5)"
			}
		case deviceError(err):
			return caResult{}, err
		case errors.Is(err, ca.ErrFailed):
			caRep.Code, caFailed = CodeCAFailed, true
			caRep.Reason = "secure messaging under the chip authentication keys did not verify: the chip does not hold the private key of DG14 (cloned chip)"
		default:
			// A chip that announces CA in its signed DG14 but refuses it.
			caRep.Code, caFailed = CodeCAFailed, true
			caRep.Reason = fmt.Sprintf("the chip refused chip authentication: %v", err)
		}
	}
	r.PhasesMS["chip_authentication"] = ms(time.Since(phase))
	// A policy naming CA makes its absence a failure too.
	caRep.Required = caRep.Required || policy == PolicyCA || caRep.Code == CodeDG14Malformed
	if !camOK && (caRep.Code != "" || caRep.OK) {
		r.add(Check{Name: checkCA, OK: caRep.OK, Code: caRep.Code, Reason: caRep.Reason, Required: caRep.Required})
	}

	// Active Authentication (9303-11 §6.1).
	aaFailed := false
	phase = time.Now()
	switch {
	case !hasAA:
		aaRep.Code, aaRep.Reason = CodeAAUnavailable, "the document has no DG15"
	case f.dg15 == nil:
		aaRep.Code, aaRep.Reason = CodeAAFailed, fmt.Sprintf("the SOD lists DG15 but the chip does not serve it: %v", f.dg15Err)
		aaRep.Required, aaFailed = true, true
	case caFailed:
		aaRep.Reason = "not run: secure messaging ended with the failed chip authentication"
	default:
		spki, err := lds.ParseDG15(f.dg15)
		var key *pubkey.Key
		if err == nil {
			key, err = pubkey.ParseSPKI(spki)
		}
		if err != nil {
			aaRep.Code, aaRep.Reason, aaRep.Required = CodeDG15Malformed, fmt.Sprintf("DG15 is malformed: %v", err), true
			break
		}
		if key.EC == nil && key.RSA == nil {
			aaRep.Code, aaRep.Reason = CodeAAUnsupported, "DG15 holds a "+key.Describe()+" key"
			break
		}
		var h crypto.Hash
		if key.EC != nil {
			h = crypto.SHA256
			if dg14 != nil && len(dg14.AA) > 0 {
				hh, ok := aa.HashForSignatureOID(dg14.AA[0].SignatureAlgorithm)
				if !ok {
					aaRep.Code, aaRep.Reason = CodeAAUnsupported, fmt.Sprintf("ActiveAuthenticationInfo names signature algorithm %s", dg14.AA[0].SignatureAlgorithm)
					break
				}
				h = hh
			}
		}
		var challenge []byte
		if opts.AATransaction != nil {
			challenge = aa.ChallengeFor(opts.AATransaction)
			aaRep.TransactionBound = true
		}
		aaRep.Ran, aaRep.Required, aaRep.Key = true, true, key.Describe()
		res, err := aa.Authenticate(ctx, ch, key, aa.Options{Challenge: challenge, ECDSAHash: h})
		switch {
		case err == nil:
			aaRep.OK, aaRep.Algorithm, aaRep.Challenge = true, res.Algorithm, hex.EncodeToString(res.Challenge)
			aaRep.Reason = fmt.Sprintf("%s signature of the challenge verifies with the DG15 %s key", res.Algorithm, res.Key)
		case deviceError(err):
			return caResult{}, err
		case errors.Is(err, aa.ErrFailed):
			aaRep.Code, aaFailed = CodeAAFailed, true
			aaRep.Reason = fmt.Sprintf("the chip's signature does not verify with the DG15 key: the chip does not hold the active authentication private key (cloned chip): %v", err)
		default:
			aaRep.Code, aaFailed = CodeAAFailed, true
			aaRep.Reason = fmt.Sprintf("the chip refused active authentication: %v", err)
		}
	}
	r.PhasesMS["active_authentication"] = ms(time.Since(phase))
	aaRep.Required = aaRep.Required || policy == PolicyAA
	if aaRep.Code != "" || aaRep.OK {
		r.add(Check{Name: checkAA, OK: aaRep.OK, Code: aaRep.Code, Reason: aaRep.Reason, Required: aaRep.Required})
	}

	if caFailed || aaFailed {
		var which []string
		if caFailed {
			which = append(which, "chip authentication")
		}
		if aaFailed {
			which = append(which, "active authentication")
		}
		r.add(Check{Name: checkClone, Code: CodeClone, Required: true,
			Reason: fmt.Sprintf("genuine SOD but %v failed: the chip is not the one the issuer personalised", which)})
	}
	return caResult{
		established: caRep.OK || aaRep.OK,
		failed:      caFailed || aaFailed,
		supported:   len(caInfos) > 0 || hasAA || caRep.Code == CodeDG14Malformed,
	}, nil
}

// chooseCA picks the ChipAuthenticationInfo to run: one whose protocol
// and key this terminal supports, the strongest cipher first.
func chooseCA(d *lds.DG14, infos []lds.ChipAuthenticationInfo) (lds.ChipAuthenticationInfo, *pubkey.Key, error) {
	var best lds.ChipAuthenticationInfo
	var bestKey *pubkey.Key
	var bestP ca.Protocol
	var lastErr error
	for _, in := range infos {
		p, err := ca.ProtocolByOID(in.Protocol)
		if err != nil {
			lastErr = err
			continue
		}
		pk, ok := d.CAKey(in)
		if !ok {
			lastErr = fmt.Errorf("no unique ChipAuthenticationPublicKeyInfo for %s", p)
			continue
		}
		key, err := pubkey.ParseSPKI(pk.PublicKey)
		if err != nil {
			lastErr = fmt.Errorf("chip authentication key: %w", err)
			continue
		}
		if (p.KeyAgreement == ca.ECDH) != (key.EC != nil) || (p.KeyAgreement == ca.DH) != (key.DH != nil) {
			lastErr = fmt.Errorf("%s with a %s key", p, key.Describe())
			continue
		}
		if bestKey == nil || p.Cipher > bestP.Cipher {
			best, bestKey, bestP = in, key, p
		}
	}
	if bestKey == nil {
		return best, nil, fmt.Errorf("no supported chip authentication parameters: %v", lastErr)
	}
	return best, bestKey, nil
}
