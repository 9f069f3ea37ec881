package face

import (
	"testing"
	"time"

	"kiosk/firmware/session"
)

// The shopper's extensions move the step's end (what the session offers
// and shows) and nothing else: the phase in which more time is taken
// ends its configured time after it, a later phase keeps the longer
// limits, and the whole step's limit moves by the same amount.
func TestExtendMovesTheEnd(t *testing.T) {
	cfg := DefaultConfig() // match 10 s, smile 10 s
	var got []session.FaceProgress
	r := &run{cfg: cfg, progress: func(p session.FaceProgress) { got = append(got, p) }}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	r.extend(at(1)) // no frame yet: nothing to extend
	if !r.deadline().IsZero() || r.extra != 0 {
		t.Fatalf("before the first frame: end %v, extra %v", r.deadline(), r.extra)
	}
	r.phaseStart, r.stepStart = t0, t0
	r.emit("match", GuideLookAtCamera)
	for _, c := range []struct {
		name  string
		do    func()
		end   time.Time
		extra time.Duration
	}{
		{"match phase", func() {}, at(10), 0},
		{"more time 8 s into the match", func() { r.extend(at(8)) }, at(18), 8 * time.Second},
		{"the smile begins at 12 s", func() { r.phase, r.phaseStart = phaseSmile, at(12) }, at(28), 8 * time.Second},
		{"more time at 26 s", func() { r.extend(at(26)) }, at(36), 16 * time.Second},
		{"asked again at once: the end is already that far", func() { r.extend(at(26)) }, at(36), 16 * time.Second},
	} {
		c.do()
		if e := r.deadline(); !e.Equal(c.end) || r.extra != c.extra {
			t.Fatalf("%s: end %v, extra %v; want %v, %v", c.name, e.Sub(t0), r.extra, c.end.Sub(t0), c.extra)
		}
	}
	// Each new end was reported to the session.
	var ends []time.Duration
	for _, p := range got {
		ends = append(ends, p.Until.Sub(t0))
	}
	if len(ends) != 3 || ends[0] != 10*time.Second || ends[1] != 18*time.Second || ends[2] != 36*time.Second {
		t.Fatalf("reported ends %v, want 10s 18s 36s", ends)
	}
	if r.d.Extended != 16*time.Second {
		t.Fatalf("decision records %v extended, want 16s", r.d.Extended)
	}
}
