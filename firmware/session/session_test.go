package session

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
)

type fakeChip struct {
	mu      sync.Mutex
	reports []*emrtd.Report // one per read; the last repeats
	reads   []emrtd.Password
}

func (c *fakeChip) Read(ctx context.Context, pw emrtd.Password) (document.Document, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads = append(c.reads, pw)
	r := c.reports[0]
	if len(c.reports) > 1 {
		c.reports = c.reports[1:]
	}
	cp := *r
	if r.Face != nil {
		f := *r.Face
		f.Image = append([]byte(nil), r.Face.Image...)
		cp.Face = &f
	}
	return &document.EMRTD{R: &cp}, nil
}

type fakeFace struct {
	res  FaceResult
	hang bool
	got  []byte
	// phase, when set, makes VerifyExtendable (facetime_test.go) a
	// verifier with a phase of that length; extended counts extensions.
	phase    time.Duration
	extended int
}

func (f *fakeFace) Verify(ctx context.Context, ref []byte, progress func(FaceProgress)) (FaceResult, error) {
	f.got = append([]byte(nil), ref...)
	progress(FaceProgress{Stage: "match"})
	if f.hang {
		<-ctx.Done()
		return FaceResult{}, ctx.Err()
	}
	progress(FaceProgress{Stage: "smile"})
	return f.res, nil
}

type fakeAuth struct {
	mu        sync.Mutex
	decision  Authorization
	commitErr error
	commits   []Record
	events    *[]string
}

func (a *fakeAuth) Authorize(context.Context, Request) (Authorization, error) { return a.decision, nil }
func (a *fakeAuth) Commit(_ context.Context, r Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commits = append(a.commits, r)
	*a.events = append(*a.events, "commit")
	return a.commitErr
}

func goodReport() *emrtd.Report {
	return &emrtd.Report{
		Passed:   true,
		Failures: []string{},
		Access:   emrtd.AccessInfo{Protocol: "PACE", Password: "CAN"},
		Document: emrtd.Document{Type: "ID", IssuingState: "UTO", DocumentNumber: "T22000129", Expiry: "351031"},
		Face:     &emrtd.Face{Image: []byte{0xFF, 0xD8, 1, 2, 3}, Format: "jpeg"},
		Checks: []emrtd.Check{
			{Name: "access_control", OK: true, Required: true},
			{Name: "passive_authentication", OK: true, Required: true},
			{Name: "chip_authentication", OK: true, Required: true},
			{Name: "document_not_expired", OK: true},
		},
	}
}

func goodFace() FaceResult {
	return FaceResult{Matched: true, Similarity: 0.8, MatchThreshold: 0.45, Live: true, Liveness: 0.99, Consent: true}
}

type harness struct {
	m      *Machine
	chip   *fakeChip
	face   *fakeFace
	auth   *fakeAuth
	mu     sync.Mutex
	events []string
	states chan State
	stop   func()
}

func newHarness(t *testing.T, chip *fakeChip, face *fakeFace, auth Authorization) *harness {
	t.Helper()
	return newHarnessWith(t, chip, face, auth, nil)
}

// newHarnessWith is newHarness with the machine's options changed by mod.
func newHarnessWith(t *testing.T, chip *fakeChip, face *fakeFace, auth Authorization, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{chip: chip, face: face, states: make(chan State, 64)}
	h.auth = &fakeAuth{decision: auth, events: &h.events}
	opts := Options{
		Chip: chip, Face: face, Authorizer: h.auth,
		Policy: Policy{RequirePassiveAuth: true, MatchThreshold: 0.45, LivenessThreshold: 0.5, RequireConsent: true,
			CardTimeout: 2 * time.Second, PasswordTimeout: 2 * time.Second, ResultDisplay: 10 * time.Millisecond,
			RemoveTimeout: 2 * time.Second, FaceTimeout: 2 * time.Second},
		Publish: func(kind string, data any) {
			h.mu.Lock()
			h.events = append(h.events, kind)
			h.mu.Unlock()
			if st, ok := data.(Status); ok && len(kind) > 8 && kind[:8] == "session." && State(kind[8:]) == st.State {
				h.states <- st.State
			}
		},
	}
	if mod != nil {
		mod(&opts)
	}
	h.m = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	h.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop")
		}
	}
	t.Cleanup(h.stop)
	h.expect(t, Idle)
	return h
}

func (h *harness) expect(t *testing.T, want State) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-h.states:
			if s == want {
				return
			}
		case <-timeout:
			t.Fatalf("never reached %s (now %s)", want, h.m.Status().State)
		}
	}
}

