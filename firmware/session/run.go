package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	"kiosk/firmware/document"
	"kiosk/firmware/emrtd"
	"kiosk/internal/backoff"
)

// Run owns the sessions until ctx ends. One session runs at a time.
func (m *Machine) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("session: Run called twice")
	}
	m.running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()
	m.publish("session."+string(Idle), m.Status())
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-m.start:
			m.runSession(ctx, req)
		// Inputs that arrive while idle belong to no session.
		case <-m.card:
		case <-m.cancel:
		case <-m.password:
		}
	}
}

// abort is why a session ended before its result.
type abort struct {
	code string
}

func (a *abort) Error() string { return a.code }

// session is one transaction's working state.
type session struct {
	m   *Machine
	req Request
	rec Record
	// p is the policy as it stood when the session began: a policy set
	// by an operator (SetPolicy) applies from the next session.
	p Policy
}

func (m *Machine) runSession(ctx context.Context, req Request) {
	s := &session{m: m, req: req, rec: Record{Request: req, Started: m.opts.Now(), PhasesMS: map[string]float64{}}, p: m.Policy()}
	m.set(AwaitCard, func(st *Status) {
		st.Request = &req
		st.Outcome = nil
		st.PINRetriesLeft = nil
		st.NeedsMRZ = false
		st.Document = ""
	})
	reasons, err := s.steps(ctx)
	var ab *abort
	switch {
	case errors.As(err, &ab):
		reasons = append(reasons, reason(ab.code))
	case err != nil:
		reasons = append(reasons, reason("internal_error"))
		m.log.Error("session failed", "tx", req.ID, "err", err)
	}
	s.finish(ctx, reasons)
}

// steps runs the session up to the authorization and returns the decline
// reasons (none = approved).
func (s *session) steps(ctx context.Context) ([]Reason, error) {
	m, p := s.m, s.p

	if pc, ok := m.opts.Authorizer.(Prechecker); ok {
		if ok, code := pc.Precheck(ctx, s.req); !ok {
			return []Reason{authReason(code)}, nil
		}
	}

	// Insert or tap the eID.
	if !m.cardIn() {
		if err := s.waitCard(ctx, p.CardTimeout); err != nil {
			return nil, err
		}
	}

	// Which document it is, so the pad asks for the right secret (a bank
	// eID takes its PIN). Only a hint: the read detects again.
	if m.opts.Probe != nil {
		if kind, err := runStep(ctx, s, p.ChipTimeout, m.opts.Probe); err == nil {
			m.mu.Lock()
			m.status.Document = string(kind)
			m.mu.Unlock()
		} else {
			var ab *abort
			if errors.As(err, &ab) {
				return nil, err
			}
			m.log.Warn("document probe failed", "tx", s.req.ID, "err", err)
		}
	}

	// CAN, PIN or MRZ, then read and verify the chip; a wrong password
	// may be retried while the chip allows it.
	var doc document.Document
	askedMRZ := false
	for attempt := 1; ; attempt++ {
		m.set(AwaitPassword, nil)
		pw, err := s.waitPassword(ctx, p.PasswordTimeout)
		if err != nil {
			return nil, err
		}
		m.set(ReadingChip, nil)
		t0 := time.Now()
		doc, err = runStep(ctx, s, p.ChipTimeout, func(c context.Context) (document.Document, error) {
			return m.opts.Chip.Read(c, pw)
		})
		s.rec.PhasesMS["chip"] += ms(time.Since(t0))
		if err != nil {
			var ab *abort
			if errors.As(err, &ab) {
				return nil, err
			}
			m.log.Warn("chip read failed", "tx", s.req.ID, "err", err)
			return nil, &abort{"chip_read_failed"}
		}
		if hasFailure(doc, "bac_needs_mrz") && pw.Kind != emrtd.MRZ && !askedMRZ {
			// A BAC-only chip (no EF.CardAccess): the holder typed a CAN or
			// PIN the chip has no use for. Ask for the MRZ once; the chip
			// refused no password, so no attempt is spent.
			askedMRZ = true
			attempt--
			m.mu.Lock()
			m.status.NeedsMRZ = true
			m.mu.Unlock()
			m.publish("session.needs_mrz", map[string]any{})
			doc.Wipe()
			continue
		}
		if wrongPassword(doc) && attempt < p.MaxPasswordAttempts && !hasFailure(doc, "pin_blocked") {
			left := retriesLeft(doc)
			m.mu.Lock()
			m.status.PINRetriesLeft = left
			m.mu.Unlock()
			m.publish("session.wrong_password", map[string]any{"retries_left": left, "attempt": attempt})
			doc.Wipe()
			continue
		}
		break
	}
	defer doc.Wipe()
	s.rec.Chip = summarize(doc)
	// The face reference: the chip photo of an eMRTD, or the one the
	// bank enrolled for a bank eID's holder (fetched, in memory only).
	var faceRef []byte
	if d, ok := doc.(*document.EMRTD); ok {
		s.rec.DocNumber = d.R.Document.DocumentNumber
		if reasons := p.chipReasons(d.R, s.req.Kind); len(reasons) > 0 {
			return reasons, nil
		}
		faceRef = d.R.Face.Image
	} else {
		s.rec.DocNumber = doc.Holder().ID
		if reasons := p.documentReasons(doc); len(reasons) > 0 {
			return reasons, nil
		}
		s.rec.HolderSignature = doc.TransactionSignature()
		ref, reasons, err := s.faceReference(ctx, doc)
		if err != nil || len(reasons) > 0 {
			return reasons, err
		}
		faceRef = ref
		defer clear(ref)
	}

	// Face match, liveness and the smile that confirms.
	m.set(FaceMatch, nil)
	t0 := time.Now()
	face, err := s.runFace(ctx, faceRef)
	s.rec.PhasesMS["face"] = ms(time.Since(t0))
	doc.Wipe() // the chip photo is not needed any more
	clear(faceRef)
	if err != nil {
		var ab *abort
		if errors.As(err, &ab) {
			return nil, err
		}
		m.log.Warn("face step failed", "tx", s.req.ID, "err", err)
		return nil, &abort{"face_failed"}
	}
	s.rec.Face = &face
	if reasons := p.faceReasons(face); len(reasons) > 0 {
		return reasons, nil
	}

	// Authorize (online, or offline within the floor limits).
	m.set(Authorizing, nil)
	t0 = time.Now()
	auth, err := runStep(ctx, s, p.AuthorizeTimeout, func(c context.Context) (Authorization, error) {
		return m.opts.Authorizer.Authorize(c, s.req)
	})
	s.rec.PhasesMS["authorize"] = ms(time.Since(t0))
	if err != nil {
		var ab *abort
		if errors.As(err, &ab) {
			return nil, err
		}
		m.log.Warn("authorization failed", "tx", s.req.ID, "err", err)
		return []Reason{reason("authorization_unavailable")}, nil
	}
	s.rec.Auth = &auth
	if !auth.Approved {
		code := auth.Reason
		if code == "" {
			code = "declined_by_bank"
		}
		return []Reason{authReason(code)}, nil
	}
	return nil, nil
}

