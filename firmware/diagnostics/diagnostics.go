// Package diagnostics measures kioskd's own process (resident memory, Go
// heap, OpenCV Mats, goroutines, open files, state-file sizes) and packs
// those counters with heap and goroutine profiles into a bounded archive
// an operator can pull from the staff screen or, later, a fleet job.
//
// Nothing here reads memory contents: pprof profiles in their protobuf
// form hold call stacks, sizes and counts, never the bytes of face images,
// templates, PINs or MRZ data, and kioskd sets no profile labels. The
// archive holds only what Collect writes itself.
package diagnostics

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// matProfile is the pprof profile gocv keeps of live Mats when built with
// the matprofile tag (gocv.MatProfile); without the tag it does not exist.
const matProfile = "gocv.io/x/gocv.Mat"

// Counters are the soak counters: one sample of the process.
type Counters struct {
	Time time.Time `json:"time"`
	// RSSBytes is the resident set (VmRSS), HWMBytes its peak (VmHWM).
	RSSBytes int64 `json:"rss_bytes"`
	HWMBytes int64 `json:"hwm_bytes"`
	// The resident set split as the kernel counts it: anonymous memory
	// (heaps: Go's and the C allocator's) and file-backed pages, among
	// them the bbolt stores' memory maps, which grow with their files.
	RSSAnonBytes int64 `json:"rss_anon_bytes"`
	RSSFileBytes int64 `json:"rss_file_bytes"`
	// HeapObjectsBytes are live and not yet swept heap objects,
	// HeapTotalBytes all memory the Go runtime holds for the heap
	// (runtime/metrics).
	HeapObjectsBytes int64 `json:"heap_objects_bytes"`
	HeapTotalBytes   int64 `json:"heap_total_bytes"`
	GoTotalBytes     int64 `json:"go_total_bytes"` // everything the Go runtime mapped
	GCCycles         int64 `json:"gc_cycles"`
	Goroutines       int   `json:"goroutines"`
	Threads          int   `json:"threads"`
	OpenFiles        int   `json:"open_files"`
	// Mats counts live OpenCV Mats; -1 when kioskd was built without the
	// matprofile tag (production builds), which leaves nothing to count.
	Mats int `json:"mats"`
	// Files are the sizes of the state files (outbox.db, offline.db, …).
	Files map[string]int64 `json:"files,omitempty"`
}

// Sample measures the calling process. stateFiles are paths whose sizes
// are reported under their base names (missing ones are left out).
func Sample(stateFiles ...string) (Counters, error) {
	c := Counters{Time: time.Now().UTC(), Goroutines: runtime.NumGoroutine(), Mats: -1}
	if p := pprof.Lookup(matProfile); p != nil {
		c.Mats = p.Count()
	}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(samples)
	val := func(i int) int64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(samples[i].Value.Uint64())
	}
	c.HeapObjectsBytes = val(0)
	c.GoTotalBytes = val(1)
	c.HeapTotalBytes = val(0) + val(2) + val(3) + val(4)
	c.GCCycles = val(5)

	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return c, fmt.Errorf("diagnostics: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			c.RSSBytes = kB(v)
		case "VmHWM":
			c.HWMBytes = kB(v)
		case "RssAnon":
			c.RSSAnonBytes = kB(v)
		case "RssFile":
			c.RSSFileBytes = kB(v)
		case "Threads":
			c.Threads, _ = strconv.Atoi(v)
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return c, fmt.Errorf("diagnostics: %w", err)
	}
	c.OpenFiles = len(fds) - 1 // less the descriptor ReadDir itself had open
	for _, f := range stateFiles {
		if fi, err := os.Stat(f); err == nil {
			if c.Files == nil {
				c.Files = map[string]int64{}
			}
			c.Files[filepath.Base(f)] = fi.Size()
		}
	}
	return c, nil
}

func kB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	return n * 1024
}

// MaxBytes bounds a diagnostics archive; a profile that would not fit is
// left out and named in the archive's README.
const MaxBytes = 8 << 20

// ErrTooLarge is returned when not even the counters fit in the bound.
var ErrTooLarge = errors.New("diagnostics: archive over its size bound")

// Options say what Collect puts in the archive besides the profiles.
type Options struct {
	Device, Version string
	StateFiles      []string
	// Extra are further JSON documents (e.g. the health report), each
	// already free of secrets and biometric data.
	Extra map[string]any
	// MaxBytes overrides MaxBytes (tests); 0 keeps it.
	MaxBytes int
}

// Collect returns a zip archive holding counters.json, heap.pb.gz and
// goroutine.pb.gz (pprof protobuf, readable with `go tool pprof`), the
// Extra documents and a README.txt. It stays under the size bound.
func Collect(ctx context.Context, o Options) ([]byte, error) {
	limit := o.MaxBytes
	if limit <= 0 {
		limit = MaxBytes
	}
	c, err := Sample(o.StateFiles...)
	if err != nil {
		return nil, err
	}
	type part struct {
		name string
		data []byte
	}
	var parts []part
	doc, err := json.MarshalIndent(struct {
		Device   string   `json:"device"`
		Version  string   `json:"version"`
		Counters Counters `json:"counters"`
	}{o.Device, o.Version, c}, "", "  ")
	if err != nil {
		return nil, err
	}
	parts = append(parts, part{"counters.json", doc})
	for name, v := range o.Extra {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("diagnostics: %s: %w", name, err)
		}
		parts = append(parts, part{name + ".json", b})
	}
	for _, name := range []string{"heap", "goroutine"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		// debug=0: the gzipped protobuf, stacks and counts only (the text
		// forms with debug=2 print argument words from the stack).
		if err := pprof.Lookup(name).WriteTo(&buf, 0); err != nil {
			return nil, fmt.Errorf("diagnostics: %s profile: %w", name, err)
		}
		parts = append(parts, part{name + ".pb.gz", buf.Bytes()})
	}

	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	var left []string
	size := 0
	for i, p := range parts {
		// Profiles are already compressed; the estimate keeps the
		// archive under the bound with room for the README.
		if size+len(p.data)+1024 > limit {
			if i == 0 {
				return nil, ErrTooLarge
			}
			left = append(left, fmt.Sprintf("%s (%d bytes)", p.name, len(p.data)))
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: p.name, Method: zip.Deflate, Modified: c.Time})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(p.data); err != nil {
			return nil, err
		}
		size += len(p.data)
	}
	readme := "kioskd diagnostics: counters.json (process counters), heap.pb.gz and goroutine.pb.gz\n" +
		"(go tool pprof). No images, face templates, PINs, CANs or MRZ data are included.\n"
	if len(left) > 0 {
		readme += "Left out to stay under " + strconv.Itoa(limit) + " bytes: " + strings.Join(left, ", ") + "\n"
	}
	w, err := zw.Create("README.txt")
	if err != nil {
		return nil, err
	}
	if _, err := w.Write([]byte(readme)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if out.Len() > limit {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, out.Len())
	}
	return out.Bytes(), nil
}
