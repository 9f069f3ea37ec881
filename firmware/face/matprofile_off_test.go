//go:build !matprofile

package face

// Without the matprofile build tag gocv does not count Mats and the leak
// checks pass trivially; `go test -tags matprofile` enables them.

const matprofile = false

func liveMats() int { return 0 }

func liveMatStacks() string { return "" }
