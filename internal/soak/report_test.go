package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/diagnostics"
)

// samples builds n samples: RSS 250 MiB plus grow KiB per payment, the rest
// flat unless mod changes a sample.
func samples(n int, growKiB float64, mod func(i int, s *sample)) []sample {
	var out []sample
	for i := 1; i <= n; i++ {
		s := sample{i: i, approved: true, took: 2 * time.Second, c: diagnostics.Counters{
			RSSBytes: 250<<20 + int64(growKiB*1024*float64(i)), Goroutines: 56, OpenFiles: 22, Mats: 2,
			Files: map[string]int64{"outbox.db": 32 << 10, "payments.db": 64<<10 + int64(i)*1024},
		}}
		if mod != nil {
			mod(i, &s)
		}
		out = append(out, s)
	}
	return out
}

func TestBudget(t *testing.T) {
	o := options{ref: 100, rssBudget: 10, rssFloor: 4}
	tests := []struct {
		name string
		s    []sample
		want []string // substrings of the failures, in any order; none = pass
	}{
		{"flat", samples(1000, 0, nil), nil},
		{"growth within budget", samples(1000, 10, nil), nil},
		{"growth over budget", samples(1000, 13, nil), []string{"RSS grew 11.4 MiB from payment 100 to 1000 (budget 10.0 MiB)"}},
		{"short run: floor", samples(45, 80, nil), nil},
		{"short run over the floor", samples(45, 120, nil), []string{"RSS grew"}},
		{"goroutine leak", samples(200, 0, func(i int, s *sample) { s.c.Goroutines += i / 150 }), []string{"goroutines 56 after payment 100, 57 after payment 200"}},
		{"fd leak", samples(200, 0, func(i int, s *sample) { s.c.OpenFiles += i / 190 }), []string{"open files"}},
		{"Mat leak", samples(200, 0, func(i int, s *sample) { s.c.Mats = i }), []string{"live Mats"}},
		{"no Mat profile", samples(200, 0, func(i int, s *sample) { s.c.Mats = -1 }), []string{"without -tags matprofile"}},
		{"outbox grows", samples(200, 0, func(i int, s *sample) { s.c.Files["outbox.db"] += int64(i) << 10 }), []string{"outbox.db grew"}},
		{"one high sample at the end", samples(200, 0, func(i int, s *sample) {
			if i == 200 {
				s.c.RSSBytes += 9 << 20
			}
		}), nil},
		{"declined", samples(200, 0, func(i int, s *sample) { s.approved = i != 7 }), []string{"199 of 200 payments approved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := summarize(tt.s, o).check(o)
			if len(f) != len(tt.want) {
				t.Fatalf("failures %q, want %d like %q", f, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(f[i], w) {
					t.Errorf("failure %q does not say %q", f[i], w)
				}
			}
		})
	}
}

func TestLineAndFiles(t *testing.T) {
	s := samples(1000, 10, nil)
	r := summarize(s, options{ref: 100})
	want := regexp.MustCompile(`^soak: 1000 payments, approved 1000, RSS first 250\.0 MiB after-100 250\.9 MiB last 259\.7 MiB, slope 10\.0 KiB/payment, goroutines 56→56, fds 22→22$`)
	if l := r.line(); !want.MatchString(l) {
		t.Errorf("line %q", l)
	}
	if r := summarize(samples(40, 0, nil), options{ref: 100}); r.ref.i != 4 {
		t.Errorf("reference of a 40-payment run: payment %d, want 4", r.ref.i)
	}
	dir := t.TempDir()
	if err := writeCSV(filepath.Join(dir, "s.csv"), s); err != nil {
		t.Fatal(err)
	}
	if err := writePlot(filepath.Join(dir, "s.png"), s, r); err != nil {
		t.Fatal(err)
	}
}