func (h *harness) pay(t *testing.T, ref string) Request {
	t.Helper()
	req, err := h.m.Start(context.Background(), Request{Kind: "payment", AmountMinor: 2350, Currency: "CNY", MerchantRef: ref})
	if err != nil {
		t.Fatal(err)
	}
	h.expect(t, AwaitCard)
	return req
}

func (h *harness) outcome(t *testing.T) *Outcome {
	t.Helper()
	h.expect(t, Result)
	st := h.m.Status()
	if st.Outcome == nil {
		t.Fatal("result without outcome")
	}
	return st.Outcome
}

func codes(o *Outcome) []string {
	var c []string
	for _, r := range o.Reasons {
		c = append(c, r.Code)
	}
	return c
}

func TestApprovedPaymentWalksEveryStep(t *testing.T) {
	h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{res: goodFace()}, Authorization{Approved: true, Online: true})
	req := h.pay(t, "till-1")
	h.m.CardPresent(true)
	h.expect(t, AwaitPassword)
	if err := h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "123456"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []State{ReadingChip, FaceMatch, Smile, Authorizing} {
		h.expect(t, s)
	}
	o := h.outcome(t)
	if !o.Approved || len(o.Reasons) != 0 {
		t.Fatalf("outcome %+v", o)
	}
	h.expect(t, RemoveCard)
	h.m.CardPresent(false)
	h.expect(t, Idle)

	// The record was committed before the result was shown.
	h.mu.Lock()
	ev := slices.Clone(h.events)
	h.mu.Unlock()
	if ci, ri := slices.Index(ev, "commit"), slices.Index(ev, "session.result"); ci < 0 || ri < 0 || ci > ri {
		t.Fatalf("commit not before result: %v", ev)
	}
	rec := h.auth.commits[0]
	if !rec.Approved || rec.Request.ID != req.ID || rec.Chip == nil || rec.Face == nil || rec.Auth == nil || rec.DocNumber != "T22000129" {
		t.Fatalf("record %+v", rec)
	}
	if string(h.face.got) != string([]byte{0xFF, 0xD8, 1, 2, 3}) {
		t.Fatal("face step did not get the chip photo")
	}
	// The till can read the finished payment by id and by its reference.
	for _, k := range []string{req.ID, "till-1"} {
		if st, ok := h.m.Lookup(k); !ok || st.Outcome == nil || !st.Outcome.Approved {
			t.Fatalf("lookup %s: %+v %v", k, st, ok)
		}
	}
	// Idempotent on the merchant reference.
	again, err := h.m.Start(context.Background(), Request{Kind: "payment", AmountMinor: 2350, Currency: "CNY", MerchantRef: "till-1"})
	if err != nil || again.ID != req.ID {
		t.Fatalf("repeat of till-1: %v %v", again.ID, err)
	}
}

func TestDeclines(t *testing.T) {
	altered := goodReport()
	altered.Passed = false
	altered.Failures = []string{"dg_hash_mismatch", "passive_authentication_failed"}
	altered.Checks[1] = emrtd.Check{Name: "passive_authentication", OK: false, Code: "passive_authentication_failed", Required: true}
	expired := goodReport()
	expired.Checks[2] = emrtd.Check{Name: "document_not_expired", Code: "document_expired"}
	other := goodFace()
	other.Matched, other.Similarity = false, 0.12
	noSmile := goodFace()
	noSmile.Consent = false
	spoof := goodFace()
	spoof.Live, spoof.Liveness = false, 0.1
	tests := []struct {
		name   string
		report *emrtd.Report
		face   FaceResult
		auth   Authorization
		want   string
		msg    string
	}{
		{"different person", goodReport(), other, Authorization{Approved: true}, "face_mismatch", "msg.face_mismatch"},
		{"no smile", goodReport(), noSmile, Authorization{Approved: true}, "no_consent", "msg.no_consent"},
		{"photo not live", goodReport(), spoof, Authorization{Approved: true}, "not_live", "msg.not_live"},
		{"altered chip", altered, goodFace(), Authorization{Approved: true}, "dg_hash_mismatch", "msg.document_not_genuine"},
		{"expired document", expired, goodFace(), Authorization{Approved: true}, "document_expired", "msg.document_expired"},
		// The codes the reference hub, the offline rules and the outbox
		// really send: a bank decline is never "document not genuine".
		{"hub transaction limit", goodReport(), goodFace(), Authorization{Reason: "hub_over_transaction_limit"}, "hub_over_transaction_limit", "msg.declined_by_bank"},
		{"hub daily limit", goodReport(), goodFace(), Authorization{Reason: "hub_over_daily_limit"}, "hub_over_daily_limit", "msg.declined_by_bank"},
		{"hub invalid request", goodReport(), goodFace(), Authorization{Reason: "hub_invalid_request"}, "hub_invalid_request", "msg.declined_by_bank"},
		{"offline floor", goodReport(), goodFace(), Authorization{Reason: "offline_over_floor_limit"}, "offline_over_floor_limit", "msg.declined_by_bank"},
		{"outbox full", goodReport(), goodFace(), Authorization{Reason: "outbox_full"}, "outbox_full", "msg.technical"},
		{"bank declines without a code", goodReport(), goodFace(), Authorization{}, "declined_by_bank", "msg.declined_by_bank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, &fakeChip{reports: []*emrtd.Report{tt.report}}, &fakeFace{res: tt.face}, tt.auth)
			h.pay(t, "")
			h.m.CardPresent(true)
			h.expect(t, AwaitPassword)
			h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "1"})
			o := h.outcome(t)
			if o.Approved || !slices.Contains(codes(o), tt.want) {
				t.Fatalf("outcome %+v, want decline %s", o, tt.want)
			}
			if o.Reasons[0].Message != tt.msg {
				t.Errorf("%s shown as %s, want %s", tt.want, o.Reasons[0].Message, tt.msg)
			}
			for _, r := range o.Reasons {
				if r.Message == "" {
					t.Fatalf("reason %s without a shopper message", r.Code)
				}
			}
			if len(h.auth.commits) != 1 || h.auth.commits[0].Approved {
				t.Fatalf("commits %+v", h.auth.commits)
			}
		})
	}
}

