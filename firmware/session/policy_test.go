package session

import (
	"slices"
	"testing"

	"kiosk/firmware/emrtd"
)

func reasonCodes(rs []Reason) []string {
	var c []string
	for _, r := range rs {
		c = append(c, r.Code)
	}
	return c
}

// Chip or active authentication must have passed for every document
// type (fail closed); only the exempted legacy types pass without.
func TestChipAuthRequiredUnlessExempt(t *testing.T) {
	passport := goodReport()
	passport.Document.Type = "P"
	passport.Checks = slices.DeleteFunc(passport.Checks, func(c emrtd.Check) bool { return c.Name == "chip_authentication" })
	withCA := goodReport()
	withCA.Document.Type = "P"
	withAA := goodReport()
	withAA.Document.Type = "P"
	withAA.Checks = slices.DeleteFunc(withAA.Checks, func(c emrtd.Check) bool { return c.Name == "chip_authentication" })
	withAA.Checks = append(withAA.Checks, emrtd.Check{Name: "active_authentication", OK: true})
	failedCA := goodReport()
	failedCA.Document.Type = "P"
	failedCA.Checks = slices.DeleteFunc(failedCA.Checks, func(c emrtd.Check) bool { return c.Name == "chip_authentication" })
	failedCA.Checks = append(failedCA.Checks, emrtd.Check{Name: "chip_authentication", OK: false, Code: "chip_authentication_failed"})
	for _, tt := range []struct {
		name    string
		exempt  []string
		r       *emrtd.Report
		decline bool
	}{
		{"nothing exempt, neither ran", nil, passport, true},
		{"only ID cards exempt, neither ran", []string{"ID"}, passport, true},
		{"P exempt, neither ran", []string{"P"}, passport, false},
		{"all exempt, neither ran", []string{"*"}, passport, false},
		{"CA passed", nil, withCA, false},
		{"AA passed", nil, withAA, false},
		{"CA failed", nil, failedCA, true},
	} {
		p := Policy{RequirePassiveAuth: true, ChipAuthExemptTypes: tt.exempt}
		got := reasonCodes(p.chipReasons(tt.r, "payment"))
		if slices.Contains(got, "chip_not_authenticated") != tt.decline {
			t.Errorf("%s: reasons %v, want decline %v", tt.name, got, tt.decline)
		}
	}
}

// The thresholds decide, not the face step's own verdict: a "matched" face
// under the kiosk's match threshold, or "live" under its liveness
// threshold, is declined.
func TestFaceThresholdsDecide(t *testing.T) {
	p := Policy{MatchThreshold: 0.45, LivenessThreshold: 0.5, RequireConsent: true}
	low := goodFace()
	low.Similarity = 0.40
	weak := goodFace()
	weak.Liveness = 0.3
	for _, tt := range []struct {
		name string
		f    FaceResult
		want []string
	}{
		{"good", goodFace(), nil},
		{"matched under the threshold", low, []string{"face_mismatch"}},
		{"live under the threshold", weak, []string{"not_live"}},
	} {
		if got := reasonCodes(p.faceReasons(tt.f)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// allow_expired serves branch services only: a payment is never made with
// an expired document.
func TestAllowExpiredOnlyForServices(t *testing.T) {
	expired := goodReport()
	expired.Checks[2] = emrtd.Check{Name: "document_not_expired", Code: "document_expired"}
	for _, tt := range []struct {
		allow   bool
		kind    string
		decline bool
	}{
		{false, "payment", true}, {false, "service", true},
		{true, "payment", true}, {true, "service", false},
	} {
		p := Policy{RequirePassiveAuth: true, AllowExpired: tt.allow}
		got := reasonCodes(p.chipReasons(expired, tt.kind))
		if slices.Contains(got, "document_expired") != tt.decline {
			t.Errorf("allow_expired=%v %s: %v, want decline %v", tt.allow, tt.kind, got, tt.decline)
		}
	}
}
