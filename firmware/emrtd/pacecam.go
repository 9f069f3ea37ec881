package emrtd

import (
	"errors"
	"fmt"

	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/pubkey"
)

// pacecam decides whether a chip that ran PACE-CAM proved itself
// (9303-11 §4.4.3.5.2; BSI TR-03110-2 §3.4.4): passive authentication of
// EF.CardSecurity with the trust store (a SignedData over SecurityInfos,
// signed by a document signer), then PK_Map,IC = CA_IC · PK_IC with PK_IC
// the ChipAuthenticationPublicKeyInfo of EF.CardSecurity on the PACE
// parameters. It fills the chip authentication report and adds the
// card_security and chip_authentication checks; false refuses the chip
// (no personal data is read). On success it returns EF.CardSecurity's
// SecurityInfos too. CA_IC is wiped.
func pacecam(acc *accessResult, paOpts pa.Options, opts Options, r *Report) (bool, *lds.DG14) {
	defer acc.cam.Wipe()
	caRep := r.ChipAuthentication
	caRep.Required, caRep.OID, caRep.Protocol = true, acc.used.Protocol, "PACE-CAM"
	if p, err := pace.ProtocolByOID(acc.used.Protocol); err == nil {
		caRep.Protocol, caRep.Cipher = p.String(), p.Cipher.String()
	}
	fail := func(name, code, reason string) (bool, *lds.DG14) {
		r.add(Check{Name: name, Code: code, Reason: reason, Required: true})
		caRep.Code, caRep.Reason = code, reason
		return false, nil
	}
	switch {
	case acc.cardSecurityErr != nil:
		return fail(checkCardSecurity, CodeCardSecurityUnreadable, fmt.Sprintf("PACE-CAM chip, but EF.CardSecurity could not be read: %v", acc.cardSecurityErr))
	case opts.Trust == nil:
		return fail(checkCardSecurity, "trust_store_missing", "no CSCA trust store configured")
	}
	// DG1 is not read yet (TR-03135: the chip proves itself first): the
	// signer's country is bound to the CSCA's here, to the issuing state
	// by the SOD's passive authentication later.
	cs, res := pa.VerifyCardSecurity(acc.cardSecurity, nil, opts.Trust, paOpts)
	if !res.Passed {
		return fail(checkCardSecurity, CodeCardSecurityInvalid, fmt.Sprintf("EF.CardSecurity failed passive authentication: %v", res.Codes()))
	}
	r.add(Check{Name: checkCardSecurity, OK: true, Required: true,
		Reason: fmt.Sprintf("EF.CardSecurity signed (%s) by a document signer chaining to a trusted CSCA", res.SignatureAlgorithm)})
	key, err := camStaticKey(cs.Infos, acc.used.ParameterID)
	if err != nil {
		return fail(checkCardSecurity, CodeCardSecurityUnreadable, "EF.CardSecurity: "+err.Error())
	}
	caRep.Ran, caRep.Key = true, key.Curve.Name
	if err := acc.cam.Verify(key.Bytes()); err != nil {
		fail(checkCA, CodeCAMFailed, fmt.Sprintf("the chip's mapping data does not prove the chip authentication key of EF.CardSecurity: the chip is not the one the issuer personalised: %v", err))
		r.add(Check{Name: checkClone, Code: CodeClone, Required: true,
			Reason: "genuine EF.CardSecurity but PACE-CAM failed: the chip is not the one the issuer personalised"})
		return false, nil
	}
	caRep.OK = true
	caRep.Reason = fmt.Sprintf("PACE-CAM on %s: CA_IC proves the chip authentication key of the signed EF.CardSecurity (9303-11 §4.4.3.5.2)", key.Curve.Name)
	r.add(Check{Name: checkCA, OK: true, Required: true, Reason: caRep.Reason})
	return true, cs.Infos
}

// camStaticKey picks EF.CardSecurity's ECDH chip authentication key on
// the PACE parameters (one, or the one named by a keyId shared with the
// ChipAuthenticationInfo, 9303-11 §9.2.6).
func camStaticKey(infos *lds.DG14, paramID int) (*pubkey.ECKey, error) {
	curve, err := pubkey.CurveByParameterID(paramID)
	if err != nil {
		return nil, err
	}
	var found []*pubkey.ECKey
	for _, k := range infos.CAKeys {
		if !k.Protocol.Equal(lds.OIDPKECD) {
			continue
		}
		key, err := pubkey.ParseSPKI(k.PublicKey)
		if err != nil || key.EC == nil || key.EC.Curve.ParameterID != curve.ParameterID {
			continue
		}
		if len(infos.CA) == 1 && infos.CA[0].HasKeyID && (!k.HasKeyID || k.KeyID != infos.CA[0].KeyID) {
			continue
		}
		found = append(found, key.EC)
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no ECDH chip authentication key on %s", curve.Name)
	case 1:
		return found[0], nil
	}
	return nil, errors.New("several chip authentication keys on the PACE parameters, none named")
}
