package face

// A lab measurement, run by hand (≈ 20 min of one core for every
// variant): ways to embed a face, compared on the chip-like evaluation of
// `kioskctl face eval --chip` (README, "Face verification thresholds"):
// test-time flip (the mirrored aligned face's embedding added),
// area-averaged resampling before the warp, blurring the probe (or both)
// towards the JPEG 2000 portrait's softness, centring the embeddings on
// the choose half's mean (KIOSK_CALIB_CENTRE=1 for variants other than
// base), and (xGeomVariants) the alignment template zoomed or moved, a
// fit that trusts the mouth corners less or not at all, a second landmark
// pass on a box placed from the first, and the reference's embedding
// averaged over small jitters of its alignment. Each is chosen on the
// choose half (FAR ≤ 0.01 %) and reported on the other; "vs first" counts
// the held-back genuine pairs the variant accepts and the run's first
// variant (base) rejects, and the reverse. The shipped embedding ("base",
// and "geom" through the variants' own warp) must reproduce the shipped
// threshold. KIOSK_CALIB_VARIANTS (exact names, comma-separated) and
// KIOSK_CALIB_PEOPLE (the first N people) narrow a run for iterating.
//
//	KIOSK_FACES_LFW=../shared/data/faces-lfw KIOSK_FACE_THREADS=1 \
//	  go test -count=1 -timeout 60m -run TestCalibrationVariants -v ./firmware/face

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

type xVariant struct {
	name string
	// embed embeds the face found in box with landmarks l in img (grey:
	// convert the aligned face to grey); ref is set for the reference.
	embed func(m *Models, img gocv.Mat, box image.Rectangle, l *Landmarks, grey, ref bool) ([]float32, error)
}

