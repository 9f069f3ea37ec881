package camera

import (
	"context"
	"fmt"
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// defaultSimFPS paces folders of stills, which have no rate of their own.
const defaultSimFPS = 25

// pacedSource is the simulated camera: a looping file or folder delivered
// in real time at its nominal rate, as a live camera would.
type pacedSource struct {
	inner Source
	spec  Spec

	// ctx is the one given to Open: it bounds the waits between frames so
	// that a pump being stopped is not held up by the pacing.
	ctx      context.Context
	interval time.Duration
	due      time.Time

	// A jump asked for by Cue (another goroutine), made by Read.
	cueMu sync.Mutex
	cue   time.Duration
	cued  bool
	// The segment being played since the last cue (Spec.CueLength):
	// where it starts and how many frames are left of it.
	segStart time.Duration
	segLeft  int
	inSeg    bool
}

var _ Source = (*pacedSource)(nil)

func (s *pacedSource) Describe() string {
	d := "sim:" + s.inner.Describe()
	if s.interval > 0 {
		d += fmt.Sprintf(" @%.4gfps", float64(time.Second)/float64(s.interval))
	}
	return d
}

func (s *pacedSource) Open(ctx context.Context) error {
	if err := s.inner.Open(ctx); err != nil {
		return err
	}
	fps := s.spec.FPS
	if fps <= 0 {
		if r, ok := s.inner.(nominalRater); ok {
			fps = r.nominalFPS()
		}
	}
	if fps <= 0 || fps > 1000 { // no rate, or a container's bogus one
		fps = defaultSimFPS
	}
	s.ctx = ctx
	s.interval = time.Duration(float64(time.Second) / fps)
	s.due = time.Time{}
	return nil
}

func (s *pacedSource) Read(dst *gocv.Mat) error {
	if s.ctx == nil {
		return ErrClosed
	}
	if err := s.followCue(); err != nil {
		return err
	}
	// Decode first, then wait: decoding time is absorbed by the interval.
	if err := s.inner.Read(dst); err != nil {
		return err
	}
	now := time.Now()
	switch {
	case s.due.IsZero():
		s.due = now // first frame goes out at once
	case now.Sub(s.due) > s.interval:
		s.due = now // fell behind (slow decode, paused process): do not burst
	}
	if wait := s.due.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return s.ctx.Err()
		}
	}
	s.due = s.due.Add(s.interval)
	return nil
}

func (s *pacedSource) Close() error {
	s.ctx = nil
	return s.inner.Close()
}

func (s *pacedSource) nominalFPS() float64 {
	if s.interval <= 0 {
		return 0
	}
	return float64(time.Second) / float64(s.interval)
}
