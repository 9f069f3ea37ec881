// Package logtail keeps the last lines of kioskd's log in memory, redacted,
// for the fleet's collect_logs job (docs/mqtt.md, "Jobs"). kioskd's logger
// already avoids PINs, CANs, MRZ data and faces; this is the second line of
// defence: attributes whose names say they hold a secret are replaced, and
// values that look like a machine-readable zone are cut out, before a line
// is kept.
//
// The ring lives in the kioskd process: it holds the lines since kioskd
// started (bounded in lines and bytes), not the journal of earlier runs.
package logtail

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
)

// Defaults for New.
const (
	DefaultLines = 2000
	DefaultBytes = 512 << 10
	// MaxLine bounds one kept line; longer ones are cut.
	MaxLine = 2048
)

// Ring is a bounded buffer of log lines, oldest dropped first. It is an
// io.Writer taking one line per Write (as slog's text handler writes).
type Ring struct {
	maxLines, maxBytes int

	mu      sync.Mutex
	lines   []string // oldest first, len ≤ maxLines
	bytes   int
	dropped uint64
}

// New returns a ring of at most maxLines lines and maxBytes bytes (≤ 0:
// the defaults).
func New(maxLines, maxBytes int) *Ring {
	if maxLines <= 0 {
		maxLines = DefaultLines
	}
	if maxBytes <= 0 {
		maxBytes = DefaultBytes
	}
	return &Ring{maxLines: maxLines, maxBytes: maxBytes}
}

// Write keeps p as one line (a trailing newline is dropped).
func (r *Ring) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if len(line) > MaxLine {
		line = strings.ToValidUTF8(line[:MaxLine], "") + " …[cut]"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.lines) > 0 && (len(r.lines) >= r.maxLines || r.bytes+len(line) > r.maxBytes) {
		r.bytes -= len(r.lines[0])
		r.lines[0] = ""
		r.lines = r.lines[1:]
		r.dropped++
	}
	r.lines = append(r.lines, line)
	r.bytes += len(line)
	return len(p), nil
}

// Tail returns the last n lines, oldest first, at most maxBytes of them
// (the newest kept), and how many lines the ring no longer holds or the
// bound left out.
func (r *Ring) Tail(n, maxBytes int) (lines []string, omitted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := len(r.lines)
	size := 0
	for i := total - 1; i >= 0 && len(lines) < n; i-- {
		l := r.lines[i]
		if size+len(l)+1 > maxBytes {
			break
		}
		size += len(l) + 1
		lines = append(lines, l)
	}
	for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	return lines, total - len(lines) + int(r.dropped)
}

// Len is the number of lines held.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lines)
}

// Tee returns a handler that passes every record to next and keeps those
// at level or above, redacted, in r as text lines.
func Tee(next slog.Handler, r *Ring, level slog.Leveler) slog.Handler {
	return &tee{next: next, level: level, text: slog.NewTextHandler(r, &slog.HandlerOptions{Level: level, ReplaceAttr: Redact})}
}

type tee struct {
	next  slog.Handler
	level slog.Leveler
	text  slog.Handler
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= t.level.Level() || t.next.Enabled(ctx, l)
}

func (t *tee) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if t.next.Enabled(ctx, rec.Level) {
		err = t.next.Handle(ctx, rec)
	}
	if rec.Level >= t.level.Level() {
		_ = t.text.Handle(ctx, rec) // the ring cannot fail
	}
	return err
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	return &tee{next: t.next.WithAttrs(as), level: t.level, text: t.text.WithAttrs(as)}
}

func (t *tee) WithGroup(name string) slog.Handler {
	return &tee{next: t.next.WithGroup(name), level: t.level, text: t.text.WithGroup(name)}
}

// secretWords are attribute-name words (split at _ . - and case) whose
// values are never kept.
var secretWords = map[string]bool{
	"pin": true, "puk": true, "can": true, "mrz": true, "password": true, "passwd": true, "secret": true,
	"token": true, "face": true, "template": true, "image": true, "photo": true, "jpeg": true,
	"salt": true, "privkey": true, "document": true, "doc": true, "docnumber": true, "number": true, "birth": true, "name": true,
}

// mrzRe matches a run of the ICAO 9303 MRZ alphabet holding the "<<"
// filler: a document number, name or whole zone line.
var mrzRe = regexp.MustCompile(`[A-Z0-9<]*<<[A-Z0-9<]*`)

// Redacted replaces what Redact removes.
const Redacted = "[redacted]"

// Redact is a slog ReplaceAttr: it blanks attributes named for a secret
// and cuts MRZ-like runs out of string and error values.
func Redact(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
		return a
	}
	if secretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, RedactText(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, RedactText(err.Error()))
		}
		if s, ok := v.Any().(interface{ String() string }); ok {
			return slog.String(a.Key, RedactText(s.String()))
		}
	}
	return a
}

// RedactText cuts MRZ-like runs out of s.
func RedactText(s string) string {
	if !strings.Contains(s, "<<") {
		return s
	}
	return mrzRe.ReplaceAllString(s, Redacted)
}

func secretKey(k string) bool {
	words := strings.FieldsFunc(strings.ToLower(k), func(r rune) bool { return r == '_' || r == '.' || r == '-' || r == ' ' })
	for _, w := range words {
		if secretWords[w] {
			return true
		}
	}
	return false
}
