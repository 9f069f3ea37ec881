package face

import (
	"math"
	"slices"
)

// The motion cue of liveness. A print, a card or a phone showing a still
// is a flat picture: however it is held and moved, its landmarks move
// together as a plane does, which under a kiosk camera's weak perspective
// is an affine map. A live face is not flat and not still: a head turn
// moves the nose against the cheeks, and blinks, speech and the smile
// move parts of the face against the rest. So the cue is how far the 68
// landmarks of later frames depart from the best affine map of an
// earlier frame's — the part of the motion no flat picture can make —
// over the inter-eye distance. A replayed video has that motion: it is
// left to the model (and remains the weak spot, README).

// motionWindow is how many landmark sets the cue keeps: at the kiosk's
// 25-30 fps about 2.5-3 s, so the window at a consent holds the smile's
// rise from the face at rest.
const motionWindow = 72

// motionBlock is how many consecutive sets are averaged before they are
// compared: the landmark model's jitter from frame to frame (what a still
// picture shows) shrinks by about √6, a movement lasting 0.2 s does not.
const motionBlock = 6

// DefaultLivenessMotion is the least motion cue a face must show to
// consent (Config.LivenessMotion): above every held picture of the
// simulated attack set (highest 0.0154), below 18 of 20 windows of 3 s of
// the test videos and the smiles that consent on them
// (TestLivenessMotionAttackSet, TestConsentFranck). Chosen on that small
// set: in-sample.
const DefaultLivenessMotion = 0.018

// motionFirst is the first landmark the cue uses: the jaw line (0-16) is
// left out, as the landmark model slides those points along the face's
// edge from frame to frame, which a still picture shows as much as a face.
const motionFirst = 17

// nonPlanar returns the RMS distance of b's landmarks (brows, eyes, nose,
// mouth) from the least-squares affine map of a's, over a's inter-eye
// distance.
func nonPlanar(a, b *Landmarks) float64 {
	ie := a.InterEye()
	if ie <= 0 {
		return 0
	}
	pa, pb := a[motionFirst:], b[motionFirst:]
	// Centre both sets: the translation then drops out, and the affine
	// part is two 2×2 normal equations sharing one matrix.
	ma, mb := mean(pa...), mean(pb...)
	var sxx, sxy, syy, ux, uy, vx, vy float64
	for i := range pa {
		x, y := pa[i].X-ma.X, pa[i].Y-ma.Y
		u, v := pb[i].X-mb.X, pb[i].Y-mb.Y
		sxx += x * x
		sxy += x * y
		syy += y * y
		ux += x * u
		uy += y * u
		vx += x * v
		vy += y * v
	}
	det := sxx*syy - sxy*sxy
	if det <= 1e-9 {
		return 0
	}
	// [p q; r s] solves [sxx sxy; sxy syy]·[p; q] = [ux; uy] (and r, s for v).
	p, q := (syy*ux-sxy*uy)/det, (sxx*uy-sxy*ux)/det
	r, s := (syy*vx-sxy*vy)/det, (sxx*vy-sxy*vx)/det
	var sum float64
	for i := range pa {
		x, y := pa[i].X-ma.X, pa[i].Y-ma.Y
		du := pb[i].X - mb.X - (p*x + q*y)
		dv := pb[i].Y - mb.Y - (r*x + s*y)
		sum += du*du + dv*dv
	}
	return math.Sqrt(sum/float64(len(pa))) / ie
}

// motionCue gathers the landmarks of the tracked face's frames.
type motionCue struct {
	ls []Landmarks
}

// add keeps l (the oldest set goes once the window is full).
func (c *motionCue) add(l *Landmarks) {
	if len(c.ls) == motionWindow {
		c.ls = slices.Delete(c.ls, 0, 1)
	}
	c.ls = append(c.ls, *l)
}

func (c *motionCue) reset() { c.ls = c.ls[:0] }

// frames is how many landmark sets the cue holds.
func (c *motionCue) frames() int { return len(c.ls) }

// value is the cue: the 90th percentile of the non-planar departures
// between every two blocks of motionBlock consecutive frames in the window
// (block means) — nearly the largest, but not one odd block. Fewer than two
// blocks give 0.
func (c *motionCue) value() float64 {
	var blocks []Landmarks
	for i := 0; i+motionBlock <= len(c.ls); i += motionBlock {
		var m Landmarks
		for _, l := range c.ls[i : i+motionBlock] {
			for p := range m {
				m[p].X += l[p].X / motionBlock
				m[p].Y += l[p].Y / motionBlock
			}
		}
		blocks = append(blocks, m)
	}
	var d []float64
	for i := range blocks {
		for j := i + 1; j < len(blocks); j++ {
			d = append(d, nonPlanar(&blocks[i], &blocks[j]))
		}
	}
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(0.9*float64(len(d)-1))]
}