// finish commits the record (fsynced) and only then shows the result;
// it waits for the card to be taken before going idle.
func (s *session) finish(ctx context.Context, reasons []Reason) {
	m, p := s.m, s.p
	s.rec.Approved = len(reasons) == 0
	s.rec.Reasons = reasons
	s.rec.Finished = m.opts.Now()
	s.rec.PhasesMS["total"] = ms(s.rec.Finished.Sub(s.rec.Started))
	if err := m.opts.Authorizer.Commit(context.WithoutCancel(ctx), s.rec); err != nil {
		// Without a durable record there is no approval.
		m.log.Error("transaction record not stored", "tx", s.req.ID, "err", err)
		s.rec.Approved = false
		s.rec.Reasons = append(s.rec.Reasons, reason("record_not_stored"))
	}
	out := &Outcome{Approved: s.rec.Approved, Reasons: s.rec.Reasons, Finished: s.rec.Finished}
	m.set(Result, func(st *Status) { st.Outcome = out })
	backoff.Sleep(ctx, p.ResultDisplay)
	if m.cardIn() {
		m.set(RemoveCard, nil)
		s.waitRemoval(ctx, p.RemoveTimeout)
	}
	m.mu.Lock()
	done := m.status
	m.history.add(done)
	m.mu.Unlock()
	m.set(Idle, func(st *Status) {
		st.Request = nil
		st.Outcome = nil
		st.PINRetriesLeft = nil
		st.NeedsMRZ = false
		st.Document = ""
	})
}

// runStep runs f with a step timeout; card removal or a cancel aborts it.
func runStep[T any](ctx context.Context, s *session, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f(sctx)
		done <- result{v, err}
	}()
	var zero T
	var ab error
	ctxDone := ctx.Done()
	for {
		select {
		case r := <-done:
			if ab != nil {
				return zero, ab
			}
			if r.err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				return zero, &abort{"timeout"}
			}
			return r.v, r.err
		case present := <-s.m.card:
			if !present && !s.m.cardIn() && ab == nil {
				ab = &abort{"card_removed"}
				cancel()
			}
		case code := <-s.m.cancel:
			if ab == nil {
				ab = &abort{cancelCode(code)}
				cancel()
			}
		case <-ctxDone:
			ctxDone = nil // sctx derives from ctx: f is stopping
			if ab == nil {
				ab = &abort{"shutdown"}
			}
		}
	}
}

func cancelCode(reason string) string {
	if reason == "" {
		return "cancelled"
	}
	return reason
}

