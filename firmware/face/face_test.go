package face

import (
	"bytes"
	"errors"
	"image"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"gocv.io/x/gocv"
	"kiosk/internal/testmedia"
)

var francks = []string{"franck_01829.jpg", "franck_02045.jpg", "franck_02159.jpg", "franck_02221.jpg", "franck_02683.jpg", "franck_02888.jpg", "franck_03909.jpg", "franck_03979.jpg", "franck_04000.jpg", "franck_04035.jpg", "franck_04117.jpg"}

func TestDetectFranck(t *testing.T) {
	checkMats(t)
	m := models(t)
	for _, name := range francks {
		t.Run(name, func(t *testing.T) {
			img := decode(t, media(t, name))
			defer img.Close()
			faces, err := m.Detect(img)
			if err != nil {
				t.Fatal(err)
			}
			if len(faces) != 1 {
				t.Fatalf("%d faces, want 1: %+v", len(faces), faces)
			}
			f := faces[0]
			// 720×576 stills of one man filling about half the frame height.
			if w := f.Box.Dx(); w < 250 || w > 500 || f.Box.Dy() != w {
				t.Errorf("box %v: want a square of side 250..500", f.Box)
			}
			if c := f.Box.Min.Add(f.Box.Max).Div(2); c.X < 250 || c.X > 470 || c.Y < 200 || c.Y > 400 {
				t.Errorf("box %v centred at %v, want near the frame centre", f.Box, c)
			}
			if f.Score < 0.9 {
				t.Errorf("score %.3f", f.Score)
			}
			l, err := m.Landmarks(img, f.Box)
			if err != nil {
				t.Fatal(err)
			}
			five := l.Five()
			if !(five[0].X < five[2].X && five[2].X < five[1].X && five[0].Y < five[2].Y && five[2].Y < five[3].Y) {
				t.Errorf("implausible five points %+v", five)
			}
			if d := l.InterEye(); d < 80 || d > 160 {
				t.Errorf("inter-eye distance %.1f px", d)
			}
		})
	}
}

