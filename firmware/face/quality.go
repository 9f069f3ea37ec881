package face

import (
	"image"
	"math"
)

// Guidance codes for the screen: each names what the person should do.
// The UI catalogues hold the words.
const (
	GuideLookAtCamera = "look_at_camera" // no usable face, or head turned
	GuideComeCloser   = "come_closer"
	GuideMoveBack     = "move_back"
	GuideCenterFace   = "center_face"
	GuideHoldStill    = "hold_still"
	GuideMoreLight    = "more_light"
	GuideLessLight    = "less_light"
	GuideOpenEyes     = "open_eyes"
	GuideSmile        = "smile"
	GuideOnePerson    = "one_person" // a second face is in view while consenting
)

// Gates are the quality limits a frame must meet before it is used.
type Gates struct {
	// MinInterEye is the smallest eye-centre distance in pixels
	// ("come_closer"); MaxInterEyeFrac the largest, as a fraction of the
	// frame width ("move_back").
	MinInterEye     float64 `json:"min_inter_eye"`
	MaxInterEyeFrac float64 `json:"max_inter_eye_frac"`
	// MaxOffCenter is how far the face centre may be from the frame centre,
	// as a fraction of the frame's width and height ("center_face").
	MaxOffCenter float64 `json:"max_off_center"`
	// MaxYaw, MaxPitch and MaxRoll bound the head pose in degrees
	// ("look_at_camera"), all three from the landmarks (roll on the eye
	// line, yaw and pitch by LandmarkPose).
	MaxYaw   float64 `json:"max_yaw"`
	MaxPitch float64 `json:"max_pitch"`
	MaxRoll  float64 `json:"max_roll"`
	// MinSharpness is the smallest variance of the Laplacian of the face
	// at 96×96 ("hold_still").
	MinSharpness float64 `json:"min_sharpness"`
	// MinMean and MaxMean bound the face's mean grey level; MaxClipped is
	// the largest fraction of black or white pixels ("more_light",
	// "less_light").
	MinMean    float64 `json:"min_mean"`
	MaxMean    float64 `json:"max_mean"`
	MaxClipped float64 `json:"max_clipped"`
	// MinEyeOpen is the eye model's least p(open) for each eye and
	// MaxClosedEAR the landmark eye aspect ratio below which eyes count as
	// closed: a frame is rejected ("open_eyes") only when both say closed.
	// The eye model alone called 80–90 % of the webcam clips' frames closed
	// although the eyes are visibly open (aspect 0.24–0.30).
	MinEyeOpen   float64 `json:"min_eye_open"`
	MaxClosedEAR float64 `json:"max_closed_ear"`
}

// DefaultGates are the limits measured on the test media (see README,
// "Face verification thresholds").
func DefaultGates() Gates {
	return Gates{
		MinInterEye: 24, MaxInterEyeFrac: 0.4, MaxOffCenter: 0.3,
		MaxYaw: 25, MaxPitch: 25, MaxRoll: 20,
		MinSharpness: 15,
		MinMean:      50, MaxMean: 215, MaxClipped: 0.25,
		MinEyeOpen: 0.3, MaxClosedEAR: 0.22,
	}
}

// geometry checks size, centring and roll, which need only the landmarks.
func (g Gates) geometry(box image.Rectangle, l *Landmarks, frame image.Point) string {
	ie := l.InterEye()
	switch {
	case ie < g.MinInterEye:
		return GuideComeCloser
	case g.MaxInterEyeFrac > 0 && ie > g.MaxInterEyeFrac*float64(frame.X):
		return GuideMoveBack
	}
	c := box.Min.Add(box.Max)
	dx := math.Abs(float64(c.X)/2-float64(frame.X)/2) / float64(frame.X)
	dy := math.Abs(float64(c.Y)/2-float64(frame.Y)/2) / float64(frame.Y)
	if dx > g.MaxOffCenter || dy > g.MaxOffCenter {
		return GuideCenterFace
	}
	if math.Abs(l.Roll()) > g.MaxRoll {
		return GuideLookAtCamera
	}
	return ""
}

// pixels checks exposure and sharpness.
func (g Gates) pixels(s FaceStats) string {
	switch {
	case s.Mean < g.MinMean || s.Dark > g.MaxClipped:
		return GuideMoreLight
	case s.Mean > g.MaxMean || s.Bright > g.MaxClipped:
		return GuideLessLight
	case s.Sharpness < g.MinSharpness:
		return GuideHoldStill
	}
	return ""
}

func (g Gates) eyes(left, right, ear float64) string {
	if (left < g.MinEyeOpen || right < g.MinEyeOpen) && ear < g.MaxClosedEAR {
		return GuideOpenEyes
	}
	return ""
}

func (g Gates) pose(p Pose) string {
	if math.Abs(p.Yaw) > g.MaxYaw || math.Abs(p.Pitch) > g.MaxPitch {
		return GuideLookAtCamera
	}
	return ""
}