func xAlign(img gocv.Mat, five Five, area bool) (gocv.Mat, error) {
	out := gocv.NewMat()
	if !area {
		return out, Align(img, five, &out)
	}
	tpl := alignTemplate()
	s, err := FitSimilarity(five[:], tpl[:])
	if err != nil {
		return out, err
	}
	sc := math.Hypot(s.A, s.B)
	if sc >= 0.9 {
		return out, Align(img, five, &out)
	}
	// Region of the source that maps onto the 112 square (inverse map of
	// its corners), expanded a little, clipped.
	inv := func(p Point) Point {
		x, y := p.X-s.Tx, p.Y-s.Ty
		d := s.A*s.A + s.B*s.B
		return Point{(s.A*x + s.B*y) / d, (-s.B*x + s.A*y) / d}
	}
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range []Point{{0, 0}, {AlignedSize, 0}, {0, AlignedSize}, {AlignedSize, AlignedSize}} {
		p := inv(c)
		minX, minY, maxX, maxY = math.Min(minX, p.X), math.Min(minY, p.Y), math.Max(maxX, p.X), math.Max(maxY, p.Y)
	}
	r := image.Rect(int(minX)-2, int(minY)-2, int(maxX)+3, int(maxY)+3).Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	if r.Dx() < 8 || r.Dy() < 8 {
		return out, Align(img, five, &out)
	}
	roi := img.Region(r)
	defer roi.Close()
	small := gocv.NewMat()
	defer small.Close()
	w, h := int(math.Round(float64(r.Dx())*sc)), int(math.Round(float64(r.Dy())*sc))
	gocv.Resize(roi, &small, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
	fx, fy := float64(w)/float64(r.Dx()), float64(h)/float64(r.Dy())
	var f2 Five
	for i, p := range five {
		f2[i] = Point{(p.X-float64(r.Min.X)+0.5)*fx - 0.5, (p.Y-float64(r.Min.Y)+0.5)*fy - 0.5}
	}
	return out, Align(small, f2, &out)
}

func xEmbed(m *Models, aligned gocv.Mat, grey, flip bool, blur float64) ([]float32, error) {
	a := aligned.Clone()
	defer a.Close()
	if blur > 0 {
		b := gocv.NewMat()
		gocv.GaussianBlur(a, &b, image.Pt(0, 0), blur, blur, gocv.BorderReplicate)
		a.Close()
		a = b
	}
	if grey {
		g := gocv.NewMat()
		greyBGR(a, &g)
		a.Close()
		a = g
	}
	t, err := m.EmbedAligned(a)
	if err != nil {
		return nil, err
	}
	v := t.Floats()
	if flip {
		f := gocv.NewMat()
		defer f.Close()
		gocv.Flip(a, &f, 1)
		t2, err := m.EmbedAligned(f)
		if err != nil {
			return nil, err
		}
		for i, x := range t2.Floats() {
			v[i] += x
		}
	}
	return v, nil
}

func xv(name string, area, flipRef, flipProbe bool, blurProbe, blurRef float64) xVariant {
	return xVariant{name, func(m *Models, img gocv.Mat, _ image.Rectangle, l *Landmarks, grey, ref bool) ([]float32, error) {
		al, err := xAlign(img, l.Five(), area)
		if err != nil {
			al.Close()
			return nil, err
		}
		defer al.Close()
		flip, blur := flipProbe, blurProbe
		if ref {
			flip, blur = flipRef, blurRef
		}
		return xEmbed(m, al, grey, flip, blur)
	}}
}

func TestCalibrationVariants(t *testing.T) {
	dataset := os.Getenv("KIOSK_FACES_LFW")
	if dataset == "" {
		t.Skip("lab measurement: set KIOSK_FACES_LFW to the faces-lfw folder")
	}
	m := models(t)
	variants := []xVariant{
		xv("base", false, false, false, 0, 0),
		xv("flip both", false, true, true, 0, 0),
		xv("flip ref", false, true, false, 0, 0),
		xv("area", true, false, false, 0, 0),
		xv("area+flip", true, true, true, 0, 0),
		xv("blur probe 0.7", false, false, false, 0.7, 0),
		xv("blur both 0.7", false, false, false, 0.7, 0.7),
	}
	variants = append(variants, xGeomVariants()...)
	if s := os.Getenv("KIOSK_CALIB_VARIANTS"); s != "" {
		var keep []xVariant
		for _, v := range variants {
			if slices.Contains(strings.Split(s, ","), v.name) {
				keep = append(keep, v)
			}
		}
		variants = keep
	}
	nv := len(variants)
	type person struct {
		half   int
		refs   [2][][]float32   // kind → variant → emb (nil: declined)
		probes [2][][][]float32 // kind → probe → variant
	}
	var ps []*person
	dirs, _ := os.ReadDir(dataset)
	limit := math.MaxInt
	if s := os.Getenv("KIOSK_CALIB_PEOPLE"); s != "" {
		fmt.Sscan(s, &limit)
	}
	// KIOSK_CALIB_SWAP=1 chooses on the other half, to see whether a
	// difference holds both ways.
	swap := 0
	if os.Getenv("KIOSK_CALIB_SWAP") != "" {
		swap = 1
	}
	gates := DefaultReferenceGates()
	for _, d := range dirs {
		if !d.IsDir() || len(ps) >= limit {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dataset, d.Name(), "*.jpg"))
		slices.Sort(files)
		if len(files) < 2 {
			continue
		}
		p := &person{half: (len(ps) + swap) % 2}
		ps = append(ps, p)
		for i, f := range files {
			img := gocv.IMRead(f, gocv.IMReadColor)
			faces, err := m.Detect(img)
			if err != nil {
				t.Fatal(err)
			}
			// central face
			best, bestD := -1, math.Inf(1)
			for j, fc := range faces {
				c := fc.Box.Min.Add(fc.Box.Max).Div(2)
				if dd := math.Hypot(float64(c.X)-float64(img.Cols())/2, float64(c.Y)-float64(img.Rows())/2); dd < bestD {
					best, bestD = j, dd
				}
			}
			if best < 0 {
				img.Close()
				continue
			}
			l, err := m.Landmarks(img, faces[best].Box)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				for k, grey := range []bool{false, true} {
					jp2, err := ChipPortrait(img, l, ChipPortraitOptions{Grey: grey})
					if err != nil {
						t.Fatal(err)
					}
					ref, err := m.ReferenceFromImage(jp2, gates)
					if err != nil {
						continue
					}
					ref.Wipe()
					rimg, _ := gocv.IMDecode(jp2, gocv.IMReadColor)
					a, err := m.Analyze(rimg)
					if err != nil {
						t.Fatal(err)
					}
					embs := make([][]float32, nv)
					for vi, v := range variants {
						embs[vi], err = v.embed(m, rimg, a.Faces[a.Primary].Box, a.Landmarks, grey, true)
						if err != nil {
							t.Fatal(err)
						}
					}
					p.refs[k] = embs
					rimg.Close()
				}
			} else {
				for k, grey := range []bool{false, true} {
					embs := make([][]float32, nv)
					for vi, v := range variants {
						embs[vi], err = v.embed(m, img, faces[best].Box, l, grey, false)
						if err != nil {
							t.Fatal(err)
						}
					}
					p.probes[k] = append(p.probes[k], embs)
				}
			}
			img.Close()
		}
	}
	cos := func(a, b []float32, mu []float64) float64 {
		var d, na, nb float64
		for i := range a {
			x, y := float64(a[i]), float64(b[i])
			if mu != nil {
				x -= mu[i]
				y -= mu[i]
			}
			d += x * y
			na += x * x
			nb += y * y
		}
		return d / math.Sqrt(na*nb)
	}
	norm := func(a []float32) []float64 {
		var n float64
		for _, x := range a {
			n += float64(x) * float64(x)
		}
		out := make([]float64, len(a))
		for i, x := range a {
			out[i] = float64(x) / math.Sqrt(n)
		}
		return out
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	var baseAcc []bool
	for vi, v := range variants {
		for _, centre := range []bool{false, true} {
			if centre && os.Getenv("KIOSK_CALIB_CENTRE") == "" && v.name != "base" {
				continue
			}
			var mu []float64
			if centre {
				mu = make([]float64, Dim)
				n := 0
				for _, p := range ps {
					if p.half != 0 {
						continue
					}
					for k := range 2 {
						for _, pr := range p.probes[k] {
							for i, x := range norm(pr[vi]) {
								mu[i] += x
							}
							n++
						}
					}
				}
				for i := range mu {
					mu[i] /= float64(n)
				}
			}
			// normalised copies
			nz := func(a []float32) []float32 {
				b := norm(a)
				out := make([]float32, len(b))
				for i := range b {
					out[i] = float32(b[i])
				}
				return out
			}
			var gen, imp [2][]float64
			for _, a := range ps {
				for k := range 2 {
					if a.refs[k] == nil {
						continue
					}
					ra := nz(a.refs[k][vi])
					for _, b := range ps {
						if b.half != a.half {
							continue
						}
						for _, pr := range b.probes[k] {
							s := cos(ra, nz(pr[vi]), mu)
							if a == b {
								gen[a.half] = append(gen[a.half], s)
							} else {
								imp[a.half] = append(imp[a.half], s)
							}
						}
					}
				}
			}
			th := ThresholdAtFAR(imp[0], 1e-4)
			fr := len(gen[1]) - CountAtLeast(gen[1], th)
			fa := CountAtLeast(imp[1], th)
			roc := EvaluateScores(gen[1], imp[1], 1e-4)
			// FRR on test at the test half's own FAR 1e-4 point (oracle)
			oth := roc.ThresholdAtFAR
			if (v.name == "base" || v.name == "geom") && !centre && limit == math.MaxInt && swap == 0 && math.Abs(th-DefaultThreshold) > 0.001 {
				t.Errorf("base embedding: threshold %.4f on the choose half, shipped %.3f", th, DefaultThreshold)
			}
			paired := ""
			if !centre {
				acc := make([]bool, len(gen[1]))
				for i, g := range gen[1] {
					acc[i] = g >= th
				}
				if baseAcc == nil {
					baseAcc = acc
				} else if len(baseAcc) == len(acc) {
					// Pairs the base rejects and this variant accepts, and
					// the reverse: what a paired (McNemar) comparison counts.
					var gain, loss int
					for i := range acc {
						gain += b2i(acc[i] && !baseAcc[i])
						loss += b2i(!acc[i] && baseAcc[i])
					}
					paired = fmt.Sprintf(" | vs first: +%d −%d", gain, loss)
				}
			}
			roc3 := EvaluateScores(gen[1], imp[1], 1e-3)
			t.Logf("%-16s centre=%-5v th %.4f | test: FRR %.2f%% (%d/%d, 95%%≤ %.2f%%) FAR %.4f%% (%d/%d, 95%%≤ %.4f%%) EER %.2f%% | oracle th %.3f FRR %.2f%% | choose FRR %.2f%% | FRR@test FAR 0.1%% %.2f%%%s",
				v.name, centre, th, 100*float64(fr)/float64(len(gen[1])), fr, len(gen[1]), 100*UpperBound95(fr, len(gen[1])),
				100*float64(fa)/float64(len(imp[1])), fa, len(imp[1]), 100*UpperBound95(fa, len(imp[1])), 100*roc.EER,
				oth, 100*(1-roc.TARAtThreshold), 100*float64(len(gen[0])-CountAtLeast(gen[0], th))/float64(len(gen[0])), 100*(1-roc3.TARAtThreshold), paired)
		}
	}
}

