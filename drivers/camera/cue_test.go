package camera

import (
	"context"
	"errors"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"kiosk/internal/testmedia"
)

// After a Cue, the simulated camera's next frame is the video's frame at
// the cue's media time: the same pixels a plain file source decodes there.
func TestSimCue(t *testing.T) {
	checkMats(t)
	video := testmedia.Path(t, "franck.mp4")
	const at = 17 * time.Second
	ctx := context.Background()

	// The reference: read the file up to that frame.
	ref, err := NewSource(Spec{Kind: KindFile, Path: video})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want, first := gocv.NewMat(), gocv.NewMat()
	defer want.Close()
	defer first.Close()
	target := int(at.Seconds() * ref.(*fileSource).nominalFPS())
	for i := 0; i <= target; i++ {
		if err := ref.Read(&want); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i == 0 {
			want.CopyTo(&first)
		}
	}

	const segment = 200 * time.Millisecond
	src, err := NewSource(Spec{Kind: KindSim, Path: video, FPS: 200, Cues: map[string]time.Duration{"smile": at}, CueLength: segment})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := NewPump(src, PumpOptions{})
	if err := p.Cue("frown"); !errors.Is(err, ErrNoCue) {
		t.Errorf("unknown cue: %v, want ErrNoCue", err)
	}
	got := gocv.NewMat()
	defer got.Close()
	for range 3 {
		if err := src.Read(&got); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Cue("smile"); err != nil {
		t.Fatal(err)
	}
	if err := src.Read(&got); err != nil {
		t.Fatal(err)
	}
	if d := gocv.Norm(got, gocv.NormInf); d == 0 {
		t.Fatal("blank frame after the cue")
	}
	diff := func(a, b gocv.Mat) float64 {
		m := gocv.NewMat()
		defer m.Close()
		gocv.AbsDiff(a, b, &m)
		return m.Mean().Val1
	}
	if d := diff(got, want); d > 1 {
		t.Errorf("frame after the cue differs from the video's frame at %s by %.2f (mean abs)", at, d)
	}
	if d := diff(first, want); d <= 1 {
		t.Fatalf("test is blind: the first frame and the frame at %s differ by only %.2f", at, d)
	}
	// The segment plays for CueLength, then starts again from the cue.
	frames := int(segment.Seconds() * ref.(*fileSource).nominalFPS())
	for i := range frames {
		if err := src.Read(&got); err != nil {
			t.Fatal(err)
		}
		if i == frames-1 {
			if d := diff(got, want); d <= 1 {
				t.Errorf("segment's last frame is its first (%.2f): no frame advanced", d)
			}
		}
	}
	if err := src.Read(&got); err != nil {
		t.Fatal(err)
	}
	if d := diff(got, want); d > 1 {
		t.Errorf("after %s the segment did not start again from its cue (differs by %.2f)", segment, d)
	}
}

func TestCueSpec(t *testing.T) {
	for _, s := range []Spec{
		{Kind: KindFile, Path: "x.mp4", Cues: map[string]time.Duration{"smile": time.Second}},
		{Kind: KindSim, Path: "x.mp4", Cues: map[string]time.Duration{"Smile!": time.Second}},
		{Kind: KindSim, Path: "x.mp4", Cues: map[string]time.Duration{"smile": -time.Second}},
		{Kind: KindSim, Path: "x.mp4", CueLength: -time.Second},
	} {
		if _, err := NewSource(s); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: %v, want ErrInvalidSpec", s, err)
		}
	}
	p := NewPump(&fileSource{spec: Spec{Kind: KindFile, Path: "x"}}, PumpOptions{})
	if err := p.Cue("smile"); !errors.Is(err, ErrNoCue) {
		t.Errorf("file source: %v, want ErrNoCue", err)
	}
}
