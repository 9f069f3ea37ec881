package face

import (
	"image"
	"math"
)

// Following the tracked face without the detector. In the match phase the
// detector (≈ 6 ms of a ≈ 17 ms frame) is skipped on frames where the face
// can be found from the previous frame's landmarks: the landmark model's
// box is derived from them, and the new landmarks give the frame's
// detector-like box (for the gates, the guide, the tracker and the
// liveness crop). How the detector's box sits on a face's landmarks
// depends on the face (its shape, its pose), so the relation is measured
// on the track's last detected frame and carried over, not fixed: on the
// test videos at 640×480 the landmarks found from the derived box departed from those
// found from the detector's own box by 0.2-0.8 % of the inter-eye distance
// on average (TestFollowAgreesWithDetector), less than the face moves
// from one frame to the next; one relation fitted over all three videos
// (tried while building this) left 2-3 times that error.

// boxFit is where the detector's box lies on a set of landmarks, in units
// of the landmarks' spread (the root mean square distance of the 68
// points from their centroid): its centre's offset from the centroid and
// its width and height.
type boxFit struct{ dx, dy, w, h float64 }

// spread returns the centroid of the 68 landmarks and their spread.
func (l *Landmarks) spread() (Point, float64) {
	var c Point
	for _, p := range l {
		c.X += p.X
		c.Y += p.Y
	}
	c.X /= float64(len(l))
	c.Y /= float64(len(l))
	var s float64
	for _, p := range l {
		s += (p.X-c.X)*(p.X-c.X) + (p.Y-c.Y)*(p.Y-c.Y)
	}
	return c, math.Sqrt(s / float64(len(l)))
}

// fitBox measures how the detector box raw lies on landmarks l (found
// from that box); ok is false for degenerate landmarks.
func fitBox(l *Landmarks, raw image.Rectangle) (boxFit, bool) {
	c, s := l.spread()
	if !(s > 1) || raw.Empty() {
		return boxFit{}, false
	}
	return boxFit{
		dx: (float64(raw.Min.X+raw.Max.X)/2 - c.X) / s,
		dy: (float64(raw.Min.Y+raw.Max.Y)/2 - c.Y) / s,
		w:  float64(raw.Dx()) / s, h: float64(raw.Dy()) / s,
	}, true
}

// raw is the detector-like box of landmarks l (not clipped).
func (b boxFit) raw(l *Landmarks) image.Rectangle {
	c, s := l.spread()
	cx, cy, w, h := c.X+b.dx*s, c.Y+b.dy*s, b.w*s, b.h*s
	return image.Rect(int(math.Round(cx-w/2)), int(math.Round(cy-h/2)), int(math.Round(cx+w/2)), int(math.Round(cy+h/2)))
}

// minFollowSide is the smallest box followed, in pixels (a face that
// small fails the size gate anyway).
const minFollowSide = 16

// follower decides, frame by frame, whether the match phase may follow
// the tracked face from the last landmarks instead of detecting it.
type follower struct {
	every int    // the detector runs at least on every every-th frame
	fit   boxFit // measured on the track's last detected frame
	// since is how many frames were followed since the last detection.
	since int
	// last are the previous frame's landmarks, kept only when that frame
	// passed every gate and its embedding and liveness checks (keep).
	last *Landmarks
}

// detected records a frame the detector found the tracked face on, with
// the landmarks found from its box.
func (f *follower) detected(l *Landmarks, raw image.Rectangle) {
	f.since = 0
	if fit, ok := fitBox(l, raw); ok {
		f.fit = fit
	} else {
		f.fit = boxFit{}
	}
}

// keep lets the next frame follow from landmarks l.
func (f *follower) keep(l *Landmarks) { f.last = l }

// reset makes the next frame detect (a new or lost track, another phase).
func (f *follower) reset() { *f = follower{every: f.every} }

// take returns the box the landmark model should see on this frame, or
// ok false when the frame must be detected: following is off (every ≤ 1),
// the previous frame was not kept, the detector is due, or the derived
// box leaves the frame. Whatever it returns, the previous landmarks are
// used up: a frame that is not kept again is followed by a detection.
func (f *follower) take(frame image.Point) (box image.Rectangle, ok bool) {
	last := f.last
	f.last = nil
	if f.every <= 1 || last == nil || f.fit.h <= 0 || f.since+1 >= f.every {
		return image.Rectangle{}, false
	}
	bounds := image.Rectangle{Max: frame}
	raw := f.fit.raw(last)
	box = squareBox(raw, bounds)
	if !raw.In(bounds) || box.Dx() != raw.Dy() || box.Dy() != raw.Dy() || box.Dx() < minFollowSide {
		return image.Rectangle{}, false // at the frame's edge, or tiny: the detector decides
	}
	return box, true
}

// derive gives the frame's detection from the landmarks found in the
// followed box (Score is left zero: no detector scored it); ok is false
// when the face it gives leaves the frame.
func (f *follower) derive(l *Landmarks, frame image.Point) (Detection, bool) {
	bounds := image.Rectangle{Max: frame}
	raw := f.fit.raw(l)
	if !raw.In(bounds) {
		return Detection{}, false
	}
	return Detection{Box: squareBox(raw, bounds), Raw: raw}, true
}
