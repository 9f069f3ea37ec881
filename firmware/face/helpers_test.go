package face

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gocv.io/x/gocv"
	"kiosk/internal/testmedia"
)

// modelsDir returns the installed models directory: $KIOSK_MODELS or
// .cache/models at the module root. Under -short it skips; otherwise a
// missing model fails the test and names `make models`.
func modelsDir(tb testing.TB) string {
	tb.Helper()
	dir := testmedia.Models(tb)
	for _, f := range VerifyModels() {
		if _, err := os.Stat(filepath.Join(dir, string(f))); err != nil {
			tb.Fatalf("face model %s missing in %s: run `make models`", f, dir)
		}
	}
	return dir
}

// sharedSet is a model set loaded once and shared by the tests.
type sharedSet struct {
	models []Model // nil: VerifyModels
	once   sync.Once
	m      *Models
	err    error
}

func (s *sharedSet) load(tb testing.TB) *Models {
	tb.Helper()
	dir := modelsDir(tb)
	s.once.Do(func() { s.m, s.err = LoadModels(dir, Options{Models: s.models, Threads: benchThreads()}) })
	if s.err != nil {
		tb.Fatalf("load models: %v", s.err)
	}
	return s.m
}

func (s *sharedSet) close() {
	if s.m != nil {
		s.m.Close()
	}
}

var (
	// Loading the three networks takes ~0.3 s; tests share one set.
	verifySet = &sharedSet{}
	// All the Verifier's models take ~1 s to load; its tests share one set.
	allSet = &sharedSet{models: AllModels()}
	// The pose network, for comparing the landmark pose with it.
	poseSet = &sharedSet{models: []Model{ModelDetect, ModelLandmark, ModelPose}}
)

func models(tb testing.TB) *Models {
	tb.Helper()
	return verifySet.load(tb)
}

func fullModels(tb testing.TB) *Models {
	tb.Helper()
	return allSet.load(tb)
}

func TestMain(m *testing.M) {
	code := m.Run()
	verifySet.close()
	allSet.close()
	poseSet.close()
	// Under -tags matprofile every Mat of the whole run must be closed.
	if n := liveMats(); matprofile && n != 0 {
		fmt.Fprintf(os.Stderr, "Mat leak: %d live Mats at the end of the tests\n%s", n, liveMatStacks())
		code = 1
	} else if matprofile && code == 0 {
		fmt.Println("matprofile: 0 live Mats at the end of the tests")
	}
	os.Exit(code)
}

// gocvDir returns the gocv module directory, which holds the ORL faces and
// two photos of one man.
func gocvDir(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: skipping test that needs gocv's test images")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	if err != nil {
		tb.Fatalf("locate the gocv module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, "contrib", "att_faces", "s1", "1.pgm")); err != nil {
		tb.Fatalf("gocv test images missing (%v): run `go mod download gocv.io/x/gocv`", err)
	}
	return dir
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func media(tb testing.TB, name string) []byte {
	tb.Helper()
	return readFile(tb, testmedia.Path(tb, name))
}

func decode(tb testing.TB, data []byte) gocv.Mat {
	tb.Helper()
	img, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || img.Empty() {
		img.Close()
		tb.Fatalf("decode: %v", err)
	}
	return img
}

// checkMats fails the test if it ends with more live Mats than it started
// with (counted only under -tags matprofile). Call it first in a test.
func checkMats(tb testing.TB) {
	tb.Helper()
	before := liveMats()
	tb.Cleanup(func() {
		if after := liveMats(); after != before {
			tb.Errorf("Mat leak: %d live Mats before, %d after\n%s", before, after, liveMatStacks())
		}
	})
}

// benchThreads lets `KIOSK_FACE_THREADS=2 go test -bench` compare OpenCV
// thread counts; the default (0) means one thread.
func benchThreads() int {
	n, _ := strconv.Atoi(os.Getenv("KIOSK_FACE_THREADS"))
	return n
}
