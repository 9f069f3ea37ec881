package face

import (
	"context"
	"fmt"
	"os"
	"time"

	"gocv.io/x/gocv"
	"kiosk/drivers/camera"
)

// SourceFrames is a FrameSource that reads every frame of a camera.Source
// in turn, as fast as the caller asks (no pacing, no drops): for running
// the face step over a video file or an image folder in tests and lab
// tools. Frame times are the media's own clock — the first frame's read
// time plus n/FPS — so timeouts mean the same on a slow or fast machine.
type SourceFrames struct {
	src   camera.Source
	fps   float64
	seq   uint64
	start time.Time
	open  bool
}

var _ FrameSource = (*SourceFrames)(nil)

// NewSourceFrames wraps src; fps sets the frame clock (≤ 0 means 25).
func NewSourceFrames(src camera.Source, fps float64) *SourceFrames {
	if fps <= 0 {
		fps = 25
	}
	return &SourceFrames{src: src, fps: fps}
}

// Next opens the source on first use and returns its next frame; at the
// end of a non-looping file it returns camera.ErrEndOfStream.
func (s *SourceFrames) Next(ctx context.Context, _ uint64) (*camera.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.open {
		if err := s.src.Open(ctx); err != nil {
			return nil, fmt.Errorf("frames: %w", err)
		}
		s.open, s.start = true, time.Now()
	}
	m := gocv.NewMat()
	if err := s.src.Read(&m); err != nil {
		m.Close()
		return nil, err
	}
	s.seq++
	at := s.start.Add(time.Duration(float64(s.seq-1) / s.fps * float64(time.Second)))
	return &camera.Frame{Seq: s.seq, Time: at, Mat: m}, nil
}

// Close closes the source.
func (s *SourceFrames) Close() error {
	s.open = false
	return s.src.Close()
}

// VideoFPS returns a video file's nominal frame rate, or 25 for a folder,
// an unreadable file or an implausible rate.
func VideoFPS(path string) float64 {
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		return 25
	}
	vc, err := gocv.VideoCaptureFileWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil {
		return 25
	}
	defer vc.Close()
	if f := vc.Get(gocv.VideoCaptureFPS); f > 0 && f <= 240 {
		return f
	}
	return 25
}
