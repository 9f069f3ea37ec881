// Package shopper is the kiosk's shopper screen: one page that follows
// the session over Server-Sent Events and shows what to do at each step,
// in Simplified Chinese or English. Everything (HTML, CSS, JS, string
// catalogues) is embedded: the screen works with no network.
package shopper

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Languages are the catalogues shipped, default first.
var languages = []string{"zh-CN", "en"}

// Languages returns the catalogue names, the default first.
func Languages() []string { return append([]string(nil), languages...) }

// Handler serves the screen and its assets (index.html at "/").
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The kiosk's browser must pick up a new firmware's screen at once.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Nothing may load from outside the kiosk, and no other site may
		// frame the screen.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		fsrv.ServeHTTP(w, r)
	})
}

// Catalogue returns the strings of one language.
func Catalogue(lang string) (map[string]string, error) {
	b, err := static.ReadFile("static/i18n/" + lang + ".json")
	if err != nil {
		return nil, fmt.Errorf("shopper: catalogue %q: %w", lang, err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("shopper: catalogue %q: %w", lang, err)
	}
	return m, nil
}
