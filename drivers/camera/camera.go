// Package camera captures frames for the kiosk through OpenCV (gocv): V4L2
// devices, GStreamer pipelines, video files, folders of still images, and a
// simulated camera that replays a file in real time.
//
// A Source is one capture backend; a Pump owns a Source, keeps only the
// latest frame (a slow consumer never stalls capture), measures the frame
// rate and reopens the source with backoff when it fails or is unplugged.
//
// Every gocv.Mat handed out by this package is owned by the receiver, who
// must Close it (Frame.Close). Mats live in C memory the Go GC cannot see.
package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"gocv.io/x/gocv"
)

// Sentinel errors; callers branch with errors.Is.
var (
	// ErrClosed is returned by Source.Read on a source that is not open and
	// by Pump.Next/Latest once the pump has stopped.
	ErrClosed = errors.New("camera: closed")
	// ErrEndOfStream means a non-looping file or folder has no more frames.
	ErrEndOfStream = errors.New("camera: end of stream")
	// ErrNoFrame means the backend returned no image (an unplugged device,
	// a broken pipeline or an undecodable file).
	ErrNoFrame = errors.New("camera: no frame")
	// ErrInvalidSpec means a Spec cannot describe any source.
	ErrInvalidSpec = errors.New("camera: invalid spec")
)

// OpenError reports that a source could not be opened.
type OpenError struct {
	Source string // Describe() of the source
	Err    error
}

func (e *OpenError) Error() string { return "camera: open " + e.Source + ": " + e.Err.Error() }
func (e *OpenError) Unwrap() error { return e.Err }

// Frame is one captured image. The receiver owns Mat and must Close it.
type Frame struct {
	Seq  uint64    // pump sequence number, strictly increasing, never reset by reopens
	Time time.Time // when the frame was read from the source
	Mat  gocv.Mat  // BGR, 8 bits per channel

	closed bool
}

// Close releases the frame's Mat. It is safe to call more than once.
func (f *Frame) Close() error {
	if f == nil || f.closed {
		return nil
	}
	f.closed = true
	return f.Mat.Close()
}

// Source is a capture backend. Read blocks until the next frame (fills dst)
// or fails. A Source is used by one goroutine at a time; after Close it may
// be opened again (the Pump does so to recover from failures).
type Source interface {
	// Open starts capture. For paced sources ("sim") ctx also bounds the
	// waits between frames: once it is done, Read returns its error.
	Open(ctx context.Context) error
	// Read fills dst with the next frame (8-bit BGR).
	Read(dst *gocv.Mat) error
	Close() error
	Describe() string
}

// Kinds of source accepted by NewSource.
const (
	KindV4L2      = "v4l2"
	KindGStreamer = "gstreamer"
	KindFile      = "file"
	KindSim       = "sim"
)

// Spec says what to open.
type Spec struct {
	// Kind is "v4l2" (Device: index "0" or "/dev/video0"), "gstreamer"
	// (Pipeline, ending in appsink), "file" (Path: video file or folder of
	// images) or "sim" (Path, replayed in real time, looping).
	Kind                   string
	Device, Pipeline, Path string
	// Width, Height and FPS are requested from devices (0 = backend
	// default). For "sim", FPS overrides the file's nominal rate; files and
	// folders are not resized.
	Width, Height int
	FPS           float64
	// Loop restarts a "file" source at its end ("sim" always loops).
	Loop bool
	// Cues ("sim" of a video file only) name positions in the media that
	// Pump.Cue jumps to, e.g. a smile for the face step's smile phase.
	Cues map[string]time.Duration
	// CueLength, when set, makes a cued part a segment: after playing
	// for this long it starts again from its cue, until the next cue
	// (a smile that a loaded machine missed comes round again soon).
	CueLength time.Duration
	// USB pins a "v4l2" device to a USB identity: Open refuses (with an
	// *IdentityError) a device whose sysfs entry shows another vendor,
	// product or (when pinned) serial, or no USB device at all, such as a
	// loopback camera fed by software. Production configurations set it.
	USB *USBID
	// SysfsRoot is where sysfs is mounted ("" means /sys); tests point it
	// at a tree of their own.
	SysfsRoot string
	// Logger receives warnings such as skipped unreadable images; nil
	// discards them.
	Logger *slog.Logger
}

