package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gocv.io/x/gocv"
)

// fileCheckEvery is how often a playing video file is stat'ed. FFmpeg keeps
// its descriptor, so a deleted or replaced file would otherwise play on
// unnoticed; this is how "unplugging" a file source is detected.
const fileCheckEvery = 200 * time.Millisecond

// fileSource reads a video file (through FFmpeg) or a folder of still
// images, as fast as the caller reads.
type fileSource struct {
	spec Spec
	log  *slog.Logger

	// video file
	vc        *gocv.VideoCapture
	info      os.FileInfo // identity of the file when opened
	lastCheck time.Time
	fps       float64

	// folder of images
	files  []string
	next   int
	warned map[string]bool
	isDir  bool
	opened bool
}

var _ Source = (*fileSource)(nil)

// imageExts are the still-image types a folder source plays.
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".pgm": true}

func (s *fileSource) Describe() string {
	kind := "file:"
	if s.isDir {
		kind = "folder:"
	}
	return kind + s.spec.Path
}

func (s *fileSource) Open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &OpenError{Source: s.Describe(), Err: err}
	}
	_ = s.Close()
	fi, err := os.Stat(s.spec.Path)
	if err != nil {
		return &OpenError{Source: s.Describe(), Err: err}
	}
	s.isDir = fi.IsDir()
	if s.isDir {
		err = s.openFolder()
	} else {
		err = s.openVideo()
	}
	if err != nil {
		return &OpenError{Source: s.Describe(), Err: err}
	}
	s.opened = true
	return nil
}

func (s *fileSource) openVideo() error {
	fi, err := os.Stat(s.spec.Path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", s.spec.Path)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%s is empty", s.spec.Path)
	}
	vc, err := gocv.VideoCaptureFileWithAPI(s.spec.Path, gocv.VideoCaptureFFmpeg)
	if err == nil && !vc.IsOpened() {
		err = errors.New("FFmpeg did not open it")
	}
	if err != nil {
		_ = vc.Close()
		return fmt.Errorf("not a readable video: %w", err)
	}
	s.vc, s.info, s.lastCheck = vc, fi, time.Now()
	s.fps = vc.Get(gocv.VideoCaptureFPS)
	return nil
}

func (s *fileSource) openFolder() error {
	entries, err := os.ReadDir(s.spec.Path)
	if err != nil {
		return err
	}
	var files []string // ReadDir sorts by name: lexical order
	for _, e := range entries {
		if e.Type().IsRegular() && imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			files = append(files, filepath.Join(s.spec.Path, e.Name()))
		}
	}
	if len(files) == 0 {
		return errors.New("folder holds no *.jpg, *.jpeg, *.png or *.pgm file")
	}
	s.files, s.next, s.warned = files, 0, map[string]bool{}
	// Find the first decodable image now, so that a folder of junk fails
	// at open rather than at the first read.
	for i, f := range files {
		if m := gocv.IMRead(f, gocv.IMReadColor); !m.Empty() {
			_ = m.Close()
			s.next = i
			return nil
		} else {
			_ = m.Close()
			s.warn(f)
		}
	}
	return errors.New("folder holds no readable image")
}

func (s *fileSource) warn(f string) {
	if !s.warned[f] {
		s.warned[f] = true
		s.log.Warn("camera: skipping unreadable image", "file", f)
	}
}

func (s *fileSource) Read(dst *gocv.Mat) error {
	if !s.opened {
		return ErrClosed
	}
	if s.isDir {
		return s.readFolder(dst)
	}
	return s.readVideo(dst)
}

func (s *fileSource) readVideo(dst *gocv.Mat) error {
	if time.Since(s.lastCheck) >= fileCheckEvery {
		if err := s.checkFile(); err != nil {
			return err
		}
	}
	if s.vc.Read(dst) && !dst.Empty() {
		return nil
	}
	// No frame: the end, unless the file changed under us.
	if err := s.checkFile(); err != nil {
		return err
	}
	if !s.spec.Loop {
		return ErrEndOfStream
	}
	// Reopen rather than seek: FFmpeg seeks are unreliable on some
	// containers, and reopening re-checks the file itself.
	_ = s.vc.Close()
	s.vc = nil
	if err := s.openVideo(); err != nil {
		s.opened = false
		return fmt.Errorf("%s: reopen to loop: %w", s.Describe(), err)
	}
	if s.vc.Read(dst) && !dst.Empty() {
		return nil
	}
	return fmt.Errorf("%s: no frame after looping: %w", s.Describe(), ErrNoFrame)
}

// checkFile fails if the file was removed, replaced or changed in size or
// time since it was opened.
func (s *fileSource) checkFile() error {
	s.lastCheck = time.Now()
	fi, err := os.Stat(s.spec.Path)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", s.Describe(), ErrNoFrame, err)
	}
	if !os.SameFile(fi, s.info) || fi.Size() != s.info.Size() || !fi.ModTime().Equal(s.info.ModTime()) {
		return fmt.Errorf("%s: %w: file replaced or modified while playing", s.Describe(), ErrNoFrame)
	}
	return nil
}

func (s *fileSource) readFolder(dst *gocv.Mat) error {
	for tried := 0; tried < len(s.files); tried++ {
		if s.next >= len(s.files) {
			if !s.spec.Loop {
				return ErrEndOfStream
			}
			s.next = 0
		}
		f := s.files[s.next]
		s.next++
		m := gocv.IMRead(f, gocv.IMReadColor)
		if m.Empty() {
			_ = m.Close()
			s.warn(f)
			continue
		}
		m.CopyTo(dst)
		_ = m.Close()
		return nil
	}
	if !s.spec.Loop && s.next >= len(s.files) {
		return ErrEndOfStream
	}
	return fmt.Errorf("%s: %w: no readable image left", s.Describe(), ErrNoFrame)
}

func (s *fileSource) Close() error {
	s.opened = false
	s.files = nil
	if s.vc != nil {
		err := s.vc.Close()
		s.vc = nil
		return err
	}
	return nil
}

// nominalFPS is the container's frame rate for videos, 0 for folders.
func (s *fileSource) nominalFPS() float64 {
	if s.isDir {
		return 0
	}
	return s.fps
}
