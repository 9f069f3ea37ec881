package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"gocv.io/x/gocv"
)

// videoSource captures from a live backend: a V4L2 device or a GStreamer
// pipeline. A failed read is a failure (unplugged device, dead pipeline),
// never an end of stream: the Pump reopens it.
type videoSource struct {
	spec Spec
	log  *slog.Logger
	vc   *gocv.VideoCapture
	// what the backend granted, read back after open
	width, height int
	fps           float64
}

var _ Source = (*videoSource)(nil)

func (s *videoSource) Describe() string {
	var d string
	if s.spec.Kind == KindGStreamer {
		d = "gstreamer:" + s.spec.Pipeline
	} else {
		d = "v4l2:" + s.spec.Device
	}
	if s.vc != nil && s.width > 0 {
		d += fmt.Sprintf(" %dx%d@%.4g", s.width, s.height, s.fps)
	}
	return d
}

func (s *videoSource) Open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &OpenError{Source: s.Describe(), Err: err}
	}
	_ = s.Close()
	var (
		vc  *gocv.VideoCapture
		err error
	)
	switch s.spec.Kind {
	case KindGStreamer:
		vc, err = gocv.VideoCaptureFileWithAPI(s.spec.Pipeline, gocv.VideoCaptureGstreamer)
	default:
		idx, path, perr := parseDevice(s.spec.Device)
		if perr != nil {
			return &OpenError{Source: s.Describe(), Err: perr}
		}
		if s.spec.USB != nil {
			// Checked before each open: a device swapped for another (or
			// for a software loopback camera) is refused, and the Pump
			// retries until the pinned camera is back. A device could be
			// swapped between this check and the open below; that needs
			// physical access at that very moment and the identity is
			// re-checked on every reopen.
			root := s.spec.SysfsRoot
			if root == "" {
				root = "/sys"
			}
			if err := checkUSB(root, s.spec.Device, *s.spec.USB); err != nil {
				return &OpenError{Source: s.Describe(), Err: err}
			}
		}
		if path != "" {
			// gocv's own error only says "Error opening file"; a stat says
			// whether the device is missing (unplugged) or not a device.
			fi, serr := os.Stat(path)
			if serr != nil {
				return &OpenError{Source: s.Describe(), Err: serr}
			}
			if fi.Mode()&os.ModeCharDevice == 0 {
				return &OpenError{Source: s.Describe(), Err: fmt.Errorf("%s is not a character device", path)}
			}
			vc, err = gocv.VideoCaptureFileWithAPI(path, gocv.VideoCaptureV4L2)
		} else {
			vc, err = gocv.VideoCaptureDeviceWithAPI(idx, gocv.VideoCaptureV4L2)
		}
	}
	if err == nil && !vc.IsOpened() {
		err = errors.New("backend did not open")
	}
	if err != nil {
		_ = vc.Close() // the C++ object exists even when opening failed
		return &OpenError{Source: s.Describe(), Err: err}
	}
	if s.spec.Kind == KindV4L2 {
		// Requests only: the driver picks the nearest mode it supports.
		if s.spec.Width > 0 {
			vc.Set(gocv.VideoCaptureFrameWidth, float64(s.spec.Width))
		}
		if s.spec.Height > 0 {
			vc.Set(gocv.VideoCaptureFrameHeight, float64(s.spec.Height))
		}
		if s.spec.FPS > 0 {
			vc.Set(gocv.VideoCaptureFPS, s.spec.FPS)
		}
	}
	s.vc = vc
	s.width = int(vc.Get(gocv.VideoCaptureFrameWidth))
	s.height = int(vc.Get(gocv.VideoCaptureFrameHeight))
	s.fps = vc.Get(gocv.VideoCaptureFPS)
	if s.spec.Kind == KindV4L2 && ((s.spec.Width > 0 && s.width != s.spec.Width) || (s.spec.Height > 0 && s.height != s.spec.Height)) {
		s.log.Warn("camera: device granted a different size", "source", s.Describe(),
			"requested", fmt.Sprintf("%dx%d", s.spec.Width, s.spec.Height))
	}
	return nil
}

func (s *videoSource) Read(dst *gocv.Mat) error {
	if s.vc == nil {
		return ErrClosed
	}
	if !s.vc.Read(dst) || dst.Empty() {
		return fmt.Errorf("%s: %w", s.Describe(), ErrNoFrame)
	}
	return nil
}

func (s *videoSource) Close() error {
	if s.vc == nil {
		return nil
	}
	err := s.vc.Close()
	s.vc = nil
	return err
}

func (s *videoSource) nominalFPS() float64 { return s.fps }
