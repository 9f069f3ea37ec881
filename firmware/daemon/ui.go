package daemon

import (
	"net/http"

	"kiosk/ui/statuspage"
)

// registerUI mounts the screens kioskd serves on loopback.
func (d *Daemon) registerUI(mux *http.ServeMux) {
	mux.Handle("GET /", statuspage.Handler())
	mux.HandleFunc("GET /api/camera/frame.jpg", d.serveFrame)
}
