package camera

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"gocv.io/x/gocv"
)

// ErrNoCue means a Cue names no position of the source (or the source has
// none: only the simulated camera can jump).
var ErrNoCue = errors.New("camera: no such cue")

// cueName: cue names are short identifiers (config keys, log fields).
var cueName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// cuer is a source that can jump to a named position of its media.
type cuer interface{ Cue(name string) error }

// Cue makes the simulated camera jump to the position of its media named
// name (Spec.Cues) before its next frame: a test or a soak run shows the
// face step a chosen part of the video (the smile as soon as the smile
// step starts) instead of waiting for the loop to come round to it. The
// frames stay real frames of the video, read, paced and analysed as
// always. Sources that are not "sim" answer ErrNoCue.
func (p *Pump) Cue(name string) error {
	c, ok := p.src.(cuer)
	if !ok {
		return fmt.Errorf("%w: %s cannot jump", ErrNoCue, p.describe)
	}
	return c.Cue(name)
}

// Cue records the jump; the capture goroutine makes it at its next Read.
func (s *pacedSource) Cue(name string) error {
	at, ok := s.spec.Cues[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoCue, name)
	}
	s.cueMu.Lock()
	s.cue, s.cued = at, true
	s.cueMu.Unlock()
	return nil
}

// takeCue returns a pending jump, once.
func (s *pacedSource) takeCue() (time.Duration, bool) {
	s.cueMu.Lock()
	defer s.cueMu.Unlock()
	at, ok := s.cue, s.cued
	s.cued = false
	return at, ok
}

// followCue makes a pending jump, or jumps back to the start of the
// cued segment once it has played for Spec.CueLength.
func (s *pacedSource) followCue() error {
	f, isFile := s.inner.(*fileSource)
	if !isFile {
		return nil
	}
	at, ok := s.takeCue()
	switch {
	case ok:
		s.segStart, s.inSeg = at, true
	case s.inSeg && s.spec.CueLength > 0 && s.segLeft <= 0:
		at = s.segStart
	default:
		if s.inSeg {
			s.segLeft--
		}
		return nil
	}
	if err := f.seek(at); err != nil {
		return err
	}
	s.segLeft = int(s.spec.CueLength.Seconds() * f.nominalFPS())
	return nil
}

// seek positions a video file at media time at: the next Read returns the
// frame shown at that time. OpenCV's FFmpeg backend seeks to the key frame
// before and decodes forward, so the position is frame-exact.
func (s *fileSource) seek(at time.Duration) error {
	if !s.opened || s.isDir || s.vc == nil {
		return fmt.Errorf("%w: %s is not an open video file", ErrNoCue, s.Describe())
	}
	frame := 0.0
	if s.fps > 0 {
		frame = float64(at) / float64(time.Second) * s.fps
	}
	s.vc.Set(gocv.VideoCapturePosFrames, frame)
	return nil
}

func (s Spec) validateCues() error {
	if s.CueLength < 0 || s.CueLength > time.Hour {
		return invalid("sim: cue length %s out of range [0, 1h]", s.CueLength)
	}
	if len(s.Cues) == 0 {
		return nil
	}
	if s.Kind != KindSim {
		return invalid("%s: cues are for the simulated camera only", s.Kind)
	}
	for name, at := range s.Cues {
		if !cueName.MatchString(name) {
			return invalid("sim: cue name %q (want lower-case letters, digits and _)", name)
		}
		if at < 0 || at > 24*time.Hour {
			return invalid("sim: cue %s at %s out of range [0, 24h]", name, at)
		}
	}
	return nil
}
