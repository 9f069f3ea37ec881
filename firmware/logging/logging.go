// Package logging builds kioskd's slog logger from the config.
package logging

import (
	"io"
	"log/slog"
	"os"
)

// New returns a logger writing to w. Format "auto" picks JSON when running
// under systemd (the journal sets JOURNAL_STREAM) and text otherwise.
func New(w io.Writer, level, format string, getenv func(string) string) *slog.Logger {
	if getenv == nil {
		getenv = os.Getenv
	}
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	if format == "auto" {
		format = "text"
		if getenv("JOURNAL_STREAM") != "" || getenv("INVOCATION_ID") != "" {
			format = "json"
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
