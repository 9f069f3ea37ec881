package camera

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiosk/internal/testmedia"
)

func newTestPump(t *testing.T, spec Spec, opts PumpOptions) (*Pump, *stateLog) {
	t.Helper()
	src, err := NewSource(spec)
	if err != nil {
		t.Fatal(err)
	}
	states := &stateLog{}
	if opts.OnState == nil {
		opts.OnState = states.add
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t.Output())
	}
	return NewPump(src, opts), states
}

// TestPumpSim runs the simulated camera on real video: right size,
// increasing Seq, and a measured rate near the file's 24 fps.
func TestPumpSim(t *testing.T) {
	path := testmedia.Path(t, "franck.mp4")
	checkMats(t)
	checkGoroutines(t)
	p, states := newTestPump(t, Spec{Kind: KindSim, Path: path}, PumpOptions{})
	if st := p.Status(); st.State != StateDown || st.Detail != "not started" {
		t.Errorf("status before Run = %+v", st)
	}
	if _, ok := p.Latest(); ok {
		t.Error("Latest before Run returned a frame")
	}
	stop := runPump(t, p)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last uint64
	var got int
	// Time from the first frame: opening the file can be slow on a busy
	// machine, and that is not what this test measures.
	var start time.Time
	for start.IsZero() || time.Since(start) < 3*time.Second {
		f, err := p.Next(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		if f.Seq <= last {
			t.Errorf("Seq went from %d to %d", last, f.Seq)
		}
		if f.Mat.Cols() != 360 || f.Mat.Rows() != 288 || f.Mat.Channels() != 3 {
			t.Errorf("frame %d is %dx%dx%d, want 360x288x3", f.Seq, f.Mat.Cols(), f.Mat.Rows(), f.Mat.Channels())
		}
		if f.Time.IsZero() || f.Time.After(time.Now()) {
			t.Errorf("frame %d has time %v", f.Seq, f.Time)
		}
		last = f.Seq
		if start.IsZero() {
			start = time.Now()
		} else {
			got++
		}
		_ = f.Close()
		_ = f.Close() // idempotent
	}
	st := p.Status()
	t.Logf("status: %+v; consumer got %d frames", st, got)
	if st.State != StateOK {
		t.Errorf("state %q (%s), want ok", st.State, st.Detail)
	}
	if st.FPS < 24*0.6 || st.FPS > 24*1.125 {
		t.Errorf("measured %.2f fps, want about 24", st.FPS)
	}
	if st.Width != 360 || st.Height != 288 {
		t.Errorf("status size %dx%d", st.Width, st.Height)
	}
	if !strings.HasPrefix(st.Source, "sim:file:") || !strings.Contains(st.Source, "@24fps") {
		t.Errorf("status source %q", st.Source)
	}
	if st.Reopens != 0 {
		t.Errorf("%d reopens on a healthy source", st.Reopens)
	}
	// A consumer as fast as the source loses (almost) nothing; a frame or
	// two may go while the scheduler of a loaded 2-core machine is busy.
	if st.Drops > 3 {
		t.Errorf("%d drops with a fast consumer", st.Drops)
	}
	if got < 60 || got > 78 {
		t.Errorf("consumer got %d frames in 3 s, want about 72", got)
	}
	f, ok := p.Latest()
	if !ok {
		t.Fatal("Latest: no frame")
	}
	if f.Seq < last {
		t.Errorf("Latest Seq %d < last Next Seq %d", f.Seq, last)
	}
	_ = f.Close()

	stop()
	if _, err := p.Next(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Run returned = %v, want ErrClosed", err)
	}
	if _, ok := p.Latest(); ok {
		t.Error("Latest after Run returned a frame")
	}
	if st := p.Status(); st.State != StateDown || st.Detail != "stopped" {
		t.Errorf("status after stop: %s %s", st.State, st.Detail)
	}
	want := []string{"down:opening", "degraded:opened, waiting for the first frame", "ok:", "down:stopped"}
	if got := states.states(); !slices.Equal(got, want) {
		t.Errorf("OnState saw %q, want %q", got, want)
	}
	if err := p.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestPumpUnplug removes and then truncates the video under a running sim
// pump: it must go down with a reason and recover on its own once the file
// is back, counting each recovery.
func TestPumpUnplug(t *testing.T) {
	media := testmedia.Path(t, "franck.mp4")
	checkMats(t)
	checkGoroutines(t)
	path := filepath.Join(t.TempDir(), "camera.mp4")
	copyFile(t, media, path)
	p, states := newTestPump(t, Spec{Kind: KindSim, Path: path},
		PumpOptions{ReopenMin: 20 * time.Millisecond, ReopenMax: 200 * time.Millisecond})
	runPump(t, p)
	status := func(want string) func() bool { return func() bool { return p.Status().State == want } }
	waitFor(t, 5*time.Second, "first frames", status(StateOK))

	unplugs := []struct {
		name   string
		unplug func() error
		detail string
	}{
		{"remove", func() error { return os.Remove(path) }, "no such file"},
		{"truncate", func() error { return os.Truncate(path, 0) }, "is empty"},
	}
	for i, u := range unplugs {
		if err := u.unplug(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Second, u.name+": down", status(StateDown))
		// The reason given is first the failure, then the failing reopens.
		waitFor(t, 3*time.Second, u.name+": reopen attempts", func() bool {
			return strings.Contains(p.Status().Detail, u.detail)
		})
		frames := p.Status().Frames
		time.Sleep(300 * time.Millisecond)
		st := p.Status()
		if st.Frames != frames || st.State != StateDown {
			t.Errorf("%s: while unplugged frames went %d -> %d, state %s", u.name, frames, st.Frames, st.State)
		}
		copyFile(t, media, path)
		waitFor(t, 6*time.Second, u.name+": recovery", status(StateOK))
		st = p.Status()
		if st.Reopens != uint64(i+1) {
			t.Errorf("%s: %d reopens, want %d", u.name, st.Reopens, i+1)
		}
		t.Logf("%s: recovered: %+v", u.name, st)
	}
	f, err := p.Next(context.Background(), p.Status().Frames)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	var sawFailure, sawRetry bool
	for _, s := range states.states() {
		sawFailure = sawFailure || strings.HasPrefix(s, "down:source failed: ")
		sawRetry = sawRetry || strings.HasPrefix(s, "down:open failed (attempt ")
	}
	if !sawFailure || !sawRetry {
		t.Errorf("OnState never reported the failure and the retries: %q", states.states())
	}
}

// TestPumpGStreamerReopen: a pipeline that runs dry fails like an unplugged
// camera, and the pump keeps reopening it.
func TestPumpGStreamerReopen(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping GStreamer pipeline test")
	}
	checkMats(t)
	checkGoroutines(t)
	p, _ := newTestPump(t, Spec{Kind: KindGStreamer, Pipeline: "videotestsrc num-buffers=5 ! video/x-raw,width=160,height=120 ! videoconvert ! video/x-raw,format=BGR ! appsink"},
		PumpOptions{ReopenMin: 10 * time.Millisecond, ReopenMax: 20 * time.Millisecond})
	runPump(t, p)
	waitFor(t, 10*time.Second, "two reopens", func() bool { return p.Status().Reopens >= 2 })
	if st := p.Status(); st.Frames < 10 || st.Width != 160 || st.Height != 120 {
		t.Errorf("status %+v", st)
	}
}

// TestPumpLatestFrameWins feeds a slow consumer from a fast source: capture
// keeps its pace and the frames nobody took are counted as drops.
func TestPumpLatestFrameWins(t *testing.T) {
	path := testmedia.Path(t, "franck.mp4")
	checkMats(t)
	checkGoroutines(t)
	p, _ := newTestPump(t, Spec{Kind: KindFile, Path: path, Loop: true}, PumpOptions{})
	stop := runPump(t, p)

	ctx := context.Background()
	var last uint64
	taken := 0
	var captureFPS float64
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		f, err := p.Next(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		if f.Seq <= last {
			t.Fatalf("Seq went from %d to %d", last, f.Seq)
		}
		last = f.Seq
		taken++
		time.Sleep(40 * time.Millisecond) // a slow consumer: 25 fps at most
		_ = f.Close()
		captureFPS = max(captureFPS, p.Status().FPS)
	}
	stop()
	st := p.Status()
	t.Logf("status %+v; consumer took %d frames; peak capture %.0f fps", st, taken, captureFPS)
	if st.Drops == 0 {
		t.Error("no drops counted with a slow consumer")
	}
	// Capture did not wait for the consumer.
	if consumer := float64(taken) / 1.5; captureFPS < 4*consumer {
		t.Errorf("capture ran at %.0f fps, hardly faster than the %.0f fps consumer", captureFPS, consumer)
	}
	// Every captured frame was taken, dropped, or is the one left at the end.
	if d := int64(st.Frames) - int64(st.Drops) - int64(taken); d != 0 && d != 1 {
		t.Errorf("frames %d - drops %d - taken %d = %d, want 0 or 1", st.Frames, st.Drops, taken, d)
	}
}

// TestPumpEndOfStream: a non-looping folder ends; the pump stays up with
// its last frame until cancelled and Next reports the end.
func TestPumpEndOfStream(t *testing.T) {
	dir := imageFolder(t, "franck_01829.jpg", "franck_02045.jpg", "franck_02159.jpg")
	checkMats(t)
	checkGoroutines(t)
	p, _ := newTestPump(t, Spec{Kind: KindFile, Path: dir}, PumpOptions{})
	stop := runPump(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, 5*time.Second, "end of stream", func() bool { return p.Status().Detail == "end of stream" })
	st := p.Status()
	if st.State != StateDown || st.Frames != 3 || st.Drops != 2 {
		t.Errorf("status at end: %+v; want down, 3 frames, 2 drops", st)
	}
	f, err := p.Next(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.Seq != 3 || f.Mat.Cols() != 720 {
		t.Errorf("last frame Seq %d, %d cols", f.Seq, f.Mat.Cols())
	}
	_ = f.Close()
	if _, err := p.Next(ctx, 3); !errors.Is(err, ErrEndOfStream) {
		t.Errorf("Next past the end = %v, want ErrEndOfStream", err)
	}
	stop()
}

// TestPumpStops: cancelling Run's context stops it promptly whatever it is
// doing — retrying a missing source, or waiting inside a slow sim — and
// leaves no goroutine or Mat behind; a waiting Next is released.
func TestPumpStops(t *testing.T) {
	folder := imageFolder(t, "franck_01829.jpg")
	checkMats(t)
	tests := []struct {
		name string
		spec Spec
		up   bool
	}{
		{"retrying a missing file", Spec{Kind: KindFile, Path: filepath.Join(t.TempDir(), "absent.mp4")}, false},
		{"retrying an empty folder", Spec{Kind: KindSim, Path: t.TempDir()}, false},
		{"inside a slow sim wait", Spec{Kind: KindSim, Path: folder, FPS: 0.1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			p, _ := newTestPump(t, tt.spec, PumpOptions{ReopenMin: 5 * time.Second, ReopenMax: 10 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			if tt.up {
				waitFor(t, 5*time.Second, "first frame", func() bool { return p.Status().Frames == 1 })
			} else {
				waitFor(t, 5*time.Second, "open failure", func() bool { return strings.HasPrefix(p.Status().Detail, "open failed") })
			}
			nextErr := make(chan error, 1)
			go func() {
				_, err := p.Next(context.Background(), 1)
				nextErr <- err
			}()
			time.Sleep(50 * time.Millisecond)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return within 2 s of cancel")
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("Run took %v to stop", d)
			}
			select {
			case err := <-nextErr:
				if !errors.Is(err, ErrClosed) {
					t.Errorf("waiting Next returned %v, want ErrClosed", err)
				}
			case <-time.After(time.Second):
				t.Error("waiting Next not released by stop")
			}
		})
	}
}
