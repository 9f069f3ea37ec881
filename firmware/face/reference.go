package face

import (
	"errors"
	"fmt"
	"math"

	"gocv.io/x/gocv"
)

// The reference is the chip photo (ICAO 9303-10 §4.7.2, DG2; its image
// in ISO/IEC 19794-5 or 39794-5 form): small (often 240×320 or 480×640),
// compressed (JPEG or JPEG 2000 of 10-20 KB), sometimes grey, taken
// frontal under controlled conditions. It is checked for the qualities a
// compliant portrait has before any camera frame is compared with it.

// ReasonReferenceQuality declines a step whose chip photo holds a face too
// small, too uncertain or not frontal to compare with (see ReferenceGates).
const ReasonReferenceQuality = "reference_quality"

// ReferenceGates are the least a chip photo's face must offer.
type ReferenceGates struct {
	// MinInterEye is the least eye-centre distance in pixels: ISO/IEC
	// 19794-5 asks for 90 (60 for the smallest token images); a 240×320
	// chip portrait typically has 45-65.
	MinInterEye float64 `json:"min_inter_eye"`
	// MinScore is the least detector score.
	MinScore float32 `json:"min_score"`
	// MaxYaw bounds |nose offset from the eyes' midpoint| / inter-eye
	// distance (≈ 0 frontal, ≈ 0.35 at 25° of yaw); MaxRoll the eye line's
	// angle in degrees. Both from the landmarks.
	MaxYaw  float64 `json:"max_yaw"`
	MaxRoll float64 `json:"max_roll"`
}

// DefaultReferenceGates are set loosely below what chip-like portraits
// made from the calibration set show (README, "Face verification
// thresholds"): they refuse pictures a compliant chip photo cannot be,
// not merely poor ones.
func DefaultReferenceGates() ReferenceGates {
	return ReferenceGates{MinInterEye: 24, MinScore: 0.8, MaxYaw: 0.35, MaxRoll: 15}
}

// ReferenceQualityError says which check a chip photo failed.
type ReferenceQualityError struct {
	Check string // "inter_eye", "score", "yaw" or "roll"
	Value float64
	Limit float64
}

func (e *ReferenceQualityError) Error() string {
	return fmt.Sprintf("face: reference quality: %s %.3g beyond the limit %.3g", e.Check, e.Value, e.Limit)
}

// Reference is a chip photo prepared for matching.
type Reference struct {
	Template *Template
	// Grey is set for a grey picture: camera frames are then converted to
	// grey before they are embedded, so colour does not count against the
	// match.
	Grey    bool
	Quality ReferenceQuality
}

// ReferenceQuality is what the reference checks measured.
type ReferenceQuality struct {
	FaceWidth int     `json:"face_width"` // squared face box side, pixels
	InterEye  float64 `json:"inter_eye"`
	Score     float32 `json:"score"`
	Yaw       float64 `json:"yaw"`  // nose offset / inter-eye distance
	Roll      float64 `json:"roll"` // degrees
	Grey      bool    `json:"grey"`
	Width     int     `json:"width"`
	Height    int     `json:"height"`
}

// Wipe clears the reference's template.
func (r *Reference) Wipe() {
	if r != nil {
		r.Template.Wipe()
	}
}

// YawRatio is the horizontal offset of the nose tip from the eyes'
// midpoint, as a fraction of the inter-eye distance, along the eye line:
// a landmark proxy for yaw.
func (l *Landmarks) YawRatio() float64 {
	f := l.Five()
	ie := l.InterEye()
	if ie == 0 {
		return 0
	}
	ux, uy := (f[1].X-f[0].X)/ie, (f[1].Y-f[0].Y)/ie
	mx, my := (f[0].X+f[1].X)/2, (f[0].Y+f[1].Y)/2
	return ((f[2].X-mx)*ux + (f[2].Y-my)*uy) / ie
}

