package session

import (
	"slices"
	"strings"
	"time"

	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
)

// Policy is the decision policy (config section [policy]).
type Policy struct {
	// RequirePassiveAuth: the chip's data must be signed by a trusted CSCA.
	RequirePassiveAuth bool
	// ChipAuthExemptTypes lists the legacy document type codes ("P",
	// "I", "ID", or "*" for all) that may pass without chip or active
	// authentication (the chip reader lets them through only when their
	// chip supports neither). Every other document must have passed one
	// of them: fail closed.
	ChipAuthExemptTypes []string
	// AllowExpired accepts expired documents for branch services (a bank
	// may renew an expired ID at the branch); payments never take one.
	AllowExpired bool
	// MatchThreshold and LivenessThreshold are the minimum scores.
	MatchThreshold    float64
	LivenessThreshold float64
	// RequireConsent: the holder must smile to confirm.
	RequireConsent bool

	MaxPasswordAttempts int
	CardTimeout         time.Duration
	PasswordTimeout     time.Duration
	ChipTimeout         time.Duration
	FaceTimeout         time.Duration
	AuthorizeTimeout    time.Duration
	ResultDisplay       time.Duration
	RemoveTimeout       time.Duration
	// TimeExtensions is how often the shopper may take more time in a
	// step they pace (card, code, face); 0 offers none. MoreTimeWarning is
	// how long before the step's timeout the offer comes (default 15 s;
	// in the face step at most half of the phase, facetime.go).
	TimeExtensions  int
	MoreTimeWarning time.Duration
}

func (p Policy) withDefaults() Policy {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&p.CardTimeout, 60*time.Second)
	def(&p.PasswordTimeout, 60*time.Second)
	def(&p.ChipTimeout, 30*time.Second)
	def(&p.FaceTimeout, 30*time.Second)
	def(&p.AuthorizeTimeout, 15*time.Second)
	def(&p.ResultDisplay, 3*time.Second)
	def(&p.RemoveTimeout, 30*time.Second)
	def(&p.MoreTimeWarning, 15*time.Second)
	if p.MaxPasswordAttempts <= 0 {
		p.MaxPasswordAttempts = 3
	}
	return p
}

// shopperMessages maps decline codes to the screen's message keys; the
// UI catalogues hold the words in each language.
func shopperMessage(code string) string {
	switch {
	case code == "wrong_password" || code == "bac_failed" || code == "pin_wrong" || code == "pin_format":
		return "msg.wrong_password"
	case code == "pin_blocked":
		return "msg.pin_blocked"
	case code == "document_expired":
		return "msg.document_expired"
	case code == "card_removed":
		return "msg.card_removed"
	case code == "timeout":
		return "msg.timeout"
	case code == "cancelled" || strings.HasPrefix(code, "cancelled_"):
		return "msg.cancelled"
	case code == "face_mismatch":
		return "msg.face_mismatch"
	case code == "no_face" || code == "face_timeout":
		return "msg.face_not_seen"
	case code == "no_face_reference":
		return "msg.no_face_reference"
	case code == "no_reference_face" || code == "reference_quality" || code == "no_chip_photo":
		return "msg.chip_photo_unusable"
	case code == "not_live":
		return "msg.not_live"
	case code == "no_consent":
		return "msg.no_consent"
	case code == "chip_read_failed" || code == "bac_needs_mrz" || strings.HasPrefix(code, "card_access") || code == "read_failed" ||
		code == "card_error" || code == "not_bankeid":
		return "msg.card_unreadable"
	case code == "declined_by_bank" || strings.HasPrefix(code, "limit") || strings.HasPrefix(code, "offline"):
		return "msg.declined_by_bank"
	case code == "authorization_unavailable" || code == "face_reference_unavailable" || code == "record_not_stored" || code == "internal_error" || code == "shutdown" || code == "face_failed":
		return "msg.technical"
	default:
		return "msg.document_not_genuine"
	}
}

func reason(code string) Reason { return Reason{Code: code, Message: shopperMessage(code)} }

// authReason is the reason for a payment the authorization step declined
// (the bank hub's codes, the offline rules', the kiosk's own outbox):
// whatever the code, it is never a verdict on the document.
func authReason(code string) Reason {
	msg := "msg.declined_by_bank"
	if code == "outbox_full" || code == "offline_outbox_full" {
		msg = "msg.technical" // the kiosk cannot keep the record: nothing to do with the shopper
	}
	return Reason{Code: code, Message: msg}
}

// chipReasons applies the policy to the eID report for a request of
// kind ("payment" or "service").
func (p Policy) chipReasons(r *emrtd.Report, kind string) []Reason {
	var out []Reason
	seen := map[string]bool{}
	add := func(code string) {
		if code != "" && !seen[code] {
			seen[code] = true
			out = append(out, reason(code))
		}
	}
	check := func(name string) (emrtd.Check, bool) {
		for _, c := range r.Checks {
			if c.Name == name {
				return c, true
			}
		}
		return emrtd.Check{}, false
	}
	if c, ok := check("access_control"); !ok || !c.OK {
		add(c.Code)
		add("access_failed")
		return out[:1]
	}
	for _, f := range r.Failures {
		if f == "document_expired" {
			continue
		}
		if !p.RequirePassiveAuth && strings.HasPrefix(f, "pa_") {
			continue
		}
		add(f)
	}
	if c, ok := check("passive_authentication"); p.RequirePassiveAuth && (!ok || !c.OK) {
		add("passive_authentication_failed")
	}
	if c, ok := check("document_not_expired"); ok && !c.OK && !(p.AllowExpired && kind == "service") {
		add("document_expired")
	}
	if !slices.Contains(p.ChipAuthExemptTypes, "*") && !slices.Contains(p.ChipAuthExemptTypes, r.Document.Type) {
		ca, caOK := check("chip_authentication")
		aa, aaOK := check("active_authentication")
		if !(caOK && ca.OK) && !(aaOK && aa.OK) {
			add("chip_not_authenticated")
		}
	}
	if r.Face == nil || len(r.Face.Image) == 0 {
		add("no_chip_photo")
	}
	return out
}

// documentReasons applies the policy to a document read by a driver
// other than emrtd (a bank eID): every failure the driver gave declines;
// a refusal without a code declines as document_refused.
func (p Policy) documentReasons(d document.Document) []Reason {
	var out []Reason
	for _, f := range d.Failures() {
		out = append(out, reason(f))
	}
	if !d.Passed() && len(out) == 0 {
		out = append(out, reason("document_refused"))
	}
	return out
}

// faceReasons applies the policy to the face step.
func (p Policy) faceReasons(f FaceResult) []Reason {
	var out []Reason
	if !f.Matched || f.Similarity < p.MatchThreshold {
		code := "face_mismatch"
		switch f.Reason {
		case "no_face", "no_reference_face", "reference_quality", "timeout":
			code = f.Reason
			if code == "timeout" {
				code = "face_timeout"
			}
		}
		out = append(out, reason(code))
		return out
	}
	if !f.Live || f.Liveness < p.LivenessThreshold {
		out = append(out, reason("not_live"))
	}
	if p.RequireConsent && !f.Consent {
		out = append(out, reason("no_consent"))
	}
	return out
}
