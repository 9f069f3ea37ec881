package face

import "image"

// IoU is the intersection over union of two rectangles (0 when either is
// empty).
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	ai := float64(in.Dx() * in.Dy())
	u := float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ai
	if u <= 0 {
		return 0
	}
	return ai / u
}

// Tracker follows the one primary face across frames. It starts on the
// largest, most central face (Primary) and from then on follows that face
// by box overlap alone, so a second person stepping in — even closer or
// more central — never takes over. When the face is not found for MaxMissed
// consecutive frames the track is lost; the next face seen starts a new
// track with a new ID, and whoever uses the tracker must treat it as a
// stranger (the Verifier re-matches it from scratch).
type Tracker struct {
	// MinIoU is the overlap a detection needs with the track's last box to
	// continue it (default 0.3; a face moves little between frames).
	MinIoU float64
	// MaxMissed is how many consecutive frames without the face end the
	// track (default 5).
	MaxMissed int

	id     int
	box    image.Rectangle
	missed int
	active bool
}

// TrackState says what Update did.
type TrackState int

// Track states.
const (
	TrackNone     TrackState = iota // no track and no face
	TrackNew                        // a new track started on this frame
	TrackFollowed                   // the tracked face is in this frame
	TrackMissing                    // the tracked face is not in this frame (yet to be lost)
	TrackLost                       // the tracked face was lost on this frame
)

// Update feeds one frame's detections. It returns the index of the tracked
// face in faces (−1 if absent), the track ID and what happened.
func (t *Tracker) Update(faces []Detection, frame image.Point) (idx, id int, st TrackState) {
	minIoU, maxMissed := t.MinIoU, t.MaxMissed
	if minIoU <= 0 {
		minIoU = 0.3
	}
	if maxMissed <= 0 {
		maxMissed = 5
	}
	if !t.active {
		i := Primary(faces, frame)
		if i < 0 {
			return -1, 0, TrackNone
		}
		t.id++
		t.active, t.box, t.missed = true, faces[i].Box, 0
		return i, t.id, TrackNew
	}
	best, bestIoU := -1, minIoU
	for i, f := range faces {
		if v := IoU(f.Box, t.box); v >= bestIoU {
			best, bestIoU = i, v
		}
	}
	if best >= 0 {
		t.box, t.missed = faces[best].Box, 0
		return best, t.id, TrackFollowed
	}
	t.missed++
	if t.missed >= maxMissed {
		t.active = false
		return -1, t.id, TrackLost
	}
	return -1, t.id, TrackMissing
}

// Follow continues the track on a box found without the detector (the
// match phase follows the face from its landmarks, follow.go). It refuses
// (false) when no track is active or the box overlaps the track's last
// box less than a detection would need to continue it: the caller then
// detects.
func (t *Tracker) Follow(box image.Rectangle) (id int, ok bool) {
	minIoU := t.MinIoU
	if minIoU <= 0 {
		minIoU = 0.3
	}
	if !t.active || IoU(box, t.box) < minIoU {
		return 0, false
	}
	t.box, t.missed = box, 0
	return t.id, true
}
