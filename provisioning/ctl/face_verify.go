package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"kiosk/drivers/camera"
	"kiosk/firmware/face"
	"kiosk/firmware/session"
)

func printJSON(e *env, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(e.stdout, string(b))
}

type consentResult struct {
	Matched      bool               `json:"matched"`
	Similarity   float64            `json:"similarity"`
	Live         bool               `json:"live"`
	Liveness     float64            `json:"liveness"`
	Consent      bool               `json:"consent"`
	Reason       string             `json:"reason,omitempty"`
	MSToDecision float64            `json:"ms_to_decision"`
	Frames       int                `json:"frames"`
	Decision     *face.Decision     `json:"decision,omitempty"`
	Progress     []string           `json:"progress,omitempty"`
	Thresholds   map[string]float64 `json:"thresholds"`
}

// faceConsent runs the face step of a session (match, liveness, smile) on
// a video file or image folder, every frame in turn.
func faceConsent(e *env, args []string) int {
	fs := flag.NewFlagSet("face consent", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir := faceModelsFlag(fs)
	refPath := fs.String("reference", "", "the reference photo (as the chip's DG2: JPEG or JPEG 2000)")
	cam := fs.String("camera", "", "video file or folder of images played as the camera, every frame, unpaced")
	fps := fs.Float64("fps", 0, "frame clock for the timeouts (default: the video's rate, 25 for folders)")
	threshold := fs.Float64("threshold", face.DefaultThreshold, "cosine similarity needed for a match")
	verbose := fs.Bool("v", false, "include the full decision record and the guidance shown")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: kioskctl face consent --reference IMG --camera VIDEO_OR_IMAGE_DIR [--json] [--fps N] [--models DIR]\n"+
			"Runs the face step of a session: match against the reference, passive liveness, smile to consent.\n"+
			"Exit 0 consent, 1 no consent (any reason), 2 bad input or models.")
		fs.PrintDefaults()
	}
	if _, err := parseInterleaved(fs, args); err != nil {
		return ExitUsage
	}
	if *refPath == "" || *cam == "" {
		fs.Usage()
		return ExitUsage
	}
	ref, err := os.ReadFile(*refPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	defer clear(ref)
	rate := *fps
	if rate <= 0 {
		rate = face.VideoFPS(*cam)
	}
	src, err := camera.NewSource(camera.Spec{Kind: camera.KindFile, Path: *cam})
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	frames := face.NewSourceFrames(src, rate)
	defer frames.Close()
	m, ok := loadAllFaceModels(e, *dir)
	if !ok {
		return ExitUsage
	}
	defer m.Close()
	cfg := face.DefaultConfig()
	cfg.MatchThreshold = *threshold
	cfg.SyncExpression = true // reproducible on a file
	v, err := face.NewVerifier(m, frames, cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var prog []string
	d, err := v.VerifyDecision(ctx, ref, func(p session.FaceProgress) { prog = append(prog, p.Stage+":"+p.Guidance) })
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	r := d.Result
	res := consentResult{
		Matched: r.Matched, Similarity: round3(r.Similarity), Live: r.Live, Liveness: round3(r.Liveness),
		Consent: r.Consent, Reason: r.Reason, MSToDecision: d.WallMS, Frames: d.Quality.Frames,
		Thresholds: map[string]float64{"match": r.MatchThreshold, "liveness": r.LivenessThreshold, "smile": cfg.SmileThreshold, "mouth_rise": cfg.MouthRise},
	}
	if *verbose {
		res.Decision, res.Progress = &d, prog
	}
	if *asJSON {
		printJSON(e, res)
	} else {
		fmt.Fprintf(e.stdout, "matched %v (similarity %.3f), live %v (%.3f), consent %v%s; %d frames, %.0f ms\n",
			res.Matched, res.Similarity, res.Live, res.Liveness, res.Consent, reasonSuffix(res.Reason), res.Frames, res.MSToDecision)
	}
	if r.Consent {
		return ExitOK
	}
	return ExitFail
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

type evalResult struct {
	People    int      `json:"people"`
	Images    int      `json:"images"`
	NoFace    []string `json:"no_face,omitempty"`
	face.ROC           // pair counts, AUC, EER, TAR at FAR, threshold at --far
	Threshold float64  `json:"default_threshold"`
	FARAtDef  float64  `json:"far_at_default"`
	TARAtDef  float64  `json:"tar_at_default"`
	MS        float64  `json:"ms"`
}

var evalExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".pgm": true, ".jp2": true, ".j2k": true, ".bmp": true}

// faceEval measures the matcher on a labelled folder: DIR/person/image.
func faceEval(e *env, args []string) int {
	fs := flag.NewFlagSet("face eval", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir := faceModelsFlag(fs)
	dataset := fs.String("dataset", "", "folder of people: DIR/person/image.jpg")
	far := fs.Float64("far", 0.001, "target false accept rate for threshold_at_far (with --chip: for the chosen threshold; default there 0.0001)")
	chip := fs.Bool("chip", false, "reference-vs-probe mode: each person's first photo as a chip-like portrait (colour and grey JPEG 2000), the others as probes; threshold chosen on half the people, rates reported on the other half")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: kioskctl face eval --dataset DIR [--chip] [--json] [--far 0.001] [--models DIR]\n"+
			"Scores every pair of faces in DIR/person/image: genuine (same folder) and impostor pairs,\n"+
			"ROC AUC, EER, TAR at FAR 1 % and 0.1 %, and the threshold for --far. Exit 0, or 2 on bad input.\n"+
			"--chip: chip-like references vs probes, split by person; prints the FAR/FRR table.")
		fs.PrintDefaults()
	}
	if _, err := parseInterleaved(fs, args); err != nil {
		return ExitUsage
	}
	if *dataset == "" || *far < 0 || *far >= 1 {
		fs.Usage()
		return ExitUsage
	}
	people, err := os.ReadDir(*dataset)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	m, ok := loadFaceModels(e, *dir)
	if !ok {
		return ExitUsage
	}
	defer m.Close()
	if *chip {
		target := *far
		if !farSet(fs) {
			target = 0.0001
		}
		return faceEvalChip(e, m, *dataset, target, *asJSON)
	}
	start := time.Now()
	type sample struct {
		person int
		tpl    *face.Template
	}
	var samples []sample
	var res evalResult
	defer func() {
		for _, s := range samples {
			s.tpl.Wipe()
		}
	}()
	for _, p := range people {
		if !p.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(*dataset, p.Name()))
		if err != nil {
			fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
			return ExitUsage
		}
		n := 0
		for _, f := range files {
			if !f.Type().IsRegular() || !evalExts[strings.ToLower(filepath.Ext(f.Name()))] {
				continue
			}
			path := filepath.Join(p.Name(), f.Name())
			res.Images++
			a, err := analyzeFile(m, filepath.Join(*dataset, path))
			if err != nil {
				res.NoFace = append(res.NoFace, path)
				continue
			}
			samples = append(samples, sample{res.People, a.Template})
			n++
		}
		if n > 0 {
			res.People++
		}
	}
	var gen, imp []float64
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			s := face.Cosine(samples[i].tpl, samples[j].tpl)
			if samples[i].person == samples[j].person {
				gen = append(gen, s)
			} else {
				imp = append(imp, s)
			}
		}
	}
	if len(gen) == 0 || len(imp) == 0 {
		fmt.Fprintf(e.stderr, "kioskctl: %s gives %d genuine and %d impostor pairs; need both (two people, one with two faces)\n", *dataset, len(gen), len(imp))
		return ExitUsage
	}
	res.ROC = face.EvaluateScores(gen, imp, *far)
	res.Threshold = face.DefaultThreshold
	res.FARAtDef = fractionAtLeast(imp, face.DefaultThreshold)
	res.TARAtDef = fractionAtLeast(gen, face.DefaultThreshold)
	res.MS = float64(time.Since(start).Milliseconds())
	if math.IsInf(res.ThresholdAtFAR, 0) {
		res.ThresholdAtFAR = -1 // JSON has no infinity: every pair passes
	}
	if *asJSON {
		printJSON(e, res)
	} else {
		fmt.Fprintf(e.stdout, "%d people, %d images (%d without a face): %d genuine, %d impostor pairs\n"+
			"AUC %.4f, EER %.4f at %.3f; TAR %.4f at FAR 1%%, %.4f at FAR 0.1%%; threshold %.3f for FAR %g (TAR %.4f)\n"+
			"default threshold %.2f: FAR %.4f, TAR %.4f\n",
			res.People, res.Images, len(res.NoFace), res.Genuine, res.Impostor, res.AUC, res.EER, res.EERThreshold,
			res.TARAtFAR1, res.TARAtFAR01, res.ThresholdAtFAR, *far, res.TARAtThreshold, res.Threshold, res.FARAtDef, res.TARAtDef)
	}
	return ExitOK
}

