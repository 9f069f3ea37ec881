package face

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// prctl(PR_SET_MDWE) (Linux 6.3+): refuse every memory mapping that is,
// or later becomes, both writable and executable — what systemd's
// MemoryDenyWriteExecute=yes enforces with seccomp.
const (
	prSetMDWE            = 65
	prMDWERefuseExecGain = 1
)

// kioskd.service sets MemoryDenyWriteExecute=yes. This measures, rather
// than assumes, that every model kioskd runs (detection, landmarks,
// embedding, liveness, expression, and pose where loaded) loads and infers through
// OpenCV's DNN module without writable executable memory: a child test
// process turns the kernel's equivalent on for itself, proves it holds
// (a W+X mapping is refused), then loads the models and analyses a face.
func TestInferenceUnderMDWE(t *testing.T) {
	if os.Getenv("KIOSK_MDWE_CHILD") == "" {
		if testing.Short() {
			t.Skip("-short: loads every model")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestInferenceUnderMDWE$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "KIOSK_MDWE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child under MDWE: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}
	if err := unix.Prctl(prSetMDWE, prMDWERefuseExecGain, 0, 0, 0); err != nil {
		if errors.Is(err, unix.EINVAL) {
			t.Skip("kernel without PR_SET_MDWE (Linux < 6.3): cannot measure here")
		}
		t.Fatalf("prctl(PR_SET_MDWE): %v", err)
	}
	if b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANON); err == nil {
		_ = unix.Munmap(b)
		t.Fatal("a writable and executable mapping was allowed: MDWE is not in force, nothing measured")
	}
	m := fullModels(t)
	img := decode(t, media(t, "franck_01829.jpg"))
	defer img.Close()
	a, err := m.Analyze(img)
	if err != nil || a.Template == nil {
		t.Fatalf("analyse under MDWE: %v", err)
	}
	box := a.Faces[a.Primary].Box
	if _, err := m.Liveness(img, box); err != nil {
		t.Fatalf("liveness under MDWE: %v", err)
	}
	if _, err := m.Expression(img, box); err != nil {
		t.Fatalf("expression under MDWE: %v", err)
	}
	// The pose network is loaded only where it is still used (kioskd
	// takes the pose from the landmarks).
	if m.Has(ModelPose) {
		if _, err := m.HeadPose(img, box); err != nil {
			t.Fatalf("pose under MDWE: %v", err)
		}
	}
	t.Log("every model loaded and ran with writable executable memory refused")
}
