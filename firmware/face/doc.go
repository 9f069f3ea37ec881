// Package face verifies faces with OpenCV's DNN module (through gocv): it
// detects faces, finds 68 landmarks, aligns the face to 112×112 with a
// five-point least-squares similarity transform and embeds it as an
// L2-normalised 512-d template compared by cosine similarity.
//
// On top of that, Verifier runs the face step of a session (session.Face):
// it tracks the one primary face across camera frames, gates each frame on
// quality (size, centring, pose, sharpness, exposure, open eyes) with a
// guidance code for the screen, matches good frames against the chip
// photo, checks passive liveness, and takes the person's consent from a
// smile measured against their own neutral baseline. Thresholds are in
// Config (DefaultConfig holds the calibrated values).
//
// The ONNX models come from `make models` and are checked against the
// SHA-256 manifest compiled into this package (models.sha256) before OpenCV
// reads them. Images, crops and templates are biometric data: this package
// never logs or writes them, and Template.Wipe clears a template when a
// session ends.
//
// This is the one package outside drivers/ that imports gocv.
package face
