package face

import "gocv.io/x/gocv"

// wipe zeroes a Mat that holds face pixels (a decoded chip photo, an
// aligned face, a face crop or its model input) and closes it, so the
// face does not linger in freed memory. Region views share their parent's
// pixels and are only closed, never wiped.
func wipe(m *gocv.Mat) {
	zero(m)
	m.Close()
}

func zero(m *gocv.Mat) {
	if m.Ptr() != nil && !m.Empty() {
		m.SetTo(gocv.NewScalar(0, 0, 0, 0))
	}
}
