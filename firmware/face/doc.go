// Package face verifies faces with OpenCV's DNN module (through gocv): it
// detects faces, finds 68 landmarks, aligns the face to 112×112 with a
// five-point least-squares similarity transform and embeds it as an
// L2-normalised 512-d template compared by cosine similarity.
//
// The ONNX models come from `make models` and are checked against the
// SHA-256 manifest compiled into this package (models.sha256) before OpenCV
// reads them. Images, crops and templates are biometric data: this package
// never logs or writes them, and Template.Wipe clears a template when a
// session ends.
//
// This is the one package outside drivers/ that imports gocv.
package face