func TestWrongPasswordThenRight(t *testing.T) {
	wrong := goodReport()
	wrong.Passed = false
	two := 2
	wrong.Access.RetriesLeft = &two
	wrong.Failures = []string{"wrong_password"}
	wrong.Checks = []emrtd.Check{{Name: "access_control", Code: "wrong_password", Required: true}}
	chip := &fakeChip{reports: []*emrtd.Report{wrong, goodReport()}}
	h := newHarness(t, chip, &fakeFace{res: goodFace()}, Authorization{Approved: true})
	h.pay(t, "")
	h.m.CardPresent(true)
	h.expect(t, AwaitPassword)
	h.m.EnterPassword(emrtd.Password{Kind: emrtd.PIN, Secret: "0000"})
	h.expect(t, ReadingChip)
	h.expect(t, AwaitPassword)
	if st := h.m.Status(); st.PINRetriesLeft == nil || *st.PINRetriesLeft != 2 {
		t.Fatalf("retries left not shown: %+v", st)
	}
	h.m.EnterPassword(emrtd.Password{Kind: emrtd.PIN, Secret: "2468"})
	if o := h.outcome(t); !o.Approved {
		t.Fatalf("%+v", o)
	}
	if len(chip.reads) != 2 {
		t.Fatalf("%d reads", len(chip.reads))
	}
}

// A BAC-only chip read with a CAN: the pad is asked for the MRZ without
// spending an attempt; a mistyped MRZ (BAC refused) is a wrong password
// that may be retried; the right MRZ reads the chip.
func TestBACOnlyAsksForMRZ(t *testing.T) {
	needs := goodReport()
	needs.Passed = false
	needs.Failures = []string{"bac_needs_mrz"}
	needs.Checks = []emrtd.Check{{Name: "access_control", Code: "bac_needs_mrz", Required: true}}
	wrong := goodReport()
	wrong.Passed = false
	wrong.Failures = []string{"bac_failed"}
	wrong.Checks = []emrtd.Check{{Name: "access_control", Code: "bac_failed", Required: true}}
	good := goodReport()
	good.Access = emrtd.AccessInfo{Protocol: "BAC", Password: "MRZ"}
	chip := &fakeChip{reports: []*emrtd.Report{needs, wrong, wrong, good}}
	h := newHarnessWith(t, chip, &fakeFace{res: goodFace()}, Authorization{Approved: true}, func(o *Options) { o.Policy.MaxPasswordAttempts = 3 })
	h.pay(t, "")
	h.m.CardPresent(true)
	h.expect(t, AwaitPassword)
	if h.m.Status().NeedsMRZ {
		t.Fatal("MRZ asked for before the chip was read")
	}
	h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "123456"})
	h.expect(t, ReadingChip)
	h.expect(t, AwaitPassword)
	if !h.m.Status().NeedsMRZ {
		t.Fatalf("MRZ not asked for: %+v", h.m.Status())
	}
	mrz := emrtd.Password{Kind: emrtd.MRZ}
	for i := 0; i < 2; i++ {
		h.m.EnterPassword(mrz)
		h.expect(t, ReadingChip)
		h.expect(t, AwaitPassword)
	}
	h.m.EnterPassword(mrz)
	if o := h.outcome(t); !o.Approved {
		t.Fatalf("%+v", o)
	}
	if len(chip.reads) != 4 || chip.reads[0].Kind != emrtd.CAN || chip.reads[3].Kind != emrtd.MRZ {
		t.Fatalf("reads %v", chip.reads)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Contains(h.events, "session.needs_mrz") {
		t.Fatalf("no session.needs_mrz in %v", h.events)
	}
}

