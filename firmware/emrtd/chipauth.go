package emrtd

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kiosk/firmware/emrtd/aa"
	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/ca"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pubkey"
)

// Policy says which anti-cloning protocol must prove the chip genuine
// (9303-11 §6). Whatever the policy, a protocol that runs and fails fails
// the inspection: it is evidence of a cloned chip.
type Policy string

// Policies.
const (
	// PolicyAny (the default) runs every protocol the document supports
	// and requires each to pass; a document supporting neither (older
	// passports) passes with an informational note.
	PolicyAny Policy = "any"
	// PolicyCA requires Chip Authentication (DG14); AA runs too if present.
	PolicyCA Policy = "ca"
	// PolicyAA requires Active Authentication (DG15); CA runs too if present.
	PolicyAA Policy = "aa"
	// PolicyNone runs neither (reported as not run).
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
	checkCA    = "chip_authentication"
	checkAA    = "active_authentication"
	checkClone = "clone_suspected"

	CodeCAFailed      = "chip_authentication_failed"
	CodeCAUnavailable = "chip_authentication_unavailable"
	CodeCAUnsupported = "chip_authentication_unsupported"
	CodeAAFailed      = "active_authentication_failed"
	CodeAAUnavailable = "active_authentication_unavailable"
	CodeAAUnsupported = "active_authentication_unsupported"
	CodeDG14Malformed = "dg14_malformed"
	CodeDG15Malformed = "dg15_malformed"
	CodeClone         = "clone_suspected"
)

// chipAuthenticity runs Chip Authentication then Active Authentication
// (CA first: it upgrades secure messaging, and AA then runs under the
// chip-authenticated keys). It returns only device errors.
func chipAuthenticity(ctx context.Context, ch *apdu.Channel, f *files, paPassed bool, opts Options, r *Report, log *slog.Logger) error {
	policy, err := ParsePolicy(string(opts.RequireChipAuthenticity))
	if err != nil {
		r.add(Check{Name: checkCA, Code: "policy_invalid", Reason: err.Error(), Required: true})
		return nil
	}
	caRep := &ChipAuthenticity{Required: policy == PolicyCA}
	aaRep := &ChipAuthenticity{Required: policy == PolicyAA}
	r.ChipAuthentication, r.ActiveAuthentication = caRep, aaRep
	hasCA, hasAA := f.listed[14], f.listed[15]

	switch {
	case policy == PolicyNone:
		caRep.Reason = "not run: disabled by policy"
		aaRep.Reason = caRep.Reason
		return nil
	case !paPassed:
		// 9303-11 §6: the DG14/DG15 keys are trusted only through the SOD.
		caRep.Reason = "not run: passive authentication did not pass, so the chip's DG14/DG15 keys are not trusted"
		aaRep.Reason = caRep.Reason
		return nil
	}
	if !hasCA && !hasAA {
		why := "the document supports neither chip nor active authentication (no DG14/DG15); a cloned chip cannot be detected"
		caRep.Reason, aaRep.Reason = why, why
		c := Check{Name: "chip_authenticity", OK: true, Reason: why}
		switch policy {
		case PolicyCA:
			c = Check{Name: checkCA, Code: CodeCAUnavailable, Required: true, Reason: "policy requires chip authentication: " + why}
		case PolicyAA:
			c = Check{Name: checkAA, Code: CodeAAUnavailable, Required: true, Reason: "policy requires active authentication: " + why}
		}
		r.add(c)
		return nil
	}

	var dg14 *lds.DG14
	if f.dg14 != nil {
		if dg14, err = lds.ParseDG14(f.dg14); err != nil {
			dg14 = nil
			caRep.Code, caRep.Reason = CodeDG14Malformed, fmt.Sprintf("DG14 is malformed: %v", err)
		}
	}

	// Chip Authentication (9303-11 §6.2).
	caFailed := false
	phase := time.Now()
	switch {
	case !hasCA:
		caRep.Code, caRep.Reason = CodeCAUnavailable, "the document has no DG14"
	case f.dg14 == nil:
		caRep.Code, caRep.Reason = CodeCAFailed, fmt.Sprintf("the SOD lists DG14 but the chip does not serve it: %v", f.dg14Err)
		caRep.Required, caFailed = true, true
	case dg14 == nil:
		caRep.Required = true
	case len(dg14.CA) == 0:
		caRep.Code, caRep.Reason = CodeCAUnavailable, "DG14 holds no ChipAuthenticationInfo"
	default:
		info, key, err := chooseCA(dg14)
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
		case deviceError(err):
			return err
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
	if caRep.Code != "" || caRep.OK {
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
			return err
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
	return nil
}

// chooseCA picks the ChipAuthenticationInfo to run: one whose protocol
// and key this terminal supports, the strongest cipher first.
func chooseCA(d *lds.DG14) (lds.ChipAuthenticationInfo, *pubkey.Key, error) {
	var best lds.ChipAuthenticationInfo
	var bestKey *pubkey.Key
	var bestP ca.Protocol
	var lastErr error
	for _, in := range d.CA {
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
