package update

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Download errors callers branch on.
var (
	// ErrHashMismatch: the whole bundle arrived but its SHA-256 is not the
	// job's. The partial file is removed (it cannot be resumed).
	ErrHashMismatch = errors.New("update: bundle SHA-256 does not match the job")
	// ErrTruncated: the server has fewer bytes than the job names.
	ErrTruncated = errors.New("update: the server's bundle is shorter than the job's size")
	// ErrOversize: the server sent more bytes than the job names.
	ErrOversize = errors.New("update: the server's bundle is longer than the job's size")
	// ErrNoSpace: the state directory cannot hold the bundle.
	ErrNoSpace = errors.New("update: not enough free space in the state directory")
)

// fetchAttempts bounds the resumed requests of one Fetch: each must bring
// bytes, so a server that stalls or shrinks ends the job with an error.
const fetchAttempts = 5

// bundlePath is where a complete, hash-checked bundle lives; partPath is
// its download in progress. Named by digest: a restarted kioskd resumes the
// same bundle and never mixes two.
func bundlePath(dir, sum string) string { return filepath.Join(dir, "bundle-"+sum[:16]+".raucb") }
func partPath(dir, sum string) string   { return filepath.Join(dir, "bundle-"+sum[:16]+".part") }

// Fetch downloads d into dir, resuming a partial file from an earlier run
// with an HTTP Range request, and returns the path of the complete bundle
// once its size and SHA-256 match the job. Other bundles' files in dir are
// removed first (one download at a time, bounded disk). progress is told
// the bytes held so far.
func Fetch(ctx context.Context, client *http.Client, d Doc, dir string, progress func(have, total int64)) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("update dir: %w", err)
	}
	final, part := bundlePath(dir, d.SHA256), partPath(dir, d.SHA256)
	if err := removeOthers(dir, final, part); err != nil {
		return "", err
	}
	if fi, err := os.Stat(final); err == nil && fi.Size() == d.Size {
		if sum, err := fileSHA256(final); err == nil && sum == d.SHA256 {
			progress(d.Size, d.Size)
			return final, nil
		}
		os.Remove(final)
	}
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("update download: %w", err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", fmt.Errorf("update download: %w", err)
	}
	if have > d.Size {
		if err := f.Truncate(0); err != nil {
			return "", err
		}
		have = 0
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		if free := int64(st.Bavail) * st.Bsize; free < d.Size-have {
			return "", fmt.Errorf("%w: %d bytes needed, %d free", ErrNoSpace, d.Size-have, free)
		}
	}
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if _, err := io.CopyN(h, f, have); err != nil {
		return "", fmt.Errorf("update download: rehash partial file: %w", err)
	}
	progress(have, d.Size)
	for attempt := 0; have < d.Size; attempt++ {
		if attempt == fetchAttempts {
			return "", fmt.Errorf("update download: %d of %d bytes after %d requests", have, d.Size, attempt)
		}
		n, restart, err := fetchRange(ctx, client, d, f, h, have, progress)
		if restart {
			have = 0 // the server ignored the Range and sent the whole file
		}
		have += n
		if err != nil {
			if errors.Is(err, ErrTruncated) || errors.Is(err, ErrOversize) || ctx.Err() != nil {
				return "", err
			}
			if n == 0 && attempt > 0 {
				return "", fmt.Errorf("update download: no progress at %d of %d bytes: %w", have, d.Size, err)
			}
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("update download: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != d.SHA256 {
		f.Close()
		os.Remove(part)
		return "", fmt.Errorf("%w: got %s, the job names %s", ErrHashMismatch, sum, d.SHA256)
	}
	if err := os.Rename(part, final); err != nil {
		return "", fmt.Errorf("update download: %w", err)
	}
	if dh, err := os.Open(dir); err == nil {
		_ = dh.Sync()
		dh.Close()
	}
	return final, nil
}

// fetchRange requests bytes from have on and appends them to f and h. It
// returns the bytes written and whether the server restarted from 0.
func fetchRange(ctx context.Context, client *http.Client, d Doc, f *os.File, h hash.Hash, have int64, progress func(int64, int64)) (int64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL, nil)
	if err != nil {
		return 0, false, err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("update download: %w", err)
	}
	defer resp.Body.Close()
	restart := false
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			return 0, false, fmt.Errorf("update download: bad Content-Range %q for a request from %d", resp.Header.Get("Content-Range"), have)
		}
		if total >= 0 && total != d.Size {
			return 0, false, sizeErr(total, d.Size)
		}
	case resp.StatusCode == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
			return 0, false, sizeErr(resp.ContentLength, d.Size)
		}
		if have > 0 {
			restart = true
			if err := f.Truncate(0); err != nil {
				return 0, false, err
			}
			h.Reset()
			have = 0
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return 0, false, fmt.Errorf("%w: it has no bytes from %d on (the job says %d)", ErrTruncated, have, d.Size)
	default:
		return 0, false, fmt.Errorf("update download: HTTP %s", resp.Status)
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return 0, restart, err
	}
	// One byte more than needed tells an oversized answer from an exact one.
	body := io.LimitReader(resp.Body, d.Size-have+1)
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if have+n+int64(k) > d.Size {
				return n, restart, fmt.Errorf("%w: more than %d bytes", ErrOversize, d.Size)
			}
			if _, err := f.Write(buf[:k]); err != nil {
				return n, restart, fmt.Errorf("update download: write: %w", err)
			}
			h.Write(buf[:k])
			n += int64(k)
			progress(have+n, d.Size)
		}
		if rerr == io.EOF {
			// Short of the size: the next request resumes (or learns
			// from a 416 that the server has no more).
			return n, restart, nil
		}
		if rerr != nil {
			return n, restart, fmt.Errorf("update download: %w", rerr)
		}
	}
}

func sizeErr(got, want int64) error {
	if got < want {
		return fmt.Errorf("%w: the server has %d bytes, the job says %d", ErrTruncated, got, want)
	}
	return fmt.Errorf("%w: the server has %d bytes, the job says %d", ErrOversize, got, want)
}

// contentRange parses "bytes START-END/TOTAL" (RFC 9110 §14.4); total is
// -1 for "*".
func contentRange(s string) (start, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	return start, total, err == nil
}

func removeOthers(dir string, keep ...string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("update dir: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !strings.HasPrefix(e.Name(), "bundle-") || p == keep[0] || p == keep[1] {
			continue
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("update dir: %w", err)
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
