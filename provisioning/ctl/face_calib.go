package ctl

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"kiosk/firmware/face"
)

// The reference-vs-probe evaluation: each person's first photo is made
// into a chip-like portrait (as a DG2 would hold it), in colour and grey,
// read back exactly as the kiosk reads a chip photo; the person's other
// photos are the probes (as camera frames). People are split in two
// halves: the threshold is chosen on one and the error rates reported on
// the other, so the reported figures are not in-sample.

// chipRow is one line of the table: error rates on one half, one kind of
// reference, at one threshold.
type chipRow struct {
	Half      string  `json:"half"` // "choose" or "test"
	Reference string  `json:"reference"`
	Threshold float64 `json:"threshold"`
	Refs      int     `json:"references"`
	Genuine   int     `json:"genuine"`
	Impostor  int     `json:"impostor"`
	FalseRej  int     `json:"false_rejects"`
	FalseAcc  int     `json:"false_accepts"`
	FRR       float64 `json:"frr"`
	FRR95     float64 `json:"frr_upper95"`
	FAR       float64 `json:"far"`
	FAR95     float64 `json:"far_upper95"`
	EER       float64 `json:"eer"`
}

type chipEval struct {
	People     int            `json:"people"`
	Images     int            `json:"images"`
	TargetFAR  float64        `json:"target_far"`
	Threshold  float64        `json:"threshold"` // chosen on the choose half
	Shipped    float64        `json:"shipped_threshold"`
	Declined   map[string]int `json:"references_declined,omitempty"` // reason → references
	NoFace     int            `json:"probes_without_face"`
	PortraitKB [2]float64     `json:"portrait_kb_min_max"`
	Rows       []chipRow      `json:"rows"`
	// The test half's highest impostor and lowest genuine comparisons at
	// the chosen threshold's side: reference folder, probe file, score.
	HighestImpostors []chipPair `json:"highest_impostors"`
	LowestGenuine    []chipPair `json:"lowest_genuine"`
	MS               float64    `json:"ms"`
	Description      string     `json:"description"`
}

// chipScores are one half's scores for one kind of reference.
type chipScores struct {
	refs     int
	gen, imp []float64
}

// chipPair names one comparison, for looking at the errors.
type chipPair struct {
	Reference string  `json:"reference"` // the person's folder
	Kind      string  `json:"kind"`      // colour or grey
	Probe     string  `json:"probe"`     // the probe's file, relative to the dataset
	Score     float64 `json:"score"`
}

