// Package audit is the kiosk's append-only log of staff actions, hash
// chained: each entry carries the SHA-256 of the previous entry's
// canonical encoding, so removing or altering an entry breaks the chain at
// the next one (and the hub, which receives every entry through the
// outbox, holds a copy that shows a rewritten tail). One JSON entry per
// line, fsynced.
package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"kiosk/firmware/txreport"
)

// Genesis is the Prev of the first entry.
var Genesis = strings.Repeat("0", 64)

var codeRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ErrBroken: the chain does not hold (an entry removed, altered or
// inserted).
var ErrBroken = errors.New("audit: chain broken")

// Entry is one staff action. It travels in event reports too
// (txreport.Report.Audit).
type Entry = txreport.AuditEntry

// Hash is the lowercase hex SHA-256 of e's canonical JSON.
func Hash(e Entry) (string, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	c, err := txreport.Canonical(raw)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(c)
	return hex.EncodeToString(s[:]), nil
}

// Verify checks a chain from its first entry: sequence numbers 1, 2, …
// and each Prev the hash of the entry before.
func Verify(entries []Entry) error {
	prev := Genesis
	for i, e := range entries {
		if e.Seq != uint64(i+1) {
			return fmt.Errorf("%w: entry %d has sequence %d", ErrBroken, i+1, e.Seq)
		}
		if e.Prev != prev {
			return fmt.Errorf("%w at sequence %d: previous entry removed or altered", ErrBroken, e.Seq)
		}
		h, err := Hash(e)
		if err != nil {
			return fmt.Errorf("%w at sequence %d: %v", ErrBroken, e.Seq, err)
		}
		prev = h
	}
	return nil
}

// Log is an audit file.
type Log struct {
	path string
	mu   sync.Mutex
	seq  uint64
	prev string
}

// Open reads and verifies the file (created if missing). A broken chain
// is returned as an error wrapping ErrBroken together with a Log that
// appends after the last entry: staff actions keep being recorded, and
// the break stays visible.
func Open(path string) (*Log, error) {
	l := &Log{path: path, prev: Genesis}
	entries, err := Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if len(entries) > 0 {
		last := entries[len(entries)-1]
		l.seq = last.Seq
		if l.prev, err = Hash(last); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return l, err
	}
	return l, Verify(entries)
}

// Read decodes every entry of a file.
func Read(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("%w: line %d: %v", ErrBroken, n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// Append records an action and returns the entry (with its sequence and
// link) once it is on disk.
func (l *Log) Append(staff, action, detail string, now time.Time) (Entry, error) {
	if !codeRe.MatchString(action) {
		return Entry{}, fmt.Errorf("audit: action %q is not a code", action)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := Entry{Seq: l.seq + 1, Time: txreport.Timestamp(now), Staff: staff, Action: action, Detail: detail, Prev: l.prev}
	h, err := Hash(e)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: %w", err)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return Entry{}, err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Entry{}, fmt.Errorf("audit: %w", err)
	}
	l.seq, l.prev = e.Seq, h
	return e, nil
}