// NewSource validates spec and returns the matching backend. Nothing is
// opened yet: a missing file or device is reported by Open as *OpenError,
// so a Pump can wait for it to appear.
func NewSource(spec Spec) (Source, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	log := spec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch spec.Kind {
	case KindV4L2, KindGStreamer:
		return &videoSource{spec: spec, log: log}, nil
	case KindFile:
		return &fileSource{spec: spec, log: log}, nil
	default: // KindSim, checked by validate
		inner := spec
		inner.Loop = true
		return &pacedSource{inner: &fileSource{spec: inner, log: log}, spec: spec}, nil
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

func (s Spec) validate() error {
	if s.Width < 0 || s.Height < 0 {
		return invalid("negative size %dx%d", s.Width, s.Height)
	}
	if s.Width > 1<<15 || s.Height > 1<<15 {
		return invalid("size %dx%d too large", s.Width, s.Height)
	}
	if math.IsNaN(s.FPS) || math.IsInf(s.FPS, 0) || s.FPS < 0 || s.FPS > 1000 {
		return invalid("fps %v out of range [0, 1000]", s.FPS)
	}
	if err := s.validateCues(); err != nil {
		return err
	}
	if s.USB != nil && s.Kind != KindV4L2 {
		return invalid("%s: a USB identity pins only v4l2 devices", s.Kind)
	}
	switch s.Kind {
	case KindV4L2:
		if _, _, err := parseDevice(s.Device); err != nil {
			return err
		}
		if u := s.USB; u != nil && (!ValidUSBHex(u.Vendor) || !ValidUSBHex(u.Product)) {
			return invalid("v4l2: USB vendor %q and product %q must be 4 hex digits", u.Vendor, u.Product)
		}
	case KindGStreamer:
		p := strings.TrimSpace(s.Pipeline)
		if p == "" {
			return invalid("gstreamer: empty Pipeline")
		}
		// OpenCV pulls frames from an appsink; without one the open fails
		// with no useful message, so say it here.
		if !strings.Contains(p, "appsink") {
			return invalid("gstreamer: pipeline must end in appsink: %q", p)
		}
	case KindFile, KindSim:
		if strings.TrimSpace(s.Path) == "" {
			return invalid("%s: empty Path", s.Kind)
		}
		if strings.ContainsRune(s.Path, 0) {
			return invalid("%s: Path contains NUL", s.Kind)
		}
	case "":
		return invalid("empty Kind (want v4l2, gstreamer, file or sim)")
	default:
		return invalid("unknown Kind %q (want v4l2, gstreamer, file or sim)", s.Kind)
	}
	return nil
}

// parseDevice accepts a non-negative index ("0") or a device path
// ("/dev/video0", "/dev/v4l/by-id/...").
func parseDevice(dev string) (index int, path string, err error) {
	dev = strings.TrimSpace(dev)
	switch {
	case dev == "":
		return 0, "", invalid("v4l2: empty Device")
	case strings.HasPrefix(dev, "/"):
		if strings.ContainsRune(dev, 0) {
			return 0, "", invalid("v4l2: Device contains NUL")
		}
		return -1, dev, nil
	default:
		n, err := strconv.Atoi(dev)
		if err != nil || n < 0 || n > 4096 {
			return 0, "", invalid("v4l2: Device %q is neither an index nor an absolute path", dev)
		}
		return n, "", nil
	}
}

// nominalRater is implemented by sources that know their native frame rate.
type nominalRater interface{ nominalFPS() float64 }
