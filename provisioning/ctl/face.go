package ctl

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"gocv.io/x/gocv"

	"kiosk/firmware/face"
)

// parseInterleaved parses flags that may follow positional arguments
// ("face compare A.jpg B.jpg --json") and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func faceModelsFlag(fs *flag.FlagSet) *string {
	return fs.String("models", face.ModelsDir(), "face models directory (env "+face.EnvModelsDir+"; `make models` installs them)")
}

// loadFaceModels loads the verification models, printing which file is
// wrong when one is missing or altered.
func loadFaceModels(e *env, dir string) (*face.Models, bool) {
	return loadModels(e, dir, face.Options{})
}

// loadAllFaceModels loads every model the Verifier uses.
func loadAllFaceModels(e *env, dir string) (*face.Models, bool) {
	return loadModels(e, dir, face.Options{Models: face.AllModels()})
}

func loadModels(e *env, dir string, opts face.Options) (*face.Models, bool) {
	m, err := face.LoadModels(dir, opts)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		var me *face.ModelError
		if errors.As(err, &me) {
			fmt.Fprintf(e.stderr, "kioskctl: models directory %s: run `make models` or pass --models\n", dir)
		}
		return nil, false
	}
	return m, true
}

func analyzeFile(m *face.Models, path string) (*face.Analysis, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return m.AnalyzeImage(data)
}

type compareResult struct {
	Similarity *float64 `json:"similarity"`
	Threshold  float64  `json:"threshold"`
	Match      bool     `json:"match"`
	FacesA     int      `json:"faces_a"`
	FacesB     int      `json:"faces_b"`
	MS         float64  `json:"ms"`
	Error      string   `json:"error,omitempty"`
}

func faceCompare(e *env, args []string) int {
	fs := flag.NewFlagSet("face compare", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir := faceModelsFlag(fs)
	threshold := fs.Float64("threshold", face.DefaultThreshold, "cosine similarity needed for a match")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: kioskctl face compare A.jpg B.jpg [--json] [--threshold T] [--models DIR]\n"+
			"Compares the primary faces of two pictures. Exit 0 match, 1 no match, 2 no face, bad input or models.")
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return ExitUsage
	}
	if len(files) != 2 {
		fs.Usage()
		return ExitUsage
	}
	m, ok := loadFaceModels(e, *dir)
	if !ok {
		return ExitUsage
	}
	defer m.Close()
	start := time.Now()
	res := compareResult{Threshold: *threshold}
	report := func(code int) int {
		res.MS = float64(time.Since(start).Microseconds()) / 1000
		if *asJSON {
			printJSON(e, res)
		} else if res.Error == "" {
			verdict := "no match"
			if res.Match {
				verdict = "match"
			}
			fmt.Fprintf(e.stdout, "%s: similarity %.3f (threshold %.3f), %d and %d faces, %.1f ms\n",
				verdict, *res.Similarity, res.Threshold, res.FacesA, res.FacesB, res.MS)
		}
		if res.Error != "" {
			fmt.Fprintf(e.stderr, "kioskctl: %s\n", res.Error)
		}
		return code
	}
	var tpl [2]*face.Template
	for i, f := range files {
		a, err := analyzeFile(m, f)
		if a != nil {
			if i == 0 {
				res.FacesA = len(a.Faces)
			} else {
				res.FacesB = len(a.Faces)
			}
		}
		if err != nil {
			if errors.Is(err, face.ErrNoFace) {
				res.Error = fmt.Sprintf("%s: no face found", f)
			} else {
				res.Error = fmt.Sprintf("%s: %v", f, err)
			}
			for _, t := range tpl {
				t.Wipe()
			}
			return report(ExitUsage)
		}
		tpl[i] = a.Template
	}
	s := face.Cosine(tpl[0], tpl[1])
	tpl[0].Wipe()
	tpl[1].Wipe()
	res.Similarity = &s
	res.Match = s >= *threshold
	if res.Match {
		return report(ExitOK)
	}
	return report(ExitFail)
}