func TestPrimary(t *testing.T) {
	frame := image.Pt(640, 480)
	d := func(x, y, side int) Detection { return Detection{Box: image.Rect(x, y, x+side, y+side)} }
	for _, tc := range []struct {
		name  string
		faces []Detection
		want  int
	}{
		{"none", nil, -1},
		{"largest wins", []Detection{d(300, 200, 50), d(0, 0, 200)}, 1},
		{"near tie goes to the centre", []Detection{d(0, 0, 100), d(270, 190, 97)}, 1},
		{"clearly smaller central face loses", []Detection{d(0, 0, 100), d(270, 190, 80)}, 0},
	} {
		if got := Primary(tc.faces, frame); got != tc.want {
			t.Errorf("%s: Primary = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestFitSimilarity(t *testing.T) {
	tpl := alignTemplate()
	want := Similarity{A: 0.8 * math.Cos(0.3), B: 0.8 * math.Sin(0.3), Tx: -12, Ty: 40}
	var src, dst []Point
	for i, p := range tpl {
		src = append(src, p)
		q := want.Apply(p)
		// Noise that sums to zero: the fit must stay close.
		q.X += []float64{0.5, -0.5, 0, 0.3, -0.3}[i]
		dst = append(dst, q)
	}
	got, err := FitSimilarity(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.A-want.A) > 0.01 || math.Abs(got.B-want.B) > 0.01 || math.Abs(got.Tx-want.Tx) > 1 || math.Abs(got.Ty-want.Ty) > 1 {
		t.Errorf("fit %+v, want %+v", got, want)
	}
	exact, _ := FitSimilarity(src, []Point{want.Apply(src[0]), want.Apply(src[1]), want.Apply(src[2]), want.Apply(src[3]), want.Apply(src[4])})
	for _, p := range src {
		g, w := exact.Apply(p), want.Apply(p)
		if math.Hypot(g.X-w.X, g.Y-w.Y) > 1e-9 {
			t.Errorf("exact fit maps %v to %v, want %v", p, g, w)
		}
	}
	if _, err := FitSimilarity([]Point{{1, 1}, {1, 1}}, []Point{{0, 0}, {1, 1}}); err == nil {
		t.Error("degenerate source accepted")
	}
	if _, err := FitSimilarity(src[:2], dst); err == nil {
		t.Error("mismatched lengths accepted")
	}
}

func TestSamePersonPairs(t *testing.T) {
	checkMats(t)
	m := models(t)
	g := gocvDir(t)
	for _, tc := range []struct {
		a, b  []byte
		name  string
		match bool
	}{
		{media(t, "franck_01829.jpg"), media(t, "franck_04000.jpg"), "franck neutral ~ franck laughing", true},
		{media(t, "franck_02045.jpg"), media(t, "franck_03909.jpg"), "franck neutral ~ franck smiling", true},
		{readFile(t, filepath.Join(g, "images", "face.jpg")), readFile(t, filepath.Join(g, "images", "face-detect.jpg")), "gocv face ~ face-detect", true},
		{readFile(t, filepath.Join(g, "contrib", "att_faces", "s3", "1.pgm")), readFile(t, filepath.Join(g, "contrib", "att_faces", "s3", "7.pgm")), "ORL s3/1 ~ s3/7", true},
		{media(t, "franck_01829.jpg"), readFile(t, filepath.Join(g, "images", "face.jpg")), "franck ~ gocv face", false},
		{media(t, "franck_01829.jpg"), media(t, "obama4_crop.jpg"), "franck ~ obama", false},
		{readFile(t, filepath.Join(g, "contrib", "att_faces", "s1", "1.pgm")), readFile(t, filepath.Join(g, "contrib", "att_faces", "s2", "1.pgm")), "ORL s1 ~ s2", false},
	} {
		ta, err := m.TemplateFromImage(tc.a)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		tb, err := m.TemplateFromImage(tc.b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s := Cosine(ta, tb)
		if got := s >= DefaultThreshold; got != tc.match {
			t.Errorf("%s: similarity %.3f, match %v, want %v", tc.name, s, got, tc.match)
		}
		ta.Wipe()
		if Cosine(ta, tb) != 0 {
			t.Errorf("%s: wiped template still compares", tc.name)
		}
	}
}

// TestJPEG2000 checks that chip photos in JPEG 2000, as a JP2 file and as a
// raw J2K codestream, decode and match their JPEG twin.
func TestJPEG2000(t *testing.T) {
	checkMats(t)
	m := models(t)
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run `make deps`")
	}
	src := testmedia.Path(t, "franck_01829.jpg")
	ref, err := m.TemplateFromImage(readFile(t, src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, ext := range []string{"jp2", "j2k"} {
		out := filepath.Join(dir, "franck."+ext)
		// RGB without chroma subsampling: see TestJPEG2000Subsampled.
		cmd := exec.Command(ffmpeg, "-loglevel", "error", "-y", "-i", src, "-c:v", "libopenjpeg", "-pix_fmt", "rgb24", "-format", ext, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg %s: %v\n%s", ext, err, b)
		}
		data := readFile(t, out)
		magic := map[string][]byte{"jp2": {0, 0, 0, 0x0c, 'j', 'P'}, "j2k": {0xff, 0x4f, 0xff, 0x51}}[ext]
		if !bytes.HasPrefix(data, magic) {
			t.Fatalf("%s: starts % x, want % x", ext, data[:8], magic)
		}
		tpl, err := m.TemplateFromImage(data)
		if err != nil {
			t.Fatalf("%s (%d bytes, starts % x): %v", ext, len(data), data[:12], err)
		}
		if s := Cosine(ref, tpl); s < 0.95 {
			t.Errorf("%s twin: similarity %.4f < 0.95", ext, s)
		} else {
			t.Logf("%s twin: similarity %.4f", ext, s)
		}
	}
}

// TestJPEG2000Subsampled pins a limitation: Debian's OpenCV 4.6 refuses
// JPEG 2000 with subsampled components (ffmpeg's default yuv420p output). It
// must come back as ErrDecode, never a crash.
func TestJPEG2000Subsampled(t *testing.T) {
	checkMats(t)
	m := models(t)
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: run `make deps`")
	}
	out := filepath.Join(t.TempDir(), "franck420.jp2")
	cmd := exec.Command(ffmpeg, "-loglevel", "error", "-y", "-i", testmedia.Path(t, "franck_01829.jpg"), "-c:v", "libopenjpeg", "-pix_fmt", "yuv420p", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	if _, err := m.TemplateFromImage(readFile(t, out)); !errors.Is(err, ErrDecode) {
		t.Errorf("4:2:0 JPEG 2000: err %v, want ErrDecode", err)
	}
}

func TestNoFace(t *testing.T) {
	checkMats(t)
	m := models(t)
	_, err := m.TemplateFromImage(readFile(t, filepath.Join(gocvDir(t), "images", "space_shuttle.jpg")))
	if !errors.Is(err, ErrNoFace) {
		t.Errorf("space shuttle: err %v, want ErrNoFace", err)
	}
	blank := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 120, 150, 0), 480, 640, gocv.MatTypeCV8UC3)
	defer blank.Close()
	a, err := m.Analyze(blank)
	if !errors.Is(err, ErrNoFace) || a == nil || len(a.Faces) != 0 {
		t.Errorf("blank frame: %v, %v; want ErrNoFace and no faces", a, err)
	}
	for name, data := range map[string][]byte{"empty": nil, "text": []byte("not a picture"), "truncated jpeg": media(t, "franck_01829.jpg")[:200]} {
		if _, err := m.TemplateFromImage(data); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: err %v, want ErrDecode", name, err)
		}
	}
	grey := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8U)
	defer grey.Close()
	if _, err := m.Detect(grey); !errors.Is(err, ErrImage) {
		t.Errorf("grey Mat: err %v, want ErrImage", err)
	}
}

// copyModels copies the verification models into a fresh directory.
func copyModels(t *testing.T) string {
	t.Helper()
	src := modelsDir(t)
	dst := t.TempDir()
	for _, f := range VerifyModels() {
		in, err := os.Open(filepath.Join(src, string(f)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, string(f)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestModelErrors(t *testing.T) {
	checkMats(t)
	dir := copyModels(t)
	m, err := LoadModels(dir, Options{})
	if err != nil {
		t.Fatalf("intact copy: %v", err)
	}
	h := m.Hashes()
	if h["fr_feature.onnx"] != Manifest()["fr_feature.onnx"] || len(h) != 3 {
		t.Errorf("hashes %v", h)
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := m.Detect(empty); !errors.Is(err, ErrImage) {
		t.Errorf("empty Mat: %v", err)
	}
	m.Close()
	img := decode(t, media(t, "franck_01829.jpg"))
	defer img.Close()
	if _, err := m.Detect(img); !errors.Is(err, ErrClosed) {
		t.Errorf("closed models: %v", err)
	}

	// Flip one byte in the middle of the feature model.
	p := filepath.Join(dir, "fr_feature.onnx")
	b := readFile(t, p)
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadModels(dir, Options{})
	var me *ModelError
	if !errors.As(err, &me) || me.File != "fr_feature.onnx" {
		t.Fatalf("altered model: err %v, want *ModelError for fr_feature.onnx", err)
	}
	t.Logf("altered: %v", err)

	if err := os.Remove(filepath.Join(dir, "fr_landmark.onnx")); err != nil {
		t.Fatal(err)
	}
	_, err = LoadModels(dir, Options{Models: []Model{ModelDetect, ModelLandmark}})
	if !errors.As(err, &me) || me.File != "fr_landmark.onnx" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing model: err %v, want *ModelError for fr_landmark.onnx", err)
	}
	t.Logf("missing: %v", err)

	// A model loaded without the network it needs says so.
	det, err := LoadModels(dir, Options{Models: []Model{ModelDetect}})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	if _, err := det.Analyze(img); !errors.As(err, &me) || me.File != "fr_landmark.onnx" {
		t.Errorf("analyze without landmark model: %v", err)
	}
}

func TestTemplateRedacted(t *testing.T) {
	tpl, err := NewTemplate(make([]float32, Dim))
	if err == nil {
		t.Fatalf("zero vector accepted: %v", tpl)
	}
	v := make([]float32, Dim)
	v[3] = 2
	tpl, err = NewTemplate(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := tpl.Floats()[3]; got != 1 {
		t.Errorf("normalised value %v, want 1", got)
	}
	for _, s := range []string{tpl.String(), tpl.LogValue().String()} {
		if s != "[face template]" {
			t.Errorf("template formats as %q", s)
		}
	}
	tpl.Wipe()
	if tpl.Floats()[3] != 0 {
		t.Error("Wipe left data")
	}
}

func TestThreads(t *testing.T) {
	models(t)
	if n, want := openCVThreads(), min(runtime.NumCPU(), 2); benchThreads() == 0 && n != want {
		t.Errorf("OpenCV threads %d after LoadModels with Threads 0, want %d", n, want)
	}
}
