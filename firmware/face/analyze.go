package face

import (
	"errors"
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// ErrNoFace reports an image in which the detector found no face.
var ErrNoFace = errors.New("face: no face found")

// ErrDecode reports image bytes that are not a decodable picture.
var ErrDecode = errors.New("face: cannot decode image")

// Quality describes the primary face of an Analysis.
type Quality struct {
	FaceWidth int     `json:"face_width"` // squared face box side, pixels
	InterEye  float64 `json:"inter_eye"`  // eye centre distance, pixels
	Score     float32 `json:"score"`      // detector score
}

// Analysis is the verification pipeline's result for one image.
type Analysis struct {
	Faces     []Detection // every face found, best score first
	Primary   int         // index in Faces of the face to verify
	Landmarks *Landmarks  // of the primary face
	Template  *Template   // of the primary face
}

// Quality returns the primary face's size and score.
func (a *Analysis) Quality() Quality {
	f := a.Faces[a.Primary]
	return Quality{FaceWidth: f.Box.Dx(), InterEye: a.Landmarks.InterEye(), Score: f.Score}
}

// Analyze runs detection, then landmarks, alignment and embedding of the
// primary face (Primary). It returns ErrNoFace, with an Analysis holding no
// faces, when nothing is detected.
func (m *Models) Analyze(img gocv.Mat) (*Analysis, error) {
	faces, err := m.Detect(img)
	if err != nil {
		return nil, err
	}
	a := &Analysis{Faces: faces, Primary: Primary(faces, image.Pt(img.Cols(), img.Rows()))}
	if a.Primary < 0 {
		return a, ErrNoFace
	}
	a.Landmarks, err = m.Landmarks(img, faces[a.Primary].Box)
	if err != nil {
		return nil, err
	}
	a.Template, err = m.Embed(img, a.Landmarks)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// AnalyzeImage decodes an encoded picture (JPEG, JPEG 2000 as JP2 file or
// J2K codestream, PNG, PNM, …) and analyses it. Grey pictures are expanded
// to BGR.
func (m *Models) AnalyzeImage(data []byte) (*Analysis, error) {
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
	return m.Analyze(img)
}

// TemplateFromImage makes a reference template from an encoded picture such
// as the chip's DG2 face (JPEG or JPEG 2000). It returns ErrNoFace when the
// picture holds no detectable face and ErrDecode when it is not a picture.
func (m *Models) TemplateFromImage(data []byte) (*Template, error) {
	a, err := m.AnalyzeImage(data)
	if err != nil {
		return nil, err
	}
	return a.Template, nil
}
