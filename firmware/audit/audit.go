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
	"slices"
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

// Held is what a holder of copies (the hub) can say of a kiosk's chain
// from the entries it received, in any order, with redeliveries.
type Held struct {
	First uint64 `json:"first"` // sequence range held (0, 0: none)
	Last  uint64 `json:"last"`
	// Missing are the sequence numbers between First and Last that were
	// never received: not delivered yet (still in the kiosk's outbox) or
	// removed before they left the kiosk.
	Missing []uint64 `json:"missing,omitempty"`
	// Breaks are links that do not hold: an entry whose Prev is not the
	// hash of the entry held before it, or two different entries with one
	// sequence number (a kiosk that rewrote its log after delivering).
	Breaks []string `json:"breaks,omitempty"`
}

// Intact: a gapless chain from First to Last with every link holding.
func (h Held) Intact() bool { return len(h.Missing) == 0 && len(h.Breaks) == 0 }

// maxMissing bounds the list of missing numbers reported (a forged
// sequence of 2^63 must not make a list that size).
const maxMissing = 1000

// VerifyHeld checks the entries a holder received. Unlike Verify it
// accepts a chain that starts after 1 (earlier entries pruned by
// retention: First's own link cannot be checked) and reports gaps rather
// than failing on the first. Because every entry is kept as delivered,
// a kiosk that truncates and rewrites its log shows as a second entry for
// a sequence number, or as a broken link at the first rewritten entry.
func VerifyHeld(entries []Entry) Held {
	var h Held
	bySeq := map[uint64]Entry{}
	hashes := map[uint64]string{}
	for _, e := range entries {
		if e.Seq == 0 {
			h.Breaks = append(h.Breaks, "an entry with sequence 0")
			continue
		}
		eh, err := Hash(e)
		if err != nil {
			h.Breaks = append(h.Breaks, fmt.Sprintf("sequence %d: %v", e.Seq, err))
			continue
		}
		if prev, ok := hashes[e.Seq]; ok {
			if prev != eh {
				h.Breaks = append(h.Breaks, fmt.Sprintf("sequence %d: two different entries (the log was rewritten)", e.Seq))
			}
			continue // a redelivery of the same entry
		}
		bySeq[e.Seq], hashes[e.Seq] = e, eh
	}
	if len(bySeq) == 0 {
		return h
	}
	seqs := make([]uint64, 0, len(bySeq))
	for s := range bySeq {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	h.First, h.Last = seqs[0], seqs[len(seqs)-1]
	if h.First == 1 && bySeq[1].Prev != Genesis {
		h.Breaks = append(h.Breaks, "sequence 1: does not start the chain")
	}
	for i := 1; i < len(seqs); i++ {
		s, before := seqs[i], seqs[i-1]
		for m := before + 1; m < s && len(h.Missing) < maxMissing; m++ {
			h.Missing = append(h.Missing, m)
		}
		if s == before+1 && bySeq[s].Prev != hashes[before] {
			h.Breaks = append(h.Breaks, fmt.Sprintf("sequence %d: previous entry removed or altered", s))
		}
	}
	return h
}

// Epochs splits held entries into the chains a kiosk wrote one after the
// other: decommission resets the log, so a later entry 1 (linked to
// Genesis) starts a new chain. Entries belong to the last chain started
// at or before their time; entries older than the first start (or all,
// when no entry 1 is held: pruned) form the first group. Each group is
// for VerifyHeld. A chain restarted without a decommission is for the
// operator to notice: the command that prints this shows every start.
func Epochs(entries []Entry) [][]Entry {
	var starts []string
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Seq == 1 && e.Prev == Genesis && !seen[e.Time] {
			seen[e.Time] = true
			starts = append(starts, e.Time)
		}
	}
	slices.Sort(starts) // RFC 3339 UTC with fixed milliseconds: sorts as time
	groups := make([][]Entry, len(starts)+1)
	for _, e := range entries {
		// Index of the last start at or before e.Time, +1 (0: before all).
		i, found := slices.BinarySearch(starts, e.Time)
		if found {
			i++
		}
		groups[i] = append(groups[i], e)
	}
	if len(groups[0]) == 0 {
		groups = groups[1:]
	}
	return groups
}
