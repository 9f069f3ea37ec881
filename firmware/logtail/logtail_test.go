package logtail

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRingBounds(t *testing.T) {
	r := New(3, 1<<10)
	for i := range 5 {
		fmt.Fprintf(r, "line %d\n", i)
	}
	lines, omitted := r.Tail(10, 1<<10)
	if strings.Join(lines, ",") != "line 2,line 3,line 4" || omitted != 2 {
		t.Fatalf("lines %q omitted %d", lines, omitted)
	}
	// The byte bound keeps the newest.
	if lines, omitted := r.Tail(10, 14); strings.Join(lines, ",") != "line 3,line 4" || omitted != 3 {
		t.Fatalf("byte-bounded tail %q omitted %d", lines, omitted)
	}
	if lines, _ := r.Tail(1, 1<<10); len(lines) != 1 || lines[0] != "line 4" {
		t.Fatalf("last line %q", lines)
	}

	b := New(100, 20) // bytes bound the ring itself
	for i := range 10 {
		fmt.Fprintf(b, "abcdefgh%d", i)
	}
	if lines, _ := b.Tail(100, 1<<10); strings.Join(lines, ",") != "abcdefgh8,abcdefgh9" {
		t.Fatalf("byte-bounded ring %q", lines)
	}
	long := New(10, 1<<20)
	_, _ = long.Write(bytes.Repeat([]byte("x"), 3*MaxLine))
	if l, _ := long.Tail(1, 1<<20); len(l[0]) > MaxLine+20 {
		t.Fatalf("a long line was kept whole: %d bytes", len(l[0]))
	}
}

// The tee passes everything on, keeps info and above, and keeps no
// secret: attributes named for one are blanked, MRZ-like runs cut out of
// values and errors, in groups and pre-set attributes too.
func TestTeeRedacts(t *testing.T) {
	var out bytes.Buffer
	r := New(0, 0)
	log := slog.New(Tee(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), r, slog.LevelInfo))
	log.Debug("debug only in the journal")
	log.Info("card read", "pin", "123456", "CAN", "654321", "doc_number", "L898902C3", "reader", "Sim 00")
	log.With("component", "session").WithGroup("g").Warn("mrz", "line", "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
		"err", errors.New("bad MRZ L898902C36UTO7408122F1204159ZE184226B<<<<<10"), "face_template", []byte{1, 2})
	lines, _ := r.Tail(100, 1<<20)
	all := strings.Join(lines, "\n")
	if len(lines) != 2 || strings.Contains(all, "debug only") || !strings.Contains(out.String(), "debug only") {
		t.Fatalf("levels: ring %q, journal %q", lines, out.String())
	}
	for _, secret := range []string{"123456", "654321", "L898902C3", "ERIKSSON", "ANNA", "7408122", "[1 2]"} {
		if strings.Contains(all, secret) {
			t.Errorf("the ring kept %q:\n%s", secret, all)
		}
	}
	for _, kept := range []string{`reader="Sim 00"`, "component=session", "g.line=" + Redacted, "bad MRZ " + Redacted, "pin=" + Redacted} {
		if !strings.Contains(all, kept) {
			t.Errorf("the ring lacks %q:\n%s", kept, all)
		}
	}
	// The journal's own handler is untouched (it is the logger's job to
	// keep secrets out of it; the ring is the second line).
	if !strings.Contains(out.String(), "pin=123456") {
		t.Fatalf("journal changed: %s", out.String())
	}
}