// centralFace returns the index of the detection nearest the picture's
// centre: LFW labels the person in the middle, who is not always the
// largest face.
func centralFace(faces []face.Detection, img gocv.Mat) int {
	best, bestD := -1, math.Inf(1)
	cx, cy := float64(img.Cols())/2, float64(img.Rows())/2
	for i, f := range faces {
		c := f.Box.Min.Add(f.Box.Max).Div(2)
		if d := math.Hypot(float64(c.X)-cx, float64(c.Y)-cy); d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

func faceEvalChip(e *env, m *face.Models, dataset string, far float64, asJSON bool) int {
	start := time.Now()
	people, err := os.ReadDir(dataset)
	if err != nil {
		fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
		return ExitUsage
	}
	res := chipEval{TargetFAR: far, Shipped: face.DefaultThreshold, Declined: map[string]int{}}
	res.PortraitKB = [2]float64{math.Inf(1), 0}
	kinds := []string{"colour", "grey"}
	type person struct {
		name   string
		half   int
		refs   [2]*face.Reference // colour, grey; nil when declined
		probes [2][]*face.Template
		files  []string // the probes' files
	}
	var ps []*person
	defer func() {
		for _, p := range ps {
			for k := range 2 {
				p.refs[k].Wipe()
				for _, t := range p.probes[k] {
					t.Wipe()
				}
			}
		}
	}()
	gates := face.DefaultReferenceGates()
	for _, d := range people {
		if !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dataset, d.Name()))
		if err != nil {
			fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
			return ExitUsage
		}
		var imgs []string
		for _, f := range files {
			if f.Type().IsRegular() && evalExts[strings.ToLower(filepath.Ext(f.Name()))] {
				imgs = append(imgs, filepath.Join(dataset, d.Name(), f.Name()))
			}
		}
		slices.Sort(imgs)
		if len(imgs) < 2 {
			continue
		}
		p := &person{name: d.Name(), half: len(ps) % 2}
		ps = append(ps, p)
		res.Images += len(imgs)
		for i, path := range imgs {
			data, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintf(e.stderr, "kioskctl: %v\n", err)
				return ExitUsage
			}
			img, err := gocv.IMDecode(data, gocv.IMReadColor)
			if err != nil || img.Empty() {
				img.Close()
				fmt.Fprintf(e.stderr, "kioskctl: %s: not a picture\n", path)
				return ExitUsage
			}
			ok, err := chipSample(m, img, i == 0, p.refs[:], p.probes[:], gates, &res)
			img.Close()
			if err != nil {
				fmt.Fprintf(e.stderr, "kioskctl: %s: %v\n", path, err)
				return ExitFail
			}
			if !ok && i > 0 {
				res.NoFace++
			} else if ok && i > 0 {
				p.files = append(p.files, filepath.Join(d.Name(), filepath.Base(path)))
			}
		}
	}
	res.People = len(ps)
	// Scores per half and kind: every reference against every probe of
	// the same half (its own person's: genuine; others': impostor).
	var sc [2][2]chipScores
	var hi, lo []chipPair // the test half's
	for k := range 2 {
		for _, a := range ps {
			if a.refs[k] == nil {
				continue
			}
			s := &sc[a.half][k]
			s.refs++
			for _, b := range ps {
				if b.half != a.half {
					continue
				}
				for j, t := range b.probes[k] {
					v := face.Cosine(a.refs[k].Template, t)
					if a == b {
						s.gen = append(s.gen, v)
					} else {
						s.imp = append(s.imp, v)
					}
					if a.half == 1 {
						cp := chipPair{Reference: a.name, Kind: kinds[k], Probe: b.files[j], Score: round3(v)}
						if a == b {
							lo = keepExtreme(lo, cp, 10, func(x, y chipPair) bool { return x.Score < y.Score })
						} else {
							hi = keepExtreme(hi, cp, 10, func(x, y chipPair) bool { return x.Score > y.Score })
						}
					}
				}
			}
		}
	}
	all := func(h int) chipScores {
		return chipScores{refs: sc[h][0].refs + sc[h][1].refs, gen: slices.Concat(sc[h][0].gen, sc[h][1].gen), imp: slices.Concat(sc[h][0].imp, sc[h][1].imp)}
	}
	choose := all(0)
	if len(choose.gen) == 0 || len(choose.imp) == 0 {
		fmt.Fprintf(e.stderr, "kioskctl: %s: no genuine or impostor comparisons (need folders of 2+ photos)\n", dataset)
		return ExitUsage
	}
	res.Threshold = face.ThresholdAtFAR(choose.imp, far)
	row := func(half, kind string, s chipScores, t float64) chipRow {
		r := chipRow{Half: half, Reference: kind, Threshold: round3(t), Refs: s.refs, Genuine: len(s.gen), Impostor: len(s.imp)}
		r.FalseRej = len(s.gen) - face.CountAtLeast(s.gen, t)
		r.FalseAcc = face.CountAtLeast(s.imp, t)
		if r.Genuine > 0 {
			r.FRR, r.FRR95 = float64(r.FalseRej)/float64(r.Genuine), face.UpperBound95(r.FalseRej, r.Genuine)
		}
		if r.Impostor > 0 {
			r.FAR, r.FAR95 = float64(r.FalseAcc)/float64(r.Impostor), face.UpperBound95(r.FalseAcc, r.Impostor)
		}
		if r.Genuine > 0 && r.Impostor > 0 {
			r.EER = face.EvaluateScores(s.gen, s.imp, far).EER
		}
		return r
	}
	for _, t := range []float64{res.Threshold, res.Shipped} {
		res.Rows = append(res.Rows, row("choose", "all", choose, t))
		for k, kind := range kinds {
			res.Rows = append(res.Rows, row("test", kind, sc[1][k], t))
		}
		res.Rows = append(res.Rows, row("test", "all", all(1), t))
	}
	res.HighestImpostors, res.LowestGenuine = hi, lo
	res.MS = float64(time.Since(start).Milliseconds())
	res.Description = fmt.Sprintf("chip-like references (first photo of each person: ISO/IEC 19794-5 token crop, 240x320 JPEG 2000 %.1f-%.1f KB, colour and grey) vs the person's other photos; people split alternately into a choose half and a test half",
		res.PortraitKB[0], res.PortraitKB[1])
	if asJSON {
		printJSON(e, res)
		return ExitOK
	}
	printChipTable(e.stdout, res)
	return ExitOK
}

