// Package staff holds per-person staff accounts for the kiosk's staff
// screen: a name and a PIN of 6-12 digits stored as an argon2id hash
// (RFC 9106) in PHC string form, and a lockout that grows with each wrong
// PIN. PINs are never stored or logged in clear.
package staff

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// argon2id parameters: RFC 9106 §4's second recommended option scaled to
// a 2-core kiosk (19 MiB, 2 passes, 1 lane, as OWASP's minimum): a PIN
// check costs tens of milliseconds; the lockout does the rest.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	keyLen    = 32
	saltLen   = 16
)

var (
	nameRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)
	pinRe  = regexp.MustCompile(`^[0-9]{6,12}$`)
)

// Errors callers branch on.
var (
	ErrBadPIN  = errors.New("staff: a PIN is 6 to 12 digits")
	ErrBadName = errors.New("staff: a name is 1-32 lowercase letters, digits, '.', '_' or '-', starting with a letter")
)

// Account is one person.
type Account struct {
	Name string
	Hash string // $argon2id$v=19$m=…,t=…,p=…$salt$hash
}

// HashPIN checks a PIN's form and hashes it with a fresh salt.
func HashPIN(pin string) (string, error) {
	if !pinRe.MatchString(pin) {
		return "", ErrBadPIN
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(pin), salt, passes, memoryKiB, lanes, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, passes, lanes,
		b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// params is a parsed PHC string.
type params struct {
	m, t      uint32
	p         uint8
	salt, sum []byte
}

func parseHash(h string) (params, error) {
	var p params
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, errors.New("staff: not an argon2id v19 hash")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.m, &p.t, &p.p); err != nil || p.m < 8*1024 || p.t < 1 || p.p < 1 || p.m > 1<<20 || p.t > 10 {
		return p, errors.New("staff: argon2id parameters out of range")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return p, errors.New("staff: bad salt")
	}
	if p.sum, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.sum) < 16 {
		return p, errors.New("staff: bad hash")
	}
	return p, nil
}

// Verify reports whether pin matches the account's hash.
func (a Account) Verify(pin string) bool {
	p, err := parseHash(a.Hash)
	if err != nil || !pinRe.MatchString(pin) {
		return false
	}
	sum := argon2.IDKey([]byte(pin), p.salt, p.t, p.m, p.p, uint32(len(p.sum)))
	return subtle.ConstantTimeCompare(sum, p.sum) == 1
}

// Accounts is the account file: one "name hash" per line, '#' comments.
type Accounts []Account

// Load reads an account file; one readable by group or others is refused
// (its hashes could be attacked offline).
func Load(path string) (Accounts, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("staff accounts: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("staff accounts %s: mode %v is readable by group or others: chmod 600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("staff accounts: %w", err)
	}
	return Parse(b)
}

// Parse decodes an account file.
func Parse(b []byte) (Accounts, error) {
	var out Accounts
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, " ")
		hash = strings.TrimSpace(hash)
		if !ok || !nameRe.MatchString(name) {
			return nil, fmt.Errorf("staff accounts line %d: %w", n, ErrBadName)
		}
		if _, err := parseHash(hash); err != nil {
			return nil, fmt.Errorf("staff accounts line %d: %w", n, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("staff accounts line %d: %q twice", n, name)
		}
		seen[name] = true
		out = append(out, Account{Name: name, Hash: hash})
	}
	if len(out) == 0 {
		return nil, errors.New("staff accounts: none")
	}
	return out, sc.Err()
}

// Match finds the account whose PIN this is. Staff log in with their PIN
// alone (the screen is a PIN pad), so PINs are unique (Add refuses a
// taken one); every account is tried, so the time does not say which.
func (as Accounts) Match(pin string) (Account, bool) {
	var found Account
	ok := false
	for _, a := range as {
		if a.Verify(pin) && !ok {
			found, ok = a, true
		}
	}
	return found, ok
}

// Add appends an account to the file at path (created with mode 0600).
func Add(path, name, pin string) error {
	if !nameRe.MatchString(name) {
		return ErrBadName
	}
	h, err := HashPIN(pin)
	if err != nil {
		return err
	}
	existing, err := Load(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		for _, a := range existing {
			if a.Name == name {
				return fmt.Errorf("staff: %q exists", name)
			}
			if a.Verify(pin) {
				return errors.New("staff: this PIN is taken: choose another")
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("staff accounts: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s %s\n", name, h)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Lockout grows with each wrong PIN: the first three are free, then the
// screen locks for 30 s, doubling with each further failure up to a day
// (about 15 guesses a day at the cap, against a million PINs). A success
// resets it.
//
// With Path set the state is kept in that file (written atomically after
// each change), so a restart does not reset it (OpenLockout).
type Lockout struct {
	failures int
	until    time.Time
	// Path, when set, persists the state; SaveErr holds the last write
	// error (the in-memory state still counts).
	Path    string
	SaveErr error
}

type lockoutFile struct {
	Failures int       `json:"failures"`
	Until    time.Time `json:"until,omitzero"`
}

// OpenLockout reads a persisted lockout (a missing file is a fresh one).
// A file that cannot be read or parsed counts as Free failures (the next
// wrong PIN locks) and is reported: the lockout never restarts at zero
// because its file was damaged.
func OpenLockout(path string) (*Lockout, error) {
	l := &Lockout{Path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	var f lockoutFile
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		l.failures = Free
		return l, fmt.Errorf("staff lockout %s: %w", path, err)
	}
	l.failures, l.until = max(f.Failures, 0), f.Until
	return l, nil
}

func (l *Lockout) save() {
	if l.Path == "" {
		return
	}
	b, _ := json.Marshal(lockoutFile{Failures: l.failures, Until: l.until.UTC()})
	tmp := l.Path + ".tmp"
	err := os.MkdirAll(filepath.Dir(l.Path), 0o700)
	if err == nil {
		err = os.WriteFile(tmp, b, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, l.Path)
	}
	l.SaveErr = err
}

// Free is how many wrong PINs come without a wait.
const Free = 3

// Locked says how long login is refused at now (0: it is not).
func (l *Lockout) Locked(now time.Time) time.Duration {
	if now.Before(l.until) {
		return l.until.Sub(now)
	}
	return 0
}

// Fail records a wrong PIN and returns the wait it imposes.
func (l *Lockout) Fail(now time.Time) time.Duration {
	l.failures++
	if l.failures <= Free {
		l.save()
		return 0
	}
	d := 30 * time.Second << min(l.failures-Free-1, 20)
	if d > 24*time.Hour || d <= 0 {
		d = 24 * time.Hour
	}
	l.until = now.Add(d)
	l.save()
	return d
}

// Succeed resets the lockout.
func (l *Lockout) Succeed() {
	l.failures, l.until = 0, time.Time{}
	l.save()
}

// Failures is the count since the last success.
func (l *Lockout) Failures() int { return l.failures }
