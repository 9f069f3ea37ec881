package update

import (
	"fmt"
	"strconv"
	"time"
)

// Window is a daily maintenance window in local time, "HH:MM-HH:MM"; it
// may wrap past midnight ("23:00-02:00"). The zero Window is always open.
type Window struct {
	start, end time.Duration // since local midnight
	set        bool
}

// ParseWindow parses "HH:MM-HH:MM"; "" is always open.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	num := func(x string, hi int) (int, bool) {
		n, err := strconv.Atoi(x)
		return n, err == nil && len(x) == 2 && x[0] >= '0' && x[0] <= '9' && n <= hi
	}
	if len(s) != len("00:00-00:00") || s[2] != ':' || s[5] != '-' || s[8] != ':' {
		return Window{}, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	h1, ok1 := num(s[0:2], 23)
	m1, ok2 := num(s[3:5], 59)
	h2, ok3 := num(s[6:8], 23)
	m2, ok4 := num(s[9:11], 59)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Window{}, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	w := Window{start: time.Duration(h1)*time.Hour + time.Duration(m1)*time.Minute,
		end: time.Duration(h2)*time.Hour + time.Duration(m2)*time.Minute, set: true}
	if w.start == w.end {
		return Window{}, fmt.Errorf("%q is an empty window", s)
	}
	return w, nil
}

// Wait returns how long from t until the window is open (0 inside it).
func (w Window) Wait(t time.Time) time.Duration {
	if !w.set {
		return 0
	}
	y, mo, d := t.Date()
	midnight := time.Date(y, mo, d, 0, 0, 0, 0, t.Location())
	now := t.Sub(midnight)
	in := w.start < w.end && now >= w.start && now < w.end ||
		w.start > w.end && (now >= w.start || now < w.end)
	if in {
		return 0
	}
	next := midnight.Add(w.start)
	if !next.After(t) {
		next = time.Date(y, mo, d+1, 0, 0, 0, 0, t.Location()).Add(w.start)
	}
	return next.Sub(t)
}

// String is the window as configured.
func (w Window) String() string {
	if !w.set {
		return "any time"
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", int(w.start.Hours()), int(w.start.Minutes())%60, int(w.end.Hours()), int(w.end.Minutes())%60)
}
