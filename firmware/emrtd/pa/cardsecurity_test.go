package pa_test

import (
	"bytes"
	"slices"
	"testing"

	"kiosk/firmware/emrtd/pa"
	"kiosk/provisioning/issuer"
)

func camDoc(t *testing.T, mod func(*issuer.Options)) doc {
	return issue(t, func(o *issuer.Options) {
		o.PACE = &issuer.PACEParams{OID: issuer.OIDPACEECDHCAMAES128, ParameterID: issuer.ParamBrainpoolP256}
		o.ChipAuth = &issuer.CAParams{}
		if mod != nil {
			mod(o)
		}
	})
}

// EF.CardSecurity passes the SOD's checks (but the data group hashes)
// with the same trust store; its SecurityInfos come back with the result.
func TestVerifyCardSecurity(t *testing.T) {
	for _, alg := range []issuer.SignatureAlg{issuer.SigECDSAP256, issuer.SigECDSABrainpool, issuer.SigRSAPSS} {
		d := camDoc(t, func(o *issuer.Options) { o.SignatureAlg = alg })
		cs, res := pa.VerifyCardSecurity(d.im.CardSecurity, nil, d.trust.Store(), pa.Options{At: now})
		if !res.Passed || cs == nil || len(cs.Infos.CAKeys) != 1 {
			t.Fatalf("%s: %v %v", alg, res.Codes(), res.Checks)
		}
		// With DG1, the issuing state is bound too.
		if _, res := pa.VerifyCardSecurity(d.im.CardSecurity, d.im.Files[0x0101], d.trust.Store(), pa.Options{At: now}); !res.Passed {
			t.Fatalf("%s with DG1: %v", alg, res.Codes())
		}
	}
}

func TestVerifyCardSecurityRefused(t *testing.T) {
	d := camDoc(t, nil)
	other := camDoc(t, nil)
	flipped := append([]byte(nil), d.im.CardSecurity...)
	// A byte of the signed SecurityInfos (the static key's point).
	i := bytes.Index(flipped, d.im.Files[0x010E][4:20])
	if i < 0 {
		t.Fatal("SecurityInfos not found in EF.CardSecurity")
	}
	flipped[i+8] ^= 0x01
	for _, tc := range []struct {
		name  string
		b     []byte
		store *pa.TrustStore
		code  string
	}{
		{"content altered", flipped, d.trust.Store(), pa.CodeMessageDigestMismatch},
		{"unknown CSCA", d.im.CardSecurity, other.trust.Store(), pa.CodeCSCAUnknown},
		{"an EF.SOD instead", d.sod(), d.trust.Store(), pa.CodeSODMalformed},
		{"garbage", []byte{0x30, 0x00}, d.trust.Store(), pa.CodeSODMalformed},
	} {
		_, res := pa.VerifyCardSecurity(tc.b, nil, tc.store, pa.Options{At: now})
		if res.Passed || !slices.Contains(res.Codes(), tc.code) {
			t.Errorf("%s: passed %v, codes %v, want %s", tc.name, res.Passed, res.Codes(), tc.code)
		}
	}
}
