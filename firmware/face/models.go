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
	"runtime"
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
	// Threads sets OpenCV's (process-wide) worker threads: 0 means two
	// (or one on a one-core machine) — on the 2-core kiosk two threads took
	// the detect+landmarks+embed pipeline from 22 to 15 ms median, and the
	// smile phase's frame rate did not drop with the expression model
	// running beside it; negative leaves OpenCV's setting alone.
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
	hashes   map[string]string
	mu       sync.RWMutex // guards nets and closed; inference holds it for reading
	nets     map[Model]*loadedNet
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
		hashes:   make(map[string]string),
		nets:     make(map[Model]*loadedNet),
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
		setOpenCVThreads(min(runtime.NumCPU(), 2))
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
		m.nets[name] = &loadedNet{net: net}
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

// Has reports whether model name is loaded.
func (m *Models) Has(name Model) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.nets[name]
	return ok
}

// Close frees the networks. Methods called after Close return ErrClosed.
func (m *Models) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, n := range m.nets {
		n.net.Close()
		delete(m.nets, k)
	}
	m.closed = true
	return nil
}

// ErrClosed is returned by methods of closed Models.
var ErrClosed = errors.New("face: models closed")

// loadedNet is one network with its own lock: OpenCV's Net is not safe
// for concurrent use, but different networks may run at the same time (the
// expression model on one core while detection runs on the other).
type loadedNet struct {
	mu  sync.Mutex
	net *gocv.Net
}

// forward runs network name on blob and returns copies of the named
// outputs' values; no output Mat outlives the call.
func (m *Models) forward(name Model, blob gocv.Mat, outputs ...string) ([][]float32, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	n, ok := m.nets[name]
	if !ok {
		return nil, &ModelError{File: string(name), Reason: "not loaded (add it to Options.Models)"}
	}
	n.mu.Lock()
	n.net.SetInput(blob, "input")
	var outs []gocv.Mat
	if len(outputs) == 1 {
		outs = []gocv.Mat{n.net.Forward(outputs[0])}
	} else {
		outs = n.net.ForwardLayers(outputs)
	}
	n.mu.Unlock()
	defer func() {
		for i := range outs {
			outs[i].Close()
		}
	}()
	if len(outs) != len(outputs) {
		return nil, fmt.Errorf("%s: %d outputs, want %d", name, len(outs), len(outputs))
	}
	vals := make([][]float32, len(outs))
	for i := range outs {
		v, err := outs[i].DataPtrFloat32()
		if err != nil {
			return nil, fmt.Errorf("%s output %s: %w", name, outputs[i], err)
		}
		vals[i] = append([]float32(nil), v...)
	}
	return vals, nil
}
