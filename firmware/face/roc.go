package face

import (
	"math"
	"slices"
)

// ROC summarises how well similarity scores separate same-person
// (genuine) from different-person (impostor) pairs.
type ROC struct {
	Genuine  int `json:"genuine_pairs"`
	Impostor int `json:"impostor_pairs"`
	// AUC is the area under the ROC curve: the probability that a random
	// genuine pair scores above a random impostor pair (ties count half).
	AUC float64 `json:"auc"`
	// EER is the equal error rate, where false accepts and false rejects
	// balance, at EERThreshold.
	EER          float64 `json:"eer"`
	EERThreshold float64 `json:"eer_threshold"`
	// TAR (true accept rate) at the lowest thresholds giving a false
	// accept rate of at most 1 % and 0.1 %.
	TARAtFAR1  float64 `json:"tar_at_far_1pct"`
	TARAtFAR01 float64 `json:"tar_at_far_0_1pct"`
	// TargetFAR, the threshold reaching it and the TAR there.
	TargetFAR      float64 `json:"target_far"`
	ThresholdAtFAR float64 `json:"threshold_at_far"`
	TARAtThreshold float64 `json:"tar_at_threshold"`
	GenuineMin     float64 `json:"genuine_min"`
	GenuineMedian  float64 `json:"genuine_median"`
	ImpostorMax    float64 `json:"impostor_max"`
	ImpostorMedian float64 `json:"impostor_median"`
}

// rate returns the fraction of sorted (ascending) scores ≥ t.
func rate(sorted []float64, t float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i, _ := slices.BinarySearch(sorted, t)
	for i > 0 && sorted[i-1] >= t {
		i--
	}
	return float64(len(sorted)-i) / float64(len(sorted))
}

// thresholdAtFAR is the lowest threshold at which at most far of the
// impostor scores (sorted ascending) are accepted (score ≥ threshold).
func thresholdAtFAR(imp []float64, far float64) float64 {
	n := len(imp)
	if n == 0 {
		return math.Inf(-1)
	}
	k := int(math.Floor(far*float64(n) + 1e-9)) // impostors we may accept
	if k >= n {
		return math.Inf(-1)
	}
	// Accept only the k highest: the threshold sits just above the next.
	return math.Nextafter(imp[n-1-k], math.Inf(1))
}

// EvaluateScores computes the ROC summary; targetFAR picks
// ThresholdAtFAR (e.g. 0.001).
func EvaluateScores(genuine, impostor []float64, targetFAR float64) ROC {
	g, im := slices.Clone(genuine), slices.Clone(impostor)
	slices.Sort(g)
	slices.Sort(im)
	r := ROC{Genuine: len(g), Impostor: len(im), TargetFAR: targetFAR}
	if len(g) == 0 || len(im) == 0 {
		return r
	}
	r.GenuineMin, r.GenuineMedian = g[0], median(g)
	r.ImpostorMax, r.ImpostorMedian = im[len(im)-1], median(im)
	// AUC by ranks (Mann–Whitney U): for each genuine score, impostors
	// below it count 1, equal ones ½.
	var u float64
	for _, s := range g {
		lo, _ := slices.BinarySearch(im, s)
		hi := lo
		for hi < len(im) && im[hi] == s {
			hi++
		}
		u += float64(lo) + 0.5*float64(hi-lo)
	}
	r.AUC = u / float64(len(g)*len(im))
	// EER: scan every score as a threshold.
	best := math.Inf(1)
	for _, t := range slices.Concat(g, im) {
		far, frr := rate(im, t), 1-rate(g, t)
		if d := math.Abs(far - frr); d < best {
			best, r.EER, r.EERThreshold = d, (far+frr)/2, t
		}
	}
	r.TARAtFAR1 = rate(g, thresholdAtFAR(im, 0.01))
	r.TARAtFAR01 = rate(g, thresholdAtFAR(im, 0.001))
	r.ThresholdAtFAR = thresholdAtFAR(im, targetFAR)
	r.TARAtThreshold = rate(g, r.ThresholdAtFAR)
	return r
}

// UpperBound95 is the exact (Clopper-Pearson) two-sided 95 % upper
// confidence bound on a rate observed as k events in n trials: the p at
// which seeing k or fewer has probability 2.5 %. With k = 0 it is
// 1 − 0.025^(1/n) (≈ 3.7/n).
func UpperBound95(k, n int) float64 {
	if n <= 0 {
		return 1
	}
	if k >= n {
		return 1
	}
	// P(X ≤ k; n, p) falls as p rises: bisect for 0.025.
	lo, hi := float64(k)/float64(n), 1.0
	for range 100 {
		mid := (lo + hi) / 2
		if binomCDF(k, n, mid) > 0.025 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// binomCDF is P(X ≤ k) for X ~ Binomial(n, p), summed in log space.
func binomCDF(k, n int, p float64) float64 {
	if p <= 0 {
		return 1
	}
	if p >= 1 {
		return 0
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	ln, _ := math.Lgamma(float64(n + 1))
	var s float64
	for i := 0; i <= k; i++ {
		a, _ := math.Lgamma(float64(i + 1))
		b, _ := math.Lgamma(float64(n - i + 1))
		s += math.Exp(ln - a - b + float64(i)*lp + float64(n-i)*lq)
	}
	return math.Min(s, 1)
}

// ThresholdAtFAR is the lowest threshold at which at most far of the
// impostor scores are accepted (score ≥ threshold).
func ThresholdAtFAR(impostor []float64, far float64) float64 {
	s := slices.Clone(impostor)
	slices.Sort(s)
	return thresholdAtFAR(s, far)
}

// CountAtLeast returns how many scores are ≥ t.
func CountAtLeast(scores []float64, t float64) int {
	n := 0
	for _, s := range scores {
		if s >= t {
			n++
		}
	}
	return n
}
