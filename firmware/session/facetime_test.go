package session

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"kiosk/firmware/emrtd"
)

// VerifyExtendable makes fakeFace a FaceExtender. With phase set it acts
// as a verifier whose match phase lasts phase, reports its end and
// gives the phase its whole time again on each value of more; it never
// decides (no face in view), so it ends as a timeout.
func (f *fakeFace) VerifyExtendable(ctx context.Context, ref []byte, progress func(FaceProgress), more <-chan struct{}) (FaceResult, error) {
	if f.phase == 0 {
		return f.Verify(ctx, ref, progress)
	}
	end := time.Now().Add(f.phase)
	progress(FaceProgress{Stage: "match", Guidance: "look_at_camera", Until: end})
	t := time.NewTimer(f.phase)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return FaceResult{}, ctx.Err()
		case <-more:
			f.extended++
			end = time.Now().Add(f.phase)
			t.Reset(f.phase)
			progress(FaceProgress{Stage: "match", Guidance: "look_at_camera", Until: end})
		case <-t.C:
			return FaceResult{Reason: "no_face"}, nil
		}
	}
}

// The face step offers more time before the verifier's phase ends (half
// way through a phase shorter than twice the warning), the extension
// reaches the verifier, which gives its phase its whole time again, the
// offers are counted, and the step still ends as a decline when no face
// comes: more time decides nothing.
func TestFaceStepMoreTime(t *testing.T) {
	const phase = 800 * time.Millisecond
	face := &fakeFace{phase: phase}
	var mu sync.Mutex
	var offers, extended []TimeOffer
	var progress []FaceProgress
	h := newHarnessWith(t, &fakeChip{reports: []*emrtd.Report{goodReport()}}, face, Authorization{Approved: true}, func(o *Options) {
		o.Policy.TimeExtensions = 2
		o.Policy.MoreTimeWarning = 15 * time.Second
		o.Policy.FaceTimeout = 30 * time.Second
		pub := o.Publish
		o.Publish = func(kind string, data any) {
			mu.Lock()
			switch v := data.(type) {
			case TimeOffer:
				if kind == "session.more_time" && v.Step == FaceMatch {
					offers = append(offers, v)
				} else if kind == "session.time_extended" {
					extended = append(extended, v)
				}
			case FaceProgress:
				progress = append(progress, v)
			}
			mu.Unlock()
			pub(kind, data)
		}
	})
	h.pay(t, "")
	h.m.CardPresent(true)
	h.expect(t, AwaitPassword)
	if err := h.m.EnterPassword(emrtd.Password{Kind: emrtd.CAN, Secret: "123456"}); err != nil {
		t.Fatal(err)
	}
	h.expect(t, FaceMatch)
	start := time.Now()
	if err := h.m.MoreTime(); err != ErrNoOffer {
		t.Fatalf("more time before an offer: %v", err)
	}
	// Take the offer twice; the third never comes.
	var took time.Time
	for i := range 2 {
		waitFor(t, func() bool { return h.m.Status().MoreTime != nil })
		o := h.m.Status().MoreTime
		if o.Step != FaceMatch || o.Left != 2-i || time.Until(o.Until) > phase {
			t.Fatalf("offer %d: %+v", i, o)
		}
		took = time.Now()
		if err := h.m.MoreTime(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(extended) > i })
	}
	o := h.outcome(t)
	after := time.Since(took)
	if o.Approved || !slices.Contains(codes(o), "no_face") {
		t.Fatalf("outcome %+v, want a no_face decline", o)
	}
	if face.extended != 2 {
		t.Fatalf("the verifier was extended %d times, want 2", face.extended)
	}
	// The last extension gave the phase its whole time again.
	if after < phase-50*time.Millisecond {
		t.Fatalf("step ended %v after the last extension, want about %v", after, phase)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(offers); n != 2 {
		t.Fatalf("%d offers, want 2 (then none left): %+v", n, offers)
	}
	// The screen's countdown follows the verifier's end, which moved.
	var ends []time.Time
	for _, p := range progress {
		if !p.Until.IsZero() && (len(ends) == 0 || !p.Until.Equal(ends[len(ends)-1])) {
			ends = append(ends, p.Until)
		}
	}
	if len(ends) != 3 || !ends[1].After(ends[0]) || !ends[2].After(ends[1]) {
		t.Fatalf("published ends %v, want three, each later", ends)
	}
	t.Logf("face step: %v in all, %v after the last extension", time.Since(start).Round(time.Millisecond), after.Round(time.Millisecond))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition never met")
}