// chipSample adds one photo of a person: the first becomes the person's
// chip-like references (colour and grey), the others probes. It reports
// whether a face was found.
func chipSample(m *face.Models, img gocv.Mat, first bool, refs []*face.Reference, probes [][]*face.Template, g face.ReferenceGates, res *chipEval) (bool, error) {
	faces, err := m.Detect(img)
	if err != nil {
		return false, err
	}
	i := centralFace(faces, img)
	if i < 0 {
		if first {
			res.Declined[face.ReasonNoReferenceFace] += 2
		}
		return false, nil
	}
	l, err := m.Landmarks(img, faces[i].Box)
	if err != nil {
		return false, err
	}
	if first {
		for k, grey := range []bool{false, true} {
			jp2, err := face.ChipPortrait(img, l, face.ChipPortraitOptions{Grey: grey})
			if err != nil {
				return false, err
			}
			kb := float64(len(jp2)) / 1000
			res.PortraitKB[0], res.PortraitKB[1] = math.Min(res.PortraitKB[0], kb), math.Max(res.PortraitKB[1], kb)
			ref, err := m.ReferenceFromImage(jp2, g)
			clear(jp2)
			if reason, ok := face.IsReferenceDecline(err); ok {
				res.Declined[reason]++
				continue
			}
			if err != nil {
				return false, err
			}
			refs[k] = ref
		}
		return true, nil
	}
	for k, ref := range []*face.Reference{{}, {Grey: true}} {
		t, err := m.EmbedProbe(img, l, ref)
		if err != nil {
			return false, err
		}
		probes[k] = append(probes[k], t)
	}
	return true, nil
}

func printChipTable(w io.Writer, r chipEval) {
	fmt.Fprintf(w, "%d people, %d photos: %s\n", r.People, r.Images, r.Description)
	if len(r.Declined) > 0 || r.NoFace > 0 {
		fmt.Fprintf(w, "references declined: %v; probes without a face: %d\n", r.Declined, r.NoFace)
	}
	fmt.Fprintf(w, "threshold %.3f: the lowest with FAR ≤ %g on the choose half (shipped: %.3f)\n", r.Threshold, r.TargetFAR, r.Shipped)
	fmt.Fprintf(w, "%-6s %-6s %9s %5s %8s %9s %8s %11s %9s %11s %7s\n",
		"half", "ref", "threshold", "refs", "genuine", "impostor", "FRR", "FRR 95%≤", "FAR", "FAR 95%≤", "EER")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "%-6s %-6s %9.3f %5d %8d %9d %7.2f%% %10.2f%% %8.4f%% %10.4f%% %6.2f%%\n",
			x.Half, x.Reference, x.Threshold, x.Refs, x.Genuine, x.Impostor, 100*x.FRR, 100*x.FRR95, 100*x.FAR, 100*x.FAR95, 100*x.EER)
	}
	for _, p := range r.HighestImpostors[:min(5, len(r.HighestImpostors))] {
		fmt.Fprintf(w, "highest impostor %.3f: %s reference (%s) vs %s\n", p.Score, p.Reference, p.Kind, p.Probe)
	}
	for _, p := range r.LowestGenuine[:min(5, len(r.LowestGenuine))] {
		fmt.Fprintf(w, "lowest genuine   %.3f: %s reference (%s) vs %s\n", p.Score, p.Reference, p.Kind, p.Probe)
	}
}

// keepExtreme keeps the n most extreme pairs by better, most extreme first.
func keepExtreme(list []chipPair, p chipPair, n int, better func(a, b chipPair) bool) []chipPair {
	i, _ := slices.BinarySearchFunc(list, p, func(a, b chipPair) int {
		if better(a, b) {
			return -1
		}
		return 1
	})
	if i >= n {
		return list
	}
	list = slices.Insert(list, i, p)
	return list[:min(len(list), n)]
}