type embedResult struct {
	File      string        `json:"file"`
	Faces     int           `json:"faces"`
	Embedding []float32     `json:"embedding"`
	Quality   *face.Quality `json:"quality"`
	// Reference is set with --reference: the chip photo checks' measures
	// (grey: camera frames compared with it are embedded grey, --grey).
	Reference *face.ReferenceQuality `json:"reference,omitempty"`
	Reason    string                 `json:"reason,omitempty"` // --reference: the kiosk's decline reason
	Error     string                 `json:"error,omitempty"`
}

func faceEmbed(e *env, args []string) int {
	fs := flag.NewFlagSet("face embed", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per file, with the 512-d embedding")
	asRef := fs.Bool("reference", false, "embed each file exactly as the kiosk embeds a chip photo (DG2): reference checks, grey detection")
	grey := fs.Bool("grey", false, "embed each file as a camera frame compared with a grey chip photo (converted to grey first)")
	dir := faceModelsFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: kioskctl face embed --json [--reference | --grey] [--models DIR] FILE...\n"+
			"LAB/STAFF TOOL: with --json it prints each picture's face template (biometric data);\n"+
			"never run it on customer data. Without --json it prints only face counts and quality.\n"+
			"Exit 0 when every file had a face, 2 otherwise.")
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return ExitUsage
	}
	if len(files) == 0 || (*asRef && *grey) {
		fs.Usage()
		return ExitUsage
	}
	m, ok := loadFaceModels(e, *dir)
	if !ok {
		return ExitUsage
	}
	defer m.Close()
	code := ExitOK
	enc := json.NewEncoder(e.stdout)
	for _, f := range files {
		r := embedResult{File: f}
		var a *face.Analysis
		var err error
		switch {
		case *asRef:
			a, err = embedReference(m, f, &r)
		case *grey:
			a, err = embedGrey(m, f)
		default:
			a, err = analyzeFile(m, f)
		}
		if a != nil {
			r.Faces = len(a.Faces)
		}
		switch {
		case errors.Is(err, face.ErrNoFace):
			r.Error = "no face found"
		case err != nil:
			r.Error = err.Error()
		default:
			if rq := r.Reference; rq != nil {
				r.Quality = &face.Quality{FaceWidth: rq.FaceWidth, InterEye: rq.InterEye, Score: rq.Score}
			} else {
				q := a.Quality()
				r.Quality = &q
			}
			if *asJSON {
				r.Embedding = a.Template.Floats()
			}
			a.Template.Wipe()
		}
		if r.Error != "" {
			code = ExitUsage
			fmt.Fprintf(e.stderr, "kioskctl: %s: %s\n", f, r.Error)
		}
		if *asJSON {
			if err := enc.Encode(r); err != nil {
				fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
				return ExitFail
			}
		} else if r.Quality != nil {
			fmt.Fprintf(e.stdout, "%s: %d faces; primary: width %d px, inter-eye %.1f px, score %.3f\n",
				f, r.Faces, r.Quality.FaceWidth, r.Quality.InterEye, r.Quality.Score)
		}
	}
	return code
}

// embedReference embeds a file as the kiosk embeds a chip photo; a
// declined photo reports the kiosk's reason as the error.
func embedReference(m *face.Models, path string, r *embedResult) (*face.Analysis, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ref, err := m.ReferenceFromImage(data, face.DefaultReferenceGates())
	if reason, ok := face.IsReferenceDecline(err); ok {
		r.Reason = reason
		if reason == face.ReasonNoReferenceFace && errors.Is(err, face.ErrNoFace) {
			return nil, face.ErrNoFace
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	q := ref.Quality
	r.Reference = &q
	a := &face.Analysis{Template: ref.Template}
	return a, nil
}

// embedGrey embeds a file's primary face as a camera frame compared with a
// grey chip photo.
func embedGrey(m *face.Models, path string) (*face.Analysis, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	img, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || img.Empty() {
		img.Close()
		return nil, face.ErrDecode
	}
	defer img.Close()
	a, err := m.Analyze(img)
	if err != nil {
		return a, err
	}
	t, err := m.EmbedProbe(img, a.Landmarks, &face.Reference{Grey: true})
	if err != nil {
		return nil, err
	}
	a.Template.Wipe()
	a.Template = t
	return a, nil
}
