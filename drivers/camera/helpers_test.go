package camera

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"kiosk/internal/testmedia"
)

// checkMats fails the test if it ends with more live Mats than it started
// with (only counted under -tags matprofile). Call it first in a test so
// that its cleanup runs after every other one.
func checkMats(tb testing.TB) {
	tb.Helper()
	before := liveMats()
	tb.Cleanup(func() {
		if after := liveMats(); after != before {
			tb.Errorf("Mat leak: %d live Mats before, %d after\n%s", before, after, liveMatStacks())
		}
	})
}

// checkGoroutines fails the test if goroutines started during it outlive it.
func checkGoroutines(tb testing.TB) {
	tb.Helper()
	before := runtime.NumGoroutine()
	tb.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf)
		}
	})
}

// runPump starts p.Run and returns a stop function (also run at cleanup)
// that cancels it and checks that Run returns promptly and without error.
func runPump(tb testing.TB, p *Pump) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run returned %v", err)
				}
			case <-time.After(5 * time.Second):
				tb.Errorf("Run did not return within 5s of cancel")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stateLog records OnState callbacks.
type stateLog struct {
	mu  sync.Mutex
	all []Status
}

func (l *stateLog) add(s Status) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *stateLog) states() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.all))
	for i, s := range l.all {
		out[i] = s.State + ":" + s.Detail
	}
	return out
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// copyFile copies src to dst atomically (temp file + rename), the way a
// device node reappears in one piece.
func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tb.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		tb.Fatal(err)
	}
}

// imageFolder makes a temp folder holding copies of the named media stills.
func imageFolder(tb testing.TB, names ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, n := range names {
		copyFile(tb, testmedia.Path(tb, n), filepath.Join(dir, n))
	}
	return dir
}