// Alignment geometry, landmark and reference-averaging variants.

// xGeom says how a geometry variant aligns a face.
type xGeom struct {
	zoom, dy float64    // the template scaled about the crop's centre, then moved down
	w        [5]float64 // fit weights of eyes, nose, mouth corners (zero: all 1)
	lm2      bool       // a second landmark pass on a box placed from the first
	lm2Scale float64    // that box's side over the detector's mean (zero: 1)
	lm2Ref   bool       // the second pass for the reference only
	jitter   []xJit     // reference only: unit embeddings averaged over these
}

// xJit moves the template: scale about the crop's centre, then shift.
type xJit struct{ s, dx, dy float64 }

func (j xJit) apply(tpl Five) Five {
	c := float64(AlignedSize) / 2
	for i, p := range tpl {
		tpl[i] = Point{c + j.s*(p.X-c) + j.dx, c + j.s*(p.Y-c) + j.dy}
	}
	return tpl
}

// xFitWeighted is FitSimilarity with a weight per point.
func xFitWeighted(src, dst []Point, w []float64) (Similarity, error) {
	var sw float64
	var ms, md Point
	for i := range src {
		sw += w[i]
		ms.X += w[i] * src[i].X
		ms.Y += w[i] * src[i].Y
		md.X += w[i] * dst[i].X
		md.Y += w[i] * dst[i].Y
	}
	ms.X, ms.Y, md.X, md.Y = ms.X/sw, ms.Y/sw, md.X/sw, md.Y/sw
	var num, numI, den float64
	for i := range src {
		sx, sy := src[i].X-ms.X, src[i].Y-ms.Y
		dx, dy := dst[i].X-md.X, dst[i].Y-md.Y
		num += w[i] * (sx*dx + sy*dy)
		numI += w[i] * (sx*dy - sy*dx)
		den += w[i] * (sx*sx + sy*sy)
	}
	if den < 1e-9 {
		return Similarity{}, fmt.Errorf("no spread")
	}
	a, b := num/den, numI/den
	return Similarity{A: a, B: b, Tx: md.X - (a*ms.X - b*ms.Y), Ty: md.Y - (b*ms.X + a*ms.Y)}, nil
}

