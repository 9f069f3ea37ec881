//go:build !matprofile

package camera

// Without the matprofile build tag gocv does not count Mats; the leak
// checks then pass trivially. Run `go test -tags matprofile` to enable them.

func liveMats() int { return 0 }

func liveMatStacks() string { return "" }