// A chip that keeps refusing the MRZ ends the session as a wrong password.
func TestWrongMRZDeclines(t *testing.T) {
	wrong := goodReport()
	wrong.Passed = false
	wrong.Failures = []string{"bac_failed"}
	wrong.Checks = []emrtd.Check{{Name: "access_control", Code: "bac_failed", Required: true}}
	h := newHarness(t, &fakeChip{reports: []*emrtd.Report{wrong}}, &fakeFace{res: goodFace()}, Authorization{Approved: true})
	h.pay(t, "")
	h.m.CardPresent(true)
	for i := 0; i < 3; i++ {
		h.expect(t, AwaitPassword)
		h.m.EnterPassword(emrtd.Password{Kind: emrtd.MRZ})
	}
	o := h.outcome(t)
	if o.Approved || len(o.Reasons) == 0 || o.Reasons[0].Message != "msg.wrong_password" {
		t.Fatalf("%+v", o)
	}
}

func TestAborts(t *testing.T) {
	t.Run("card removed during the face step", func(t *testing.T) {
		h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{hang: true}, Authorization{Approved: true})
		h.pay(t, "")
		h.m.CardPresent(true)
		h.expect(t, AwaitPassword)
		h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "1"})
		h.expect(t, FaceMatch)
		h.m.CardPresent(false)
		o := h.outcome(t)
		if o.Approved || !slices.Contains(codes(o), "card_removed") {
			t.Fatalf("%+v", o)
		}
		h.expect(t, Idle) // no card to take: straight back to idle
	})
	t.Run("till cancels while waiting for the card", func(t *testing.T) {
		h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{res: goodFace()}, Authorization{Approved: true})
		req := h.pay(t, "ref-9")
		if err := h.m.Cancel("ref-9", ""); err != nil {
			t.Fatal(err)
		}
		if o := h.outcome(t); o.Approved || !slices.Contains(codes(o), "cancelled") {
			t.Fatalf("%+v", o)
		}
		h.expect(t, Idle)
		if err := h.m.Cancel(req.ID, ""); !errors.Is(err, ErrNoSession) {
			t.Fatalf("cancel after the end: %v", err)
		}
	})
	t.Run("till cancels mid-session", func(t *testing.T) {
		h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{hang: true}, Authorization{Approved: true})
		req := h.pay(t, "")
		h.m.CardPresent(true)
		h.expect(t, AwaitPassword)
		h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "1"})
		h.expect(t, FaceMatch)
		h.m.Cancel(req.ID, "")
		if o := h.outcome(t); !slices.Contains(codes(o), "cancelled") {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("nobody inserts a card", func(t *testing.T) {
		h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{res: goodFace()}, Authorization{Approved: true})
		h.pay(t, "")
		if o := h.outcome(t); !slices.Contains(codes(o), "timeout") {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("one session at a time", func(t *testing.T) {
		h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{res: goodFace()}, Authorization{Approved: true})
		h.pay(t, "")
		if _, err := h.m.Start(context.Background(), Request{Kind: "payment", AmountMinor: 1, Currency: "CNY"}); !errors.Is(err, ErrBusy) {
			t.Fatalf("second start: %v", err)
		}
		if err := h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN}); !errors.Is(err, ErrWrongState) {
			t.Fatalf("password before the card: %v", err)
		}
	})
	t.Run("record not stored means no approval", func(t *testing.T) {
		h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{res: goodFace()}, Authorization{Approved: true})
		h.auth.commitErr = errors.New("disk full")
		h.pay(t, "")
		h.m.CardPresent(true)
		h.expect(t, AwaitPassword)
		h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "1"})
		if o := h.outcome(t); o.Approved || !slices.Contains(codes(o), "record_not_stored") {
			t.Fatalf("%+v", o)
		}
	})
}

func TestInvalidRequests(t *testing.T) {
	h := newHarness(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, &fakeFace{res: goodFace()}, Authorization{Approved: true})
	for _, r := range []Request{
		{Kind: "payment", AmountMinor: 0, Currency: "CNY"},
		{Kind: "payment", AmountMinor: 5, Currency: "YUAN"},
		{Kind: "service"},
		{Kind: "refund", AmountMinor: 5, Currency: "CNY"},
	} {
		if _, err := h.m.Start(context.Background(), r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", r, err)
		}
	}
}
