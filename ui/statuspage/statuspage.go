// Package statuspage is the developer/staff status page kioskd serves on
// loopback until the shopper screen replaces it: live driver state, the
// camera thumbnail (simulation only) and controls for simulated devices.
package statuspage

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the page and its assets. Everything is embedded: the page
// works with no network.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.FileServerFS(sub)
}