func (s *session) waitCard(ctx context.Context, timeout time.Duration) error {
	c := s.clock(AwaitCard, timeout)
	defer c.stop()
	for {
		select {
		case <-c.warn.C:
			c.offer()
		case <-s.m.extend:
			c.extend()
		case present := <-s.m.card:
			if present && s.m.cardIn() {
				return nil
			}
		case code := <-s.m.cancel:
			return &abort{cancelCode(code)}
		case <-c.end.C:
			return &abort{"timeout"}
		case <-ctx.Done():
			return &abort{"shutdown"}
		}
	}
}

func (s *session) waitPassword(ctx context.Context, timeout time.Duration) (emrtd.Password, error) {
	c := s.clock(AwaitPassword, timeout)
	defer c.stop()
	for {
		select {
		case <-c.warn.C:
			c.offer()
		case <-s.m.extend:
			c.extend()
		case pw := <-s.m.password:
			return pw, nil
		case present := <-s.m.card:
			if !present && !s.m.cardIn() {
				return emrtd.Password{}, &abort{"card_removed"}
			}
		case code := <-s.m.cancel:
			return emrtd.Password{}, &abort{cancelCode(code)}
		case <-c.end.C:
			return emrtd.Password{}, &abort{"timeout"}
		case <-ctx.Done():
			return emrtd.Password{}, &abort{"shutdown"}
		}
	}
}

func (s *session) waitRemoval(ctx context.Context, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for s.m.cardIn() {
		select {
		case <-s.m.card:
		case <-t.C:
			// The card stays in the reader; the next session can still
			// use it. The screen asked; the kiosk moves on.
			s.m.publish("session.card_left", map[string]any{"tx": s.req.ID})
			return
		case <-ctx.Done():
			return
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// wrongPassword: the chip refused the password. BAC has no retry counter
// and says only that mutual authentication failed (9303-11 §4.3.3), which
// a mistyped MRZ causes; a bank eID says pin_wrong.
func wrongPassword(d document.Document) bool {
	return hasFailure(d, "wrong_password") || hasFailure(d, "bac_failed") || hasFailure(d, "pin_wrong") || hasFailure(d, "pin_format")
}

func hasFailure(d document.Document, code string) bool { return slices.Contains(d.Failures(), code) }

// retriesLeft is the PIN retry counter the card reported, if any.
func retriesLeft(d document.Document) *int {
	switch d := d.(type) {
	case *document.EMRTD:
		return d.R.Access.RetriesLeft
	case *document.BankEID:
		return d.R.PINRetriesLeft
	}
	return nil
}

func summarize(d document.Document) *ChipSummary {
	switch d := d.(type) {
	case *document.EMRTD:
		r := d.R
		return &ChipSummary{
			Document: string(document.KindEMRTD),
			Passed:   r.Passed, DocType: r.Document.Type, Issuer: r.Document.IssuingState, Expiry: r.Document.Expiry,
			Protocol: r.Access.Protocol, Checks: r.Checks, Access: r.Access,
		}
	case *document.BankEID:
		r := d.R
		cs := &ChipSummary{Document: string(document.KindBankEID), Passed: r.Passed, DocType: "bankeid", Protocol: r.Profile,
			Access: emrtd.AccessInfo{Password: "PIN", RetriesLeft: r.PINRetriesLeft}}
		if r.Identity != nil {
			cs.Issuer = r.Identity.Authority
		}
		for _, c := range r.Checks {
			cs.Checks = append(cs.Checks, emrtd.Check{Name: "bankeid_" + c.Name, OK: c.OK, Code: c.Code, Reason: c.Reason, Required: true})
		}
		return cs
	}
	return &ChipSummary{Document: string(d.Kind()), Passed: d.Passed()}
}

// faceReference asks the bank for the holder's enrolled face reference
// (a document that carries none). No source, or no reference for this
// holder, declines with no_face_reference.
func (s *session) faceReference(ctx context.Context, doc document.Document) ([]byte, []Reason, error) {
	src := s.m.opts.FaceReferences
	if src == nil {
		return nil, []Reason{reason("no_face_reference")}, nil
	}
	ref, err := runStep(ctx, s, s.p.AuthorizeTimeout, func(c context.Context) ([]byte, error) {
		return src.FaceReference(c, doc.Holder())
	})
	var ab *abort
	switch {
	case errors.As(err, &ab):
		return nil, nil, err
	case errors.Is(err, ErrNoFaceReference) || (err == nil && len(ref) == 0):
		return nil, []Reason{reason("no_face_reference")}, nil
	case err != nil:
		s.m.log.Warn("face reference unavailable", "tx", s.req.ID, "err", err)
		return nil, []Reason{reason("face_reference_unavailable")}, nil
	}
	return ref, nil, nil
}
