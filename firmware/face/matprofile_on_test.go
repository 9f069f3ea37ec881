//go:build matprofile

package face

import (
	"bytes"

	"gocv.io/x/gocv"
)

const matprofile = true

func liveMats() int { return gocv.MatProfile.Count() }

func liveMatStacks() string {
	var b bytes.Buffer
	_ = gocv.MatProfile.WriteTo(&b, 1)
	return b.String()
}
