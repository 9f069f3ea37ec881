package main

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// report is what the budget and the last line are made of.
type report struct {
	n, approved      int
	first, ref, last sample
	// refRSS and lastRSS are the medians of the 10 samples up to the
	// reference and of the last 10: one payment's sample can stand
	// 7–10 MiB above its neighbours (C buffers not yet handed back).
	refRSS, lastRSS     int64
	slopeKiB            float64 // least-squares RSS slope from ref to last
	medianTook, maxTook time.Duration
	files               string
	fileGrowth          map[string]int64 // bytes from ref to last
	fileRate            map[string]float64
}

// refIndex is the reference payment: the 100th (-ref) once warm-up is
// over, or a tenth of a run too short to leave most of it after that.
func refIndex(n, ref int) int {
	if n < 2*ref {
		ref = max(1, n/10)
	}
	return min(ref, n)
}

func summarize(s []sample, o options) report {
	r := report{n: len(s), first: s[0], last: s[len(s)-1]}
	r.ref = s[refIndex(len(s), o.ref)-1]
	r.refRSS, r.lastRSS = medianRSS(s[max(0, r.ref.i-10):r.ref.i]), medianRSS(s[max(0, len(s)-10):])
	took := make([]time.Duration, 0, len(s))
	for _, x := range s {
		if x.approved {
			r.approved++
		}
		took = append(took, x.took)
	}
	slices.Sort(took)
	r.medianTook, r.maxTook = took[len(took)/2], took[len(took)-1]
	// Slope over the payments after the reference (the whole run when
	// the reference is the last one).
	from := r.ref.i - 1
	if from >= len(s)-1 {
		from = 0
	}
	var sx, sy, sxx, sxy, m float64
	for _, x := range s[from:] {
		xi, yi := float64(x.i), float64(x.c.RSSBytes)/1024
		sx, sy, sxx, sxy, m = sx+xi, sy+yi, sxx+xi*xi, sxy+xi*yi, m+1
	}
	if d := m*sxx - sx*sx; d != 0 {
		r.slopeKiB = (m*sxy - sx*sy) / d
	}
	r.fileGrowth, r.fileRate = map[string]int64{}, map[string]float64{}
	var names []string
	for name := range r.last.c.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	var parts []string
	for _, name := range names {
		g := r.last.c.Files[name] - r.ref.c.Files[name]
		r.fileGrowth[name] = g
		if d := r.last.i - r.ref.i; d > 0 {
			r.fileRate[name] = float64(g) / float64(d)
		}
		parts = append(parts, fmt.Sprintf("%s %d→%d KiB", name, r.ref.c.Files[name]>>10, r.last.c.Files[name]>>10))
	}
	r.files = strings.Join(parts, ", ")
	return r
}

