package ctl

import (
	"bufio"
	"encoding/json"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"kiosk/firmware/face"
	"kiosk/internal/testmedia"
)

// faceModels returns the installed face models directory, failing (not
// skipping) with the make target when they are missing.
func faceModels(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping test that needs the face models")
	}
	dir := os.Getenv(face.EnvModelsDir)
	if dir == "" {
		dir = filepath.Join("..", "..", face.DefaultModelsDir)
	}
	for _, f := range face.VerifyModels() {
		if _, err := os.Stat(filepath.Join(dir, string(f))); err != nil {
			t.Fatalf("face model %s missing in %s: run `make models`", f, dir)
		}
	}
	return dir
}

func TestFaceCompare(t *testing.T) {
	models := faceModels(t)
	a := testmedia.Path(t, "franck_01829.jpg")
	b := testmedia.Path(t, "franck_03909.jpg")
	other := testmedia.Path(t, "obama4_crop.jpg")
	blank := filepath.Join(t.TempDir(), "blank.pgm")
	// A plain grey 64×48 PGM: a picture with no face.
	if err := os.WriteFile(blank, append([]byte("P5 64 48 255\n"), []byte(strings.Repeat("\x80", 64*48))...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		match  bool
		noFace bool
	}{
		{"same person", []string{a, b, "--json"}, ExitOK, true, false},
		{"different people", []string{"--json", a, other}, ExitFail, false, false},
		{"no face", []string{a, blank, "--json"}, ExitUsage, false, true},
		{"missing file", []string{a, filepath.Join(t.TempDir(), "none.jpg"), "--json"}, ExitUsage, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(append([]string{"face", "compare", "--models", models}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errs)
			}
			var r struct {
				Similarity *float64 `json:"similarity"`
				Threshold  float64  `json:"threshold"`
				Match      bool     `json:"match"`
				FacesA     int      `json:"faces_a"`
				FacesB     int      `json:"faces_b"`
				MS         float64  `json:"ms"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("stdout %q: %v", out, err)
			}
			if r.Match != tc.match || r.Threshold != face.DefaultThreshold {
				t.Errorf("result %s", out)
			}
			if tc.code != ExitUsage && (r.Similarity == nil || r.FacesA != 1 || r.FacesB != 1 || r.MS <= 0) {
				t.Errorf("result %s", out)
			}
			if tc.noFace && (r.FacesA != 1 || r.FacesB != 0 || !strings.Contains(errs, "no face")) {
				t.Errorf("no-face result %s, stderr %q", out, errs)
			}
		})
	}
	if code, out, _ := run("face", "compare", "--models", models, a, b); code != ExitOK || !strings.HasPrefix(out, "match: similarity") {
		t.Errorf("text output: %d %q", code, out)
	}
	if code, _, _ := run("face", "compare", "--models", models, a); code != ExitUsage {
		t.Errorf("one file: exit %d", code)
	}
	code, _, errs := run("face", "compare", "--models", t.TempDir(), a, b)
	if code != ExitUsage || !strings.Contains(errs, "fr_detect.onnx") || !strings.Contains(errs, "make models") {
		t.Errorf("empty models dir: exit %d, stderr %q", code, errs)
	}
}

func TestFaceEmbed(t *testing.T) {
	models := faceModels(t)
	a := testmedia.Path(t, "franck_01829.jpg")
	b := testmedia.Path(t, "franck_02045.jpg")
	code, out, errs := run("face", "embed", "--json", "--models", models, a, b)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	type line struct {
		File      string    `json:"file"`
		Faces     int       `json:"faces"`
		Embedding []float64 `json:"embedding"`
		Quality   struct {
			FaceWidth int     `json:"face_width"`
			InterEye  float64 `json:"inter_eye"`
			Score     float64 `json:"score"`
		} `json:"quality"`
	}
	var lines []line
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 2 || lines[0].File != a || lines[1].File != b {
		t.Fatalf("got %d lines: %+v", len(lines), lines)
	}
	var dot float64
	for i, l := range lines {
		if l.Faces != 1 || len(l.Embedding) != face.Dim || l.Quality.FaceWidth < 250 || l.Quality.InterEye < 80 || l.Quality.Score < 0.9 {
			t.Errorf("line %d: faces %d, %d values, quality %+v", i, l.Faces, len(l.Embedding), l.Quality)
		}
		var n float64
		for _, v := range l.Embedding {
			n += v * v
		}
		if math.Abs(n-1) > 1e-3 {
			t.Errorf("line %d: |embedding|² = %f, want 1", i, n)
		}
	}
	for i := range lines[0].Embedding {
		dot += lines[0].Embedding[i] * lines[1].Embedding[i]
	}
	if dot < face.DefaultThreshold {
		t.Errorf("two franck stills: cosine of printed embeddings %.3f", dot)
	}

	// A file without a face: its line says so and the exit status is 2.
	blank := filepath.Join(t.TempDir(), "blank.pgm")
	if err := os.WriteFile(blank, append([]byte("P5 64 48 255\n"), []byte(strings.Repeat("\x80", 64*48))...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run("face", "embed", "--json", "--models", models, blank)
	var l struct {
		Faces     int       `json:"faces"`
		Embedding []float64 `json:"embedding"`
		Error     string    `json:"error"`
	}
	if code != ExitUsage || json.Unmarshal([]byte(out), &l) != nil || l.Faces != 0 || l.Embedding != nil || l.Error == "" {
		t.Errorf("no face: exit %d, out %q", code, out)
	}
	// Without --json no template is printed.
	code, out, _ = run("face", "embed", "--models", models, a)
	if code != ExitOK || strings.Contains(out, "embedding") || !strings.Contains(out, "inter-eye") {
		t.Errorf("text output: exit %d %q", code, out)
	}
	if code, _, _ := run("face", "embed", "--json", "--models", models); code != ExitUsage {
		t.Errorf("no files: exit %d", code)
	}
}

// embedLines runs face embed and decodes its JSON lines.
func embedLines(t *testing.T, args ...string) (int, []map[string]any) {
	t.Helper()
	code, out, _ := run(append([]string{"face", "embed", "--json"}, args...)...)
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return code, lines
}

func embedding(t *testing.T, l map[string]any) []float64 {
	t.Helper()
	raw, _ := l["embedding"].([]any)
	if len(raw) != face.Dim {
		t.Fatalf("line %v: %d values", l["file"], len(raw))
	}
	v := make([]float64, len(raw))
	for i, x := range raw {
		v[i] = x.(float64)
	}
	return v
}

// --reference embeds a file as the kiosk embeds a chip photo (a grey
// chip photo says so), --grey a probe as the kiosk embeds camera frames
// for a grey chip photo; the decision on the pair is their cosine.
func TestFaceEmbedReference(t *testing.T) {
	models := faceModels(t)
	m, err := face.LoadModels(models, face.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	img := gocv.IMRead(testmedia.Path(t, "franck_01829.jpg"), gocv.IMReadColor)
	defer img.Close()
	a, err := m.Analyze(img)
	if err != nil {
		t.Fatal(err)
	}
	a.Template.Wipe()
	jp2, err := face.ChipPortrait(img, a.Landmarks, face.ChipPortraitOptions{Grey: true})
	if err != nil {
		t.Fatal(err)
	}
	chip := filepath.Join(t.TempDir(), "dg2.jp2")
	if err := os.WriteFile(chip, jp2, 0o600); err != nil {
		t.Fatal(err)
	}
	code, ref := embedLines(t, "--reference", "--models", models, chip)
	if code != ExitOK || len(ref) != 1 {
		t.Fatalf("--reference: exit %d, %v", code, ref)
	}
	if q, _ := ref[0]["reference"].(map[string]any); q == nil || q["grey"] != true {
		t.Errorf("--reference: %v, want reference.grey true", ref[0]["reference"])
	}
	probe := testmedia.Path(t, "franck_02045.jpg")
	code, grey := embedLines(t, "--grey", "--models", models, probe)
	if code != ExitOK || len(grey) != 1 {
		t.Fatalf("--grey: exit %d", code)
	}
	_, colour := embedLines(t, "--models", models, probe)
	r, g, c := embedding(t, ref[0]), embedding(t, grey[0]), embedding(t, colour[0])
	var rg, gc float64
	for i := range r {
		rg += r[i] * g[i]
		gc += g[i] * c[i]
	}
	if rg < face.DefaultThreshold || gc > 0.9999 {
		t.Errorf("grey chip photo vs grey probe %.3f (threshold %.3f); grey vs colour probe %.4f", rg, face.DefaultThreshold, gc)
	}
	// A chip photo too small to compare is declined with the kiosk's reason.
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(img, &small, image.Pt(img.Cols()/8, img.Rows()/8), 0, 0, gocv.InterpolationArea)
	tiny := filepath.Join(t.TempDir(), "tiny.png")
	gocv.IMWrite(tiny, small)
	code, bad := embedLines(t, "--reference", "--models", models, tiny)
	if code != ExitUsage || len(bad) != 1 || bad[0]["reason"] != face.ReasonReferenceQuality {
		t.Errorf("tiny chip photo: exit %d, %v", code, bad)
	}
}
