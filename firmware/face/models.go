package face

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"gocv.io/x/gocv"
)

// Model names a model file of the face model set.
type Model string

// The model files `make models` installs.
const (
	ModelDetect     Model = "fr_detect.onnx"
	ModelLandmark   Model = "fr_landmark.onnx"
	ModelFeature    Model = "fr_feature.onnx"
	ModelLiveness   Model = "fr_liveness.onnx"
	ModelEye        Model = "fr_eye.onnx"
	ModelExpression Model = "fr_expression.onnx"
	ModelPose       Model = "fr_pose.onnx"
)

// VerifyModels returns the models detection, alignment and matching need;
// LoadModels loads them when Options.Models is empty.
func VerifyModels() []Model { return []Model{ModelDetect, ModelLandmark, ModelFeature} }

//go:embed models.sha256
var manifestText []byte

// Manifest returns the SHA-256 (hex) of every model file this build accepts,
// keyed by file name.
func Manifest() map[string]string {
	m := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(manifestText))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			m[f[1]] = f[0]
		}
	}
	return m
}

// EnvModelsDir names the environment variable that overrides DefaultModelsDir.
const EnvModelsDir = "KIOSK_MODELS"

// DefaultModelsDir is where `make models` installs the models, relative to
// the repository root.
const DefaultModelsDir = ".cache/models"

// ModelsDir returns $KIOSK_MODELS, or DefaultModelsDir when it is unset.
func ModelsDir() string {
	if d := os.Getenv(EnvModelsDir); d != "" {
		return d
	}
	return DefaultModelsDir
}

// ModelError reports a model file that is missing, altered or unreadable.
// Face verification must refuse to run with it.
type ModelError struct {
	File   string // file name, e.g. fr_feature.onnx
	Reason string
	Err    error // underlying error, if any
}

func (e *ModelError) Error() string {
	return fmt.Sprintf("face model %s: %s", e.File, e.Reason)
}

func (e *ModelError) Unwrap() error { return e.Err }

// Options configure LoadModels.
type Options struct {
	// Models to load; empty means VerifyModels().
	Models []Model
	// Threads sets OpenCV's (process-wide) worker threads: 0 means 1, which
	// measured as fast as 2 on a 2-core kiosk and leaves the other core to
	// the camera; negative leaves OpenCV's setting alone.
	Threads int
	// MinScore is the detector's face score threshold (default 0.65).
	MinScore float32
	// NMSIoU is the non-maximum suppression overlap threshold (default 0.4).
	NMSIoU float32
	// Logger receives load events (never image data); nil discards.
	Logger *slog.Logger
}

// Models holds loaded networks. Its methods are safe for concurrent use; a
// network runs one inference at a time.
type Models struct {
	dir      string
	hashes   map[string]string
	opts     Options
	log      *slog.Logger
	mu       sync.Mutex
	nets     map[Model]*gocv.Net
	closed   bool
	minScore float32
	nmsIoU   float32
}

// LoadModels verifies and loads the models in dir. Each file's SHA-256 is
// checked against the compiled-in manifest before OpenCV parses it; a
// missing, altered or unreadable file yields a *ModelError naming it.
func LoadModels(dir string, opts Options) (*Models, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want := opts.Models
	if len(want) == 0 {
		want = VerifyModels()
	}
	manifest := Manifest()
	m := &Models{
		dir: dir, opts: opts, log: log,
		hashes:   make(map[string]string),
		nets:     make(map[Model]*gocv.Net),
		minScore: opts.MinScore, nmsIoU: opts.NMSIoU,
	}
	if m.minScore <= 0 {
		m.minScore = 0.65
	}
	if m.nmsIoU <= 0 {
		m.nmsIoU = 0.4
	}
	switch {
	case opts.Threads == 0:
		setOpenCVThreads(1)
	case opts.Threads > 0:
		setOpenCVThreads(opts.Threads)
	}
	for _, name := range want {
		if _, dup := m.nets[name]; dup {
			continue
		}
		net, sum, err := loadOne(dir, name, manifest)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.nets[name] = net
		m.hashes[string(name)] = sum
		log.Info("face model loaded", "file", string(name), "sha256", sum)
	}
	return m, nil
}

func loadOne(dir string, name Model, manifest map[string]string) (*gocv.Net, string, error) {
	file := string(name)
	want, ok := manifest[file]
	if !ok {
		return nil, "", &ModelError{File: file, Reason: "not in the model manifest"}
	}
	path := filepath.Join(dir, file)
	f, err := os.Open(path)
	if err != nil {
		reason := "cannot be read"
		if errors.Is(err, os.ErrNotExist) {
			reason = "missing (run `make models`)"
		}
		return nil, "", &ModelError{File: file, Reason: reason, Err: err}
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return nil, "", &ModelError{File: file, Reason: "cannot be read", Err: err}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return nil, "", &ModelError{File: file, Reason: fmt.Sprintf("altered: sha256 %s, want %s", got, want)}
	}
	// The file could change between hashing and parsing; a model swapped in
	// that window would need write access to the models directory, which
	// already implies control of the appliance.
	net := gocv.ReadNetFromONNX(path)
	if net.Empty() {
		net.Close()
		return nil, "", &ModelError{File: file, Reason: "OpenCV cannot load it"}
	}
	_ = net.SetPreferableBackend(gocv.NetBackendOpenCV)
	_ = net.SetPreferableTarget(gocv.NetTargetCPU)
	return &net, got, nil
}

// Hashes returns the SHA-256 of every loaded model file, keyed by file name,
// for decision records.
func (m *Models) Hashes() map[string]string { return maps.Clone(m.hashes) }

// Dir returns the directory the models were loaded from.
func (m *Models) Dir() string { return m.dir }

// Has reports whether model name is loaded.
func (m *Models) Has(name Model) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.nets[name]
	return ok
}

// Close frees the networks. Methods called after Close return ErrClosed.
func (m *Models) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, n := range m.nets {
		n.Close()
		delete(m.nets, k)
	}
	m.closed = true
	return nil
}

// ErrClosed is returned by methods of closed Models.
var ErrClosed = errors.New("face: models closed")

// net returns a loaded network; the caller must hold m.mu.
func (m *Models) net(name Model) (*gocv.Net, error) {
	if m.closed {
		return nil, ErrClosed
	}
	n, ok := m.nets[name]
	if !ok {
		return nil, &ModelError{File: string(name), Reason: "not loaded (add it to Options.Models)"}
	}
	return n, nil
}