func medianRSS(s []sample) int64 {
	v := make([]int64, len(s))
	for i, x := range s {
		v[i] = x.c.RSSBytes
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// line is the run's last line (after-N and last are 10-sample medians).
func (r report) line() string {
	return fmt.Sprintf("soak: %d payments, approved %d, RSS first %.1f MiB after-%d %.1f MiB last %.1f MiB, slope %.1f KiB/payment, goroutines %d→%d, fds %d→%d",
		r.n, r.approved, mib(r.first.c.RSSBytes), r.ref.i, mib(r.refRSS), mib(r.lastRSS), r.slopeKiB,
		r.ref.c.Goroutines, r.last.c.Goroutines, r.ref.c.OpenFiles, r.last.c.OpenFiles)
}

// retained are the files that hold a record per payment for a retention
// period (payments.db: 7 days of the till's history; audit.log: the staff
// audit chain; hub.db: the embedded hub's ledger, simulation only): they
// grow during a soak as designed. The rest must not grow once warm.
var retained = map[string]bool{"payments.db": true, "audit.log": true, "hub.db": true}

// check returns the budget's failures.
func (r report) check(o options) []string {
	var f []string
	if r.approved != r.n {
		f = append(f, fmt.Sprintf("%d of %d payments approved", r.approved, r.n))
	}
	allowed := max(o.rssFloor, o.rssBudget*float64(r.last.i-r.ref.i)/900)
	if grew := mib(r.lastRSS - r.refRSS); grew > allowed {
		f = append(f, fmt.Sprintf("RSS grew %.1f MiB from payment %d to %d (budget %.1f MiB)", grew, r.ref.i, r.last.i, allowed))
	}
	if r.last.c.Goroutines != r.ref.c.Goroutines {
		f = append(f, fmt.Sprintf("goroutines %d after payment %d, %d after payment %d", r.ref.c.Goroutines, r.ref.i, r.last.c.Goroutines, r.last.i))
	}
	if r.last.c.OpenFiles != r.ref.c.OpenFiles {
		f = append(f, fmt.Sprintf("open files %d after payment %d, %d after payment %d", r.ref.c.OpenFiles, r.ref.i, r.last.c.OpenFiles, r.last.i))
	}
	switch {
	case r.last.c.Mats < 0:
		f = append(f, "kioskd was built without -tags matprofile: Mats not counted")
	case r.last.c.Mats != r.ref.c.Mats:
		f = append(f, fmt.Sprintf("live Mats %d after payment %d, %d after payment %d", r.ref.c.Mats, r.ref.i, r.last.c.Mats, r.last.i))
	}
	for name, g := range r.fileGrowth {
		if !retained[name] && g > 0 {
			f = append(f, fmt.Sprintf("%s grew %d bytes from payment %d to %d (its records are deleted once delivered)", name, g, r.ref.i, r.last.i))
		}
	}
	return f
}

func writeCSV(path string, s []sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	files := []string{"outbox.db", "offline.db", "payments.db", "hub.db", "audit.log"}
	head := []string{"payment", "approved", "took_ms", "rss_kib", "rss_anon_kib", "rss_file_kib", "hwm_kib", "heap_objects_kib", "heap_total_kib", "go_total_kib",
		"gc_cycles", "goroutines", "threads", "open_files", "mats"}
	for _, name := range files {
		head = append(head, strings.ReplaceAll(name, ".", "_")+"_bytes")
	}
	_ = w.Write(head)
	for _, x := range s {
		c := x.c
		row := []string{strconv.Itoa(x.i), strconv.FormatBool(x.approved), strconv.FormatInt(x.took.Milliseconds(), 10),
			kib(c.RSSBytes), kib(c.RSSAnonBytes), kib(c.RSSFileBytes), kib(c.HWMBytes), kib(c.HeapObjectsBytes), kib(c.HeapTotalBytes), kib(c.GoTotalBytes),
			strconv.FormatInt(c.GCCycles, 10), strconv.Itoa(c.Goroutines), strconv.Itoa(c.Threads), strconv.Itoa(c.OpenFiles), strconv.Itoa(c.Mats)}
		for _, name := range files {
			row = append(row, strconv.FormatInt(c.Files[name], 10))
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func kib(b int64) string { return strconv.FormatInt(b>>10, 10) }

// writePlot draws memory (RSS, Go heap) in MiB above and the counts
// (goroutines, open files, Mats) below, per payment.
func writePlot(path string, s []sample, r report) error {
	series := func(f func(sample) float64) plotter.XYs {
		xy := make(plotter.XYs, len(s))
		for i, x := range s {
			xy[i].X, xy[i].Y = float64(x.i), f(x)
		}
		return xy
	}
	mem := plot.New()
	mem.Title.Text = fmt.Sprintf("kioskd soak: %d payments, RSS slope %.1f KiB/payment after payment %d", r.n, r.slopeKiB, r.ref.i)
	mem.X.Label.Text = "payment"
	mem.Y.Label.Text = "MiB"
	// Legends at the right, below the top line, where no series runs.
	mem.Legend.Top, mem.Legend.YOffs = true, -vg.Points(40)
	if err := addLines(mem, []named{
		{"RSS", series(func(x sample) float64 { return mib(x.c.RSSBytes) })},
		{"RSS anonymous", series(func(x sample) float64 { return mib(x.c.RSSAnonBytes) })},
		{"RSS file-backed", series(func(x sample) float64 { return mib(x.c.RSSFileBytes) })},
		{"Go heap (all)", series(func(x sample) float64 { return mib(x.c.HeapTotalBytes) })},
		{"Go heap objects", series(func(x sample) float64 { return mib(x.c.HeapObjectsBytes) })},
	}); err != nil {
		return err
	}
	counts := plot.New()
	counts.X.Label.Text = "payment"
	counts.Y.Label.Text = "count"
	counts.Legend.Top, counts.Legend.YOffs = true, -vg.Points(40)
	if err := addLines(counts, []named{
		{"goroutines", series(func(x sample) float64 { return float64(x.c.Goroutines) })},
		{"open files", series(func(x sample) float64 { return float64(x.c.OpenFiles) })},
		{"OpenCV Mats", series(func(x sample) float64 { return float64(x.c.Mats) })},
	}); err != nil {
		return err
	}
	img := vgimg.New(vg.Points(900), vg.Points(700))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadX: vg.Points(6), PadY: vg.Points(10)}
	canvases := plot.Align([][]*plot.Plot{{mem}, {counts}}, tiles, dc)
	mem.Draw(canvases[0][0])
	counts.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type named struct {
	name string
	xy   plotter.XYs
}

var palette = []color.Color{color.RGBA{R: 0xc0, A: 0xff}, color.RGBA{B: 0xc0, A: 0xff}, color.RGBA{G: 0x90, A: 0xff},
	color.RGBA{R: 0xc0, G: 0x80, A: 0xff}, color.RGBA{R: 0x80, B: 0x80, A: 0xff}, color.RGBA{G: 0x80, B: 0x80, A: 0xff}}

func addLines(p *plot.Plot, lines []named) error {
	for i, l := range lines {
		ln, err := plotter.NewLine(l.xy)
		if err != nil {
			return fmt.Errorf("plot %s: %w", l.name, err)
		}
		ln.Color = palette[i%len(palette)]
		ln.Width = vg.Points(1.2)
		p.Add(ln)
		p.Legend.Add(l.name, ln)
	}
	p.Add(plotter.NewGrid())
	return nil
}