// isGrey reports whether a BGR picture has no colour: every pixel's
// channels within a few levels of each other (JPEG chroma noise).
func isGrey(img gocv.Mat) bool {
	chans := gocv.Split(img)
	defer func() {
		for i := range chans {
			wipe(&chans[i])
		}
	}()
	if len(chans) != 3 {
		return len(chans) == 1
	}
	diff := gocv.NewMat()
	defer wipe(&diff)
	for _, p := range [][2]int{{0, 1}, {1, 2}} {
		gocv.AbsDiff(chans[p[0]], chans[p[1]], &diff)
		_, mx, _, _ := gocv.MinMaxLoc(diff)
		if mx > 6 {
			return false
		}
	}
	return true
}

// greyBGR converts a BGR image to grey and back to three channels, into
// dst: what a grey reference is compared with.
func greyBGR(img gocv.Mat, dst *gocv.Mat) {
	g := gocv.NewMat()
	defer wipe(&g)
	gocv.CvtColor(img, &g, gocv.ColorBGRToGray)
	gocv.CvtColor(g, dst, gocv.ColorGrayToBGR)
}

// ReferenceFromImage decodes and checks a chip photo and embeds its face.
// It returns ErrDecode for bytes that are no picture, ErrNoFace when no
// face is found and a *ReferenceQualityError when the face fails g.
func (m *Models) ReferenceFromImage(data []byte, g ReferenceGates) (*Reference, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrDecode)
	}
	img, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	defer wipe(&img) // the chip photo, decoded
	if img.Empty() {
		return nil, fmt.Errorf("%w: not a supported picture format", ErrDecode)
	}
	a, err := m.Analyze(img)
	if err != nil {
		return nil, err
	}
	f := a.Faces[a.Primary]
	q := ReferenceQuality{
		FaceWidth: f.Box.Dx(), InterEye: a.Landmarks.InterEye(), Score: f.Score, Yaw: a.Landmarks.YawRatio(), Roll: a.Landmarks.Roll(),
		Grey: isGrey(img), Width: img.Cols(), Height: img.Rows(),
	}
	ref := &Reference{Template: a.Template, Grey: q.Grey, Quality: q}
	var qe *ReferenceQualityError
	switch {
	case q.InterEye < g.MinInterEye:
		qe = &ReferenceQualityError{Check: "inter_eye", Value: q.InterEye, Limit: g.MinInterEye}
	case q.Score < g.MinScore:
		qe = &ReferenceQualityError{Check: "score", Value: float64(q.Score), Limit: float64(g.MinScore)}
	case math.Abs(q.Yaw) > g.MaxYaw:
		qe = &ReferenceQualityError{Check: "yaw", Value: q.Yaw, Limit: g.MaxYaw}
	case math.Abs(q.Roll) > g.MaxRoll:
		qe = &ReferenceQualityError{Check: "roll", Value: q.Roll, Limit: g.MaxRoll}
	}
	if qe != nil {
		ref.Wipe()
		return nil, qe
	}
	return ref, nil
}

// EmbedProbe embeds the face with landmarks l in a camera frame as it is
// compared with ref: converted to grey first when the reference is grey.
func (m *Models) EmbedProbe(img gocv.Mat, l *Landmarks, ref *Reference) (*Template, error) {
	if ref == nil || !ref.Grey {
		return m.Embed(img, l)
	}
	if err := checkImage(img); err != nil {
		return nil, err
	}
	// Only the aligned 112×112 face needs converting.
	aligned := gocv.NewMat()
	defer wipe(&aligned)
	if err := Align(img, l.Five(), &aligned); err != nil {
		return nil, err
	}
	grey := gocv.NewMat()
	defer wipe(&grey)
	greyBGR(aligned, &grey)
	return m.EmbedAligned(grey)
}

// IsReferenceDecline reports whether err from ReferenceFromImage is the
// chip photo's fault (a decline), not the kiosk's.
func IsReferenceDecline(err error) (reason string, ok bool) {
	var qe *ReferenceQualityError
	switch {
	case errors.As(err, &qe):
		return ReasonReferenceQuality, true
	case errors.Is(err, ErrNoFace), errors.Is(err, ErrDecode):
		return ReasonNoReferenceFace, true
	}
	return "", false
}
