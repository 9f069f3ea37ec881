package daemon

import (
	"context"
	"errors"
	"fmt"

	"kiosk/firmware/face"
	"kiosk/firmware/session"
)

// unavailableFace refuses the face step with the reason it cannot run
// (a missing or altered model, no camera): sessions then decline with a
// technical reason instead of matching without a verified model.
type unavailableFace struct{ err error }

func (u unavailableFace) Verify(context.Context, []byte, func(session.FaceProgress)) (session.FaceResult, error) {
	return session.FaceResult{}, u.err
}

// newFace loads every model (each checked against its SHA-256 first) and
// builds the verifier on the camera's frames.
func (d *Daemon) newFace() (session.Face, func()) {
	if d.pump == nil {
		err := errors.New("face verification needs a camera (camera.backend is none)")
		d.faceErr = err.Error()
		return unavailableFace{err}, nil
	}
	models, err := face.LoadModels(d.cfg.Face.ModelsDir, face.Options{Models: face.AllModels(), Logger: d.log.With("component", "face")})
	if err != nil {
		d.faceErr = fmt.Sprintf("face verification refused: %v", err)
		d.log.Error("face models", "dir", d.cfg.Face.ModelsDir, "err", err)
		return unavailableFace{err}, nil
	}
	cfg := face.DefaultConfig()
	cfg.MatchThreshold = d.cfg.Policy.MatchThreshold
	cfg.LivenessThreshold = d.cfg.Policy.LivenessThreshold
	cfg.MatchTimeout = d.cfg.Face.MatchTimeout
	cfg.SmileTimeout = d.cfg.Face.SmileTimeout
	cfg.SmileThreshold = d.cfg.Face.SmileThreshold
	cfg.MouthRise = d.cfg.Face.MouthRise
	cfg.SmileFrames = d.cfg.Face.SmileFrames
	cfg.ExpressionHz = d.cfg.Face.ExpressionHz
	cfg.DebugCaptureDir = d.cfg.Face.DebugCaptureDir
	cfg.Production = d.cfg.Device.Mode == "production"
	cfg.Logger = d.log.With("component", "face")
	v, err := face.NewVerifier(models, d.pump, cfg)
	if err != nil {
		models.Close()
		d.faceErr = err.Error()
		return unavailableFace{err}, nil
	}
	d.faceModels = models.Hashes()
	d.facePos = v.Position
	return v, func() { models.Close() }
}

func (d *Daemon) faceStatus() Component {
	if d.faceErr != "" {
		return Component{State: "down", Detail: d.faceErr}
	}
	return Component{State: "ok", Info: map[string]any{"models": d.faceModels}}
}