func fractionAtLeast(v []float64, t float64) float64 {
	n := 0
	for _, x := range v {
		if x >= t {
			n++
		}
	}
	return float64(n) / float64(len(v))
}

// faceBench measures the face pipeline on a video's frames at 640×480.
func faceBench(e *env, args []string) int {
	fs := flag.NewFlagSet("face bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir := faceModelsFlag(fs)
	cam := fs.String("camera", "", "video of one person's face (default: the test media's franck.mp4)")
	refPath := fs.String("reference", "", "a photo of that person (default: with --camera, the video's first frame with a face; else the test media's franck_01829.jpg)")
	sustain := fs.Duration("sustain", 5*time.Second, "how long to run the smile phase for the sustained frame rate")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: kioskctl face bench [--camera VIDEO --reference IMG] [--json] [--models DIR]\n"+
			"Median ms per stage on 640×480 frames, the Verifier's sustained fps in the smile phase,\n"+
			"time to match, and peak RSS. Without --camera it uses `make testdata`'s franck media.")
		fs.PrintDefaults()
	}
	if _, err := parseInterleaved(fs, args); err != nil {
		return ExitUsage
	}
	// Any video of one face works alone: its own first face is then the
	// reference, as a chip photo would be.
	refFromVideo := *cam != "" && *refPath == ""
	if *cam == "" {
		media := filepath.Join(".cache", "testdata", "media")
		if d := os.Getenv("KIOSK_TESTDATA"); d != "" {
			media = filepath.Join(d, "media")
		}
		*cam = filepath.Join(media, "franck.mp4")
		if *refPath == "" {
			*refPath = filepath.Join(media, "franck_01829.jpg")
		}
	}
	var ref []byte
	if !refFromVideo {
		var err error
		if ref, err = os.ReadFile(*refPath); err != nil {
			fmt.Fprintf(e.stderr, "kioskctl: %v (run `make testdata` or pass --camera)\n", err)
			return ExitUsage
		}
	}
	if _, err := os.Stat(*cam); err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v (run `make testdata` or pass --camera)\n", err)
		return ExitUsage
	}
	m, ok := loadAllFaceModels(e, *dir)
	if !ok {
		return ExitUsage
	}
	defer m.Close()
	modelsRSS := face.ProcStatusMiB("VmRSS")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	frames, err := face.LoadBenchFrames(ctx, *cam, 40, 5, 640, 480)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	defer func() {
		for i := range frames {
			frames[i].Close()
		}
	}()
	if refFromVideo {
		if ref, err = firstFace(m, frames); err != nil {
			fmt.Fprintf(e.stderr, "kioskctl: %s: %v\n", *cam, err)
			return ExitUsage
		}
	}
	res, err := face.RunBench(ctx, m, frames, ref, *sustain)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitFail
	}
	res.ModelsRSSMiB = modelsRSS
	if *asJSON {
		printJSON(e, res)
		return ExitOK
	}
	names := make([]string, 0, len(res.MedianMS))
	for k := range res.MedianMS {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(e.stdout, "%-16s %7.2f ms\n", k, res.MedianMS[k])
	}
	fmt.Fprintf(e.stdout, "sustained %.1f fps (expression %.1f Hz), match in %.0f ms, RSS %.0f MiB with models, peak %.0f MiB\n",
		res.SustainedFPS, res.ExpressionHz, res.MatchMS, res.ModelsRSSMiB, res.PeakRSSMiB)
	return ExitOK
}

// firstFace encodes the first frame with a face as JPEG, the reference
// when face bench gets a video alone.
func firstFace(m *face.Models, frames []gocv.Mat) ([]byte, error) {
	for _, f := range frames {
		if _, err := m.Analyze(f); err != nil {
			continue
		}
		buf, err := gocv.IMEncode(gocv.JPEGFileExt, f)
		if err != nil {
			return nil, err
		}
		defer buf.Close()
		return bytes.Clone(buf.GetBytes()), nil
	}
	return nil, errors.New("no frame shows a face")
}

// farSet reports whether --far was given.
func farSet(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "far" })
	return set
}
