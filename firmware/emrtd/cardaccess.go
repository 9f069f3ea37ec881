package emrtd

import (
	"bytes"
	"fmt"

	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pace"
	"kiosk/firmware/emrtd/tlv"
)

// checkCardAccess authenticates EF.CardAccess against DG14, whose hash
// passive authentication has just verified. EF.CardAccess is read in the
// clear and signed by nobody; 9303-11 §9.3 (EF.DG14) requires DG14 to
// repeat its SecurityInfos. Without this check a man in the middle on the
// radio link could rewrite EF.CardAccess and make the terminal run PACE
// with the weakest parameters the chip accepts, or hide it and force BAC.
//
// Three ways to fail, one code (CodeCardAccessMismatch):
//   - a SecurityInfo of EF.CardAccess is not in DG14, byte for byte (DER);
//   - DG14 offers PACE parameters the terminal would have preferred to
//     the ones EF.CardAccess led it to (a PACEInfo was stripped);
//   - BAC was used, yet DG14 says the chip does PACE (EF.CardAccess hidden).
func checkCardAccess(acc *accessResult, dg14 *lds.DG14) Check {
	return checkCardAccessIn(acc, dg14, "DG14")
}

// checkCardAccessIn is checkCardAccess against the signed SecurityInfos
// of src: DG14, or EF.CardSecurity for a PACE-CAM chip without DG14
// (TR-03110-3 §A.1.2.5: EF.CardSecurity holds EF.CardAccess's
// SecurityInfos too).
func checkCardAccessIn(acc *accessResult, dg14 *lds.DG14, src string) Check {
	fail := func(format string, args ...any) Check {
		return Check{Name: checkCardAccessAuth, Code: CodeCardAccessMismatch, Required: true,
			Reason: "EF.CardAccess is not what the signed " + src + " says: " + fmt.Sprintf(format, args...)}
	}
	signed, err := pace.ParseCardAccess(tlv.Encode(0x31, tlv.Concat(dg14.Raw...)))
	if err != nil {
		return fail("%s's PACE SecurityInfos are malformed: %v", src, err)
	}
	if acc.used == nil {
		if len(signed.PACE) > 0 {
			return fail("the chip read with BAC (no EF.CardAccess seen), but %s lists %d PACEInfo(s), first %s", src, len(signed.PACE), signed.PACE[0].Protocol)
		}
		return Check{Name: checkCardAccessAuth, OK: true, Required: true, Reason: "BAC chip: " + src + " lists no PACEInfo"}
	}
	for _, raw := range acc.raw {
		found := false
		for _, d := range dg14.Raw {
			if bytes.Equal(raw, d) {
				found = true
				break
			}
		}
		if !found {
			return fail("its SecurityInfo %X is not in %s", raw, src)
		}
	}
	if best, _, err := signed.Select(); err == nil && (best.Protocol != acc.used.Protocol || best.ParameterID != acc.used.ParameterID) {
		return fail("%s offers %s (parameter id %d), PACE ran with %s (parameter id %d)", src, best.Protocol, best.ParameterID,
			acc.used.Protocol, acc.used.ParameterID)
	}
	return Check{Name: checkCardAccessAuth, OK: true, Required: true,
		Reason: fmt.Sprintf("all %d SecurityInfos of EF.CardAccess are in the signed %s; PACE used the strongest parameters %s offers", len(acc.raw), src, src)}
}
