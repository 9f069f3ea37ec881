package txreport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"kiosk/provisioning/devkey"
)

func signer(t testing.TB, id string) *Signer {
	t.Helper()
	k, c, err := devkey.Generate(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sample() *Report {
	now := time.Date(2026, 11, 28, 17, 0, 0, 123456789, time.UTC)
	return &Report{
		V: Version, TxID: "01JDX3-tx-0001", Terminal: "kiosk-0001", Merchant: "Café <Zürich> & Co",
		Kind: "payment", Amount: 1250, Currency: "CHF",
		Started: Timestamp(now.Add(-20 * time.Second)), Decided: Timestamp(now),
		DocHash:  DocumentHash([]byte("0123456789abcdef"), "D", "T22000129<"),
		Checks:   []Check{{Name: "passive_authentication", OK: true}, {Name: "chip_authentication", OK: true}},
		Scores:   []Score{NewScore("match", 0.7342, 0.6), NewScore("liveness", 0.91, 0.8), NewScore("consent", 1, 1)},
		Models:   []Model{{Name: "sface", SHA256: strings.Repeat("ab", 32)}},
		Decision: Approved, Auth: Auth{Mode: AuthOnline, Ref: "A-1"},
		Face: &FaceSummary{Frames: 41, Good: 3, NoFace: 2, Rejected: map[string]int64{"come_closer": 4, "hold_still": 1},
			ConsentAt: Timestamp(now.Add(-2 * time.Second))},
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b":1, "a":[true,false,null], "c":{"z":"x","y":-3}}`, `{"a":[true,false,null],"b":1,"c":{"y":-3,"z":"x"}}`},
		{`"a\"b\\c\u00e9\u003c"`, `"a\"b\\cé<"`},
		{` 9007199254740991 `, `9007199254740991`},
		{`[]`, `[]`},
	} {
		got, err := Canonical([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`{"a":1,"a":2}`, `1.5`, `1e3`, `9007199254740992`, `"a\nb"`, `"\u2028"`, `{} {}`, `{"a":`, "\"\xff\"", strings.Repeat("[", 40) + strings.Repeat("]", 40)} {
		if _, err := Canonical([]byte(in)); !errors.Is(err, ErrNotCanonicalizable) {
			t.Errorf("Canonical(%q) = %v, want ErrNotCanonicalizable", in, err)
		}
	}
}

func TestEncodeIsCanonicalAndStable(t *testing.T) {
	r := sample()
	a, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Canonical(a)
	if !bytes.Equal(a, b) {
		t.Fatalf("Encode is not canonical:\n%s\n%s", a, b)
	}
	if !bytes.Contains(a, []byte(`"merchant":"Café <Zürich> & Co"`)) || !bytes.HasPrefix(a, []byte(`{"amount":1250,"auth":{"mode":"online","ref":"A-1"},"checks":[`)) {
		t.Fatalf("unexpected encoding %s", a)
	}
	if !bytes.Contains(a, []byte(`{"name":"match","ok":true,"threshold_e4":6000,"value_e4":7342}`)) {
		t.Fatalf("scores: %s", a)
	}
}

func TestDocumentHash(t *testing.T) {
	salt := []byte("salt-1")
	h := DocumentHash(salt, "d", "T22000129<<")
	if h != DocumentHash(salt, "D", "T22000129") || len(h) != 64 {
		t.Fatal("hash not normalised")
	}
	if h == DocumentHash([]byte("salt-2"), "D", "T22000129") {
		t.Fatal("salt ignored")
	}
	if strings.Contains(h, "T22000129") {
		t.Fatal("raw number in hash")
	}
}

func TestValidate(t *testing.T) {
	for name, f := range map[string]func(*Report){
		"version":            func(r *Report) { r.V = 2 },
		"tx id":              func(r *Report) { r.TxID = "a/b" },
		"currency":           func(r *Report) { r.Currency = "chf" },
		"negative":           func(r *Report) { r.Amount = -1 },
		"time":               func(r *Report) { r.Decided = "yesterday" },
		"approved w/ reason": func(r *Report) { r.Reasons = []string{"x"} },
		"declined no reason": func(r *Report) { r.Decision = Declined },
		"auth mode":          func(r *Report) { r.Auth.Mode = "maybe" },
		"doc hash":           func(r *Report) { r.DocHash = "T22000129" },
		"control char":       func(r *Report) { r.Merchant = "a\x00b" },
		"face counts":        func(r *Report) { r.Face.Good = 50 },
		"face negative":      func(r *Report) { r.Face.NoFace = -1 },
		"face gate code":     func(r *Report) { r.Face.Rejected["Come closer\n"] = 1 },
		"face consent time":  func(r *Report) { r.Face.ConsentAt = "when he smiled" },
	} {
		r := sample()
		f(r)
		if _, err := r.Encode(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSignVerify(t *testing.T) {
	s := signer(t, "kiosk-0001")
	other := signer(t, "kiosk-0002")
	ring := NewKeyring()
	if err := ring.Add(s.cert); err != nil {
		t.Fatal(err)
	}
	env, err := s.Sign(sample())
	if err != nil {
		t.Fatal(err)
	}
	r, dev, err := ring.Verify(env)
	if err != nil || dev.ID != "kiosk-0001" || r.Amount != 1250 || r.Merchant != "Café <Zürich> & Co" {
		t.Fatalf("verify: %+v %v %v", r, dev, err)
	}

	// Re-indented in transit: still verifies (signature covers the canonical form).
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, env, "", "  ")
	if _, _, err := ring.Verify(pretty.Bytes()); err != nil {
		t.Fatalf("indented envelope: %v", err)
	}

	tamper := func(f func(e *Envelope)) []byte {
		var e Envelope
		if err := json.Unmarshal(env, &e); err != nil {
			t.Fatal(err)
		}
		f(&e)
		b, _ := json.Marshal(e)
		return b
	}
	cases := map[string]struct {
		env  []byte
		want error
	}{
		"amount changed": {tamper(func(e *Envelope) {
			e.Report = bytes.Replace(e.Report, []byte(`"amount":1250`), []byte(`"amount":125`), 1)
		}), ErrBadSignature},
		"field added": {tamper(func(e *Envelope) {
			e.Report = bytes.Replace(e.Report, []byte(`{"amount"`), []byte(`{"extra":1,"amount"`), 1)
		}), ErrBadSignature},
		"unknown device": {mustSign(t, other, sample()), ErrUnknownDevice},
		"other key, claims known cert": {tamper(func(e *Envelope) {
			o, _ := other.Sign(sample())
			var oe Envelope
			_ = json.Unmarshal(o, &oe)
			e.Sig = oe.Sig
		}), ErrBadSignature},
		"sig garbage": {tamper(func(e *Envelope) { e.Sig = base64.StdEncoding.EncodeToString([]byte("nope")) }), ErrBadSignature},
		"alg":         {tamper(func(e *Envelope) { e.Alg = "none" }), ErrMalformed},
		"not json":    {[]byte("hello"), ErrMalformed},
		"huge":        {make([]byte, MaxEnvelope+1), ErrMalformed},
		"dup key": {tamper(func(e *Envelope) {
			e.Report = bytes.Replace(e.Report, []byte(`{"amount":1250`), []byte(`{"amount":1,"amount":1250`), 1)
		}), ErrMalformed},
		"float amount": {tamper(func(e *Envelope) {
			e.Report = bytes.Replace(e.Report, []byte(`"amount":1250`), []byte(`"amount":1250.0`), 1)
		}), ErrMalformed},
	}
	for name, tc := range cases {
		if _, _, err := ring.Verify(tc.env); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
	}

	// A known device signing a report for another terminal.
	_ = ring.Add(other.cert)
	r2 := sample()
	r2.Terminal = "kiosk-0001"
	if _, _, err := ring.Verify(mustSign(t, other, r2)); !errors.Is(err, ErrWrongDevice) {
		t.Fatalf("report for another terminal: %v", err)
	}
}

func mustSign(t *testing.T, s *Signer, r *Report) []byte {
	t.Helper()
	b, err := s.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The hub parses envelopes from the network: nothing may panic, and
// whatever verifies must be a valid report of the known device.
func FuzzVerify(f *testing.F) {
	s := signer(f, "kiosk-0001")
	ring := NewKeyring()
	_ = ring.Add(s.cert)
	good, _ := s.Sign(sample())
	f.Add(good)
	f.Add([]byte(`{"report":{},"alg":"ES256","sig":"","cert":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{"report":[1,2],"alg":"ES256"}`))
	f.Add([]byte(`{"report":{"a":{"b":{"c":[1e999]}}}}`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, dev, err := ring.Verify(b)
		if err == nil {
			if dev.ID != "kiosk-0001" || r.Validate() != nil {
				t.Fatalf("accepted %q", b)
			}
		}
		if c, err := Canonical(b); err == nil {
			if c2, err := Canonical(c); err != nil || !bytes.Equal(c, c2) {
				t.Fatalf("canonical form not idempotent: %q → %q (%v)", c, c2, err)
			}
		}
	})
}

type sealedMsg struct {
	ID       string `json:"id"`
	Approved bool   `json:"approved"`
	Amount   int64  `json:"amount"`
	Merchant string `json:"merchant"`
}

func TestSealOpen(t *testing.T) {
	s := signer(t, "hub-1")
	ring := NewKeyring()
	if err := ring.Add(s.cert); err != nil {
		t.Fatal(err)
	}
	b, err := s.Seal(sealedMsg{ID: "a1", Approved: true, Amount: 2350, Merchant: "Café"})
	if err != nil {
		t.Fatal(err)
	}
	var m sealedMsg
	dev, err := ring.Open(b, &m)
	if err != nil || dev.ID != "hub-1" || m != (sealedMsg{ID: "a1", Approved: true, Amount: 2350, Merchant: "Café"}) {
		t.Fatalf("open: %+v %+v %v", m, dev, err)
	}
	var env Sealed
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	forge := func(f func(*Sealed)) []byte {
		e := env
		f(&e)
		out, _ := json.Marshal(e)
		return out
	}
	other := signer(t, "hub-2")
	otherSealed, _ := other.Seal(sealedMsg{ID: "a1", Approved: true})
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"approval flipped": {forge(func(e *Sealed) {
			e.Body = []byte(strings.Replace(string(e.Body), `"approved":true`, `"approved":false`, 1))
		}), ErrBadSignature},
		"unknown signer":    {otherSealed, ErrUnknownDevice},
		"unknown field":     {forge(func(e *Sealed) { e.Body = []byte(`{"id":"a1","extra":1}`) }), ErrBadSignature},
		"not an object":     {forge(func(e *Sealed) { e.Body = []byte(`[1]`) }), ErrMalformed},
		"other algorithm":   {forge(func(e *Sealed) { e.Alg = "none" }), ErrMalformed},
		"garbage signature": {forge(func(e *Sealed) { e.Sig = "!!" }), ErrMalformed},
		"unsigned plain":    {[]byte(`{"id":"a1","approved":true}`), ErrMalformed},
	} {
		var m sealedMsg
		if _, err := ring.Open(c.b, &m); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// A signer whose certificate has expired signs nothing that counts.
	k, c, err := devkey.Generate("hub-old", -30*time.Minute) // valid from 1 h ago to 30 min ago
	if err != nil {
		t.Fatal(err)
	}
	old, err := NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	oldRing := NewKeyring()
	if err := oldRing.Add(c); err != nil {
		t.Fatal(err)
	}
	expired, _ := old.Seal(sealedMsg{ID: "a1", Approved: true})
	if _, err := oldRing.Open(expired, &m); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("expired signer: %v", err)
	}
	// A correctly signed body with a field the receiver does not know is
	// refused too.
	extra, _ := s.Seal(map[string]any{"id": "a1", "approved": true, "bonus": 1})
	if _, err := ring.Open(extra, &m); !errors.Is(err, ErrMalformed) {
		t.Errorf("signed body with an unknown field: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	s := signer(f, "hub-1")
	ring := NewKeyring()
	_ = ring.Add(s.cert)
	good, _ := s.Seal(sealedMsg{ID: "a1", Approved: true, Amount: 1})
	f.Add(good)
	f.Add([]byte(`{"body":{},"alg":"ES256","sig":"","cert":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{"id":"a1","approved":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m sealedMsg
		if dev, err := ring.Open(b, &m); err == nil && dev.ID != "hub-1" {
			t.Fatalf("opened %q from %q", b, dev.ID)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	s := signer(b, "kiosk-0001")
	r := sample()
	for b.Loop() {
		if _, err := s.Sign(r); err != nil {
			b.Fatal(err)
		}
	}
}

// A renewed key takes over a shared signer; reports signed under the old
// one still verify; a withdrawn key signs nothing.
func TestReplaceWithdraw(t *testing.T) {
	s := signer(t, "kiosk-0001")
	oldCert := s.Certificate()
	old := mustSign(t, s, sample())
	k2, c2, err := devkey.Generate("kiosk-0001", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(k2, oldCert); err == nil {
		t.Fatal("replaced with a key its certificate does not hold")
	}
	if err := s.Replace(k2, c2); err != nil {
		t.Fatal(err)
	}
	r2 := sample()
	r2.TxID = "tx-after"
	renewed := mustSign(t, s, r2)
	ring := NewKeyring()
	_ = ring.Add(oldCert)
	_ = ring.Add(c2)
	for _, env := range [][]byte{old, renewed} {
		if _, _, err := ring.Verify(env); err != nil {
			t.Fatal(err)
		}
	}
	if s.Fingerprint() != Fingerprint(c2) {
		t.Fatal("fingerprint not renewed")
	}
	s.Withdraw()
	if _, err := s.Sign(sample()); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("sign after withdraw: %v", err)
	}
	if _, err := s.Seal(map[string]int{"a": 1}); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("seal after withdraw: %v", err)
	}
}

func TestValidateEvent(t *testing.T) {
	now := Timestamp(time.Now())
	ev := Report{V: Version, TxID: "ev-1", Terminal: "kiosk-0001", Kind: KindEvent, Service: EventTamperAlarm,
		Started: now, Decided: now, Auth: Auth{Mode: AuthNone}}
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Report){
		"amount":   func(r *Report) { r.Amount = 5 },
		"decision": func(r *Report) { r.Decision = Approved },
		"no name":  func(r *Report) { r.Service = "" },
		"bad name": func(r *Report) { r.Service = "Tamper Alarm" },
		"auth":     func(r *Report) { r.Auth.Mode = AuthOffline },
	} {
		r := ev
		mod(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A withdrawn signer (tamper) is not re-armed by a renewal's Replace;
// only Restore (staff, after re-enrollment) brings it back.
func TestWithdrawnStaysWithdrawn(t *testing.T) {
	s := signer(t, "kiosk-w")
	k, c, err := devkey.Generate("kiosk-w", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(k, c); err != nil || s.Fingerprint() != Fingerprint(c) {
		t.Fatalf("replace on an armed signer: %v", err)
	}
	s.Withdraw()
	if !s.Withdrawn() {
		t.Fatal("not withdrawn")
	}
	k2, c2, _ := devkey.Generate("kiosk-w", time.Hour)
	if err := s.Replace(k2, c2); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("replace after withdraw: %v", err)
	}
	if _, err := s.Seal(map[string]string{"a": "b"}); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("seal after a refused replace: %v", err)
	}
	if err := s.Restore(k2, c2); err != nil || s.Withdrawn() {
		t.Fatalf("restore: %v", err)
	}
	if _, err := s.Seal(map[string]string{"a": "b"}); err != nil {
		t.Fatalf("seal after restore: %v", err)
	}
}
