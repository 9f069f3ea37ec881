package face

import (
	"math"
	"testing"
)

func TestEvaluateScores(t *testing.T) {
	// Perfect separation.
	r := EvaluateScores([]float64{0.8, 0.9, 0.7}, []float64{0.1, 0.2, 0.3, 0.0}, 0.001)
	if r.AUC != 1 || r.EER != 0 || r.TARAtFAR01 != 1 || r.TARAtFAR1 != 1 || r.ThresholdAtFAR <= 0.3 || r.ThresholdAtFAR > 0.7 {
		t.Errorf("separable: %+v", r)
	}
	// One impostor above one genuine: 1 of 12 pairs out of order.
	r = EvaluateScores([]float64{0.8, 0.9, 0.25}, []float64{0.1, 0.2, 0.3, 0.0}, 0.25)
	if math.Abs(r.AUC-11.0/12) > 1e-12 {
		t.Errorf("AUC %v, want 11/12", r.AUC)
	}
	// FAR 25 % of 4 impostors: one may pass, so the threshold sits just
	// above 0.2 and accepts 0.25.
	if r.ThresholdAtFAR <= 0.2 || r.ThresholdAtFAR > 0.25 || r.TARAtThreshold != 1 {
		t.Errorf("threshold at FAR 25%%: %v, TAR %v", r.ThresholdAtFAR, r.TARAtThreshold)
	}
	if math.Abs(r.TARAtFAR1-2.0/3) > 1e-12 {
		t.Errorf("TAR at FAR 1%%: %v, want 2/3", r.TARAtFAR1)
	}
	if r.EER <= 0 || r.EER > 0.34 {
		t.Errorf("EER %v", r.EER)
	}
	// Ties count half.
	if r := EvaluateScores([]float64{0.5}, []float64{0.5}, 0.01); r.AUC != 0.5 {
		t.Errorf("tie AUC %v", r.AUC)
	}
	if r := EvaluateScores(nil, []float64{0.5}, 0.01); r.AUC != 0 || r.Genuine != 0 {
		t.Errorf("empty: %+v", r)
	}
}

// Clopper-Pearson bounds against values from the Beta quantile.
func TestUpperBound95(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		want float64
	}{
		{0, 100, 0.03621669},  // 1 − 0.025^(1/100)
		{0, 1000, 0.00368207}, // ≈ 3.69/n
		{5, 100, 0.11283491},  // Beta(0.975; 6, 95)
		{10, 10, 1},
	} {
		if got := UpperBound95(tc.k, tc.n); math.Abs(got-tc.want) > 2e-6 {
			t.Errorf("UpperBound95(%d, %d) = %.8f, want %.8f", tc.k, tc.n, got, tc.want)
		}
	}
}