func xWarp(img gocv.Mat, s Similarity, dst *gocv.Mat) {
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer m.Close()
	for i, v := range []float64{s.A, -s.B, s.Tx, s.B, s.A, s.Ty} {
		m.SetDoubleAt(i/3, i%3, v)
	}
	gocv.WarpAffineWithParams(img, dst, m, image.Pt(AlignedSize, AlignedSize),
		gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
}

// xLandmarkBox places a square box from landmarks as the detector places
// it on average (measured on 212 faces of the set: side 3.11·√(eye–mouth
// distance · inter-eye distance), centre 0.075 side above the middle of
// the eye and mouth midpoints).
func xLandmarkBox(l *Landmarks, scale float64) image.Rectangle {
	f := l.Five()
	em := Point{(f[0].X + f[1].X) / 2, (f[0].Y + f[1].Y) / 2}
	mm := Point{(f[3].X + f[4].X) / 2, (f[3].Y + f[4].Y) / 2}
	side := scale * 3.11 * math.Sqrt(math.Hypot(mm.X-em.X, mm.Y-em.Y)*l.InterEye())
	cx, cy := (em.X+mm.X)/2, (em.Y+mm.Y)/2-0.075*side
	return image.Rect(int(math.Round(cx-side/2)), int(math.Round(cy-side/2)), int(math.Round(cx+side/2)), int(math.Round(cy+side/2)))
}

func xg(name string, g xGeom) xVariant {
	return xVariant{name, func(m *Models, img gocv.Mat, _ image.Rectangle, l *Landmarks, grey, ref bool) ([]float32, error) {
		if g.lm2 && (ref || !g.lm2Ref) {
			sc := g.lm2Scale
			if sc == 0 {
				sc = 1
			}
			var err error
			if l, err = m.Landmarks(img, xLandmarkBox(l, sc)); err != nil {
				return nil, err
			}
		}
		w := g.w[:]
		if g.w == [5]float64{} {
			w = []float64{1, 1, 1, 1, 1}
		}
		zoom := g.zoom
		if zoom == 0 {
			zoom = 1
		}
		jits := []xJit{{1, 0, 0}}
		if ref && g.jitter != nil {
			jits = g.jitter
		}
		five := l.Five()
		sum := make([]float32, Dim)
		for _, j := range jits {
			tpl := xJit{zoom, 0, g.dy}.apply(alignTemplate())
			tpl = j.apply(tpl)
			s, err := xFitWeighted(five[:], tpl[:], w)
			if err != nil {
				return nil, err
			}
			al := gocv.NewMat()
			xWarp(img, s, &al)
			v, err := xEmbed(m, al, grey, false, 0)
			al.Close()
			if err != nil {
				return nil, err
			}
			var n float64
			for _, x := range v {
				n += float64(x) * float64(x)
			}
			for i, x := range v {
				sum[i] += float32(float64(x) / math.Sqrt(n))
			}
		}
		return sum, nil
	}}
}

func xGeomVariants() []xVariant {
	j5 := []xJit{{1, 0, 0}, {1, -1.5, 0}, {1, 1.5, 0}, {1, 0, -1.5}, {1, 0, 1.5}}
	j9 := append(slices.Clone(j5), xJit{0.97, 0, 0}, xJit{1.03, 0, 0}, xJit{1, -1.5, -1.5}, xJit{1, 1.5, 1.5})
	jw := []xJit{{1, 0, 0}, {1, -3, 0}, {1, 3, 0}, {1, 0, -3}, {1, 0, 3}, {0.94, 0, 0}, {1.06, 0, 0}, {1, -3, -3}, {1, 3, 3}}
	return []xVariant{
		xg("geom", xGeom{}), // must equal base
		xg("zoom 0.90", xGeom{zoom: 0.90}),
		xg("zoom 0.95", xGeom{zoom: 0.95}),
		xg("zoom 1.05", xGeom{zoom: 1.05}),
		xg("zoom 1.10", xGeom{zoom: 1.10}),
		xg("dy -4", xGeom{dy: -4}),
		xg("dy -2", xGeom{dy: -2}),
		xg("dy +2", xGeom{dy: 2}),
		xg("dy +4", xGeom{dy: 4}),
		xg("mouth 0.5", xGeom{w: [5]float64{1, 1, 1, 0.5, 0.5}}),
		xg("mouth 0.25", xGeom{w: [5]float64{1, 1, 1, 0.25, 0.25}}),
		xg("eyes+nose", xGeom{w: [5]float64{1, 1, 1, 0, 0}}),
		xg("lm2", xGeom{lm2: true}),
		xg("refjit5", xGeom{jitter: j5}),
		xg("refjit9", xGeom{jitter: j9}),
		xg("refjit9 wide", xGeom{jitter: jw}),
		xg("lm2+refjit9", xGeom{lm2: true, jitter: j9}),
		xg("lm2 ref only", xGeom{lm2: true, lm2Ref: true}),
		xg("lm2 box 0.9", xGeom{lm2: true, lm2Scale: 0.9}),
		xg("lm2 box 1.1", xGeom{lm2: true, lm2Scale: 1.1}),
		xg("dy -1", xGeom{dy: -1}),
		xg("dy +1", xGeom{dy: 1}),
	}
}
