package txreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNotCanonicalizable is returned for JSON the canonical form does not
// cover: floating-point or out-of-range numbers, duplicate keys, control
// characters in strings, trailing data.
var ErrNotCanonicalizable = errors.New("txreport: JSON outside the canonical subset")

// maxSafeInt is 2^53-1, the largest integer every JSON implementation
// (RFC 8785 §3.2.2.3, I-JSON RFC 7493 §2.2) represents exactly.
const maxSafeInt = 1<<53 - 1

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 16

// Canonical re-encodes one JSON value in the canonical form signatures
// cover. It is RFC 8785 (JCS) restricted to a subset in which JCS is
// trivial and every language gets the same bytes:
//   - objects: members sorted by key (byte order of the UTF-8 key, which
//     for the ASCII keys of the report equals JCS's UTF-16 order); no
//     duplicate keys;
//   - no whitespace between tokens;
//   - numbers: integers only, |n| ≤ 2^53-1, written in decimal without
//     sign for non-negative values, leading zeros, fraction or exponent;
//   - strings: valid UTF-8 without control characters (U+0000-U+001F,
//     U+007F) or U+2028/U+2029; only '"' and '\' are escaped (as \" and
//     \\); every other character is written literally;
//   - true, false, null as themselves.
func Canonical(in []byte) ([]byte, error) {
	// encoding/json would silently replace invalid UTF-8 with U+FFFD, so
	// two different inputs could share one canonical form.
	if !utf8.Valid(in) {
		return nil, fmt.Errorf("%w: input is not valid UTF-8", ErrNotCanonicalizable)
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var out bytes.Buffer
	if err := canonValue(dec, &out, 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrNotCanonicalizable)
	}
	return out.Bytes(), nil
}

func canonValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrNotCanonicalizable, maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return canonObject(dec, out, depth)
		case '[':
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := canonValue(dec, out, depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
			}
			out.WriteByte(']')
			return nil
		}
		return fmt.Errorf("%w: unexpected %q", ErrNotCanonicalizable, v)
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n > maxSafeInt || n < -maxSafeInt {
			return fmt.Errorf("%w: number %s is not an integer within ±2^53", ErrNotCanonicalizable, v)
		}
		out.WriteString(strconv.FormatInt(n, 10))
	case string:
		return canonString(out, v)
	case bool:
		out.WriteString(strconv.FormatBool(v))
	case nil:
		out.WriteString("null")
	default:
		return fmt.Errorf("%w: token %T", ErrNotCanonicalizable, tok)
	}
	return nil
}

func canonObject(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	type member struct {
		key string
		val []byte
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: object key %v", ErrNotCanonicalizable, tok)
		}
		var val bytes.Buffer
		if err := canonValue(dec, &val, depth+1); err != nil {
			return err
		}
		members = append(members, member{key, val.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
	}
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].key == m.key {
				// Two parsers could disagree on which duplicate wins.
				return fmt.Errorf("%w: duplicate key %q", ErrNotCanonicalizable, m.key)
			}
			out.WriteByte(',')
		}
		if err := canonString(out, m.key); err != nil {
			return err
		}
		out.WriteByte(':')
		out.Write(m.val)
	}
	out.WriteByte('}')
	return nil
}

// checkString enforces the canonical string subset.
func checkString(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: string is not valid UTF-8", ErrNotCanonicalizable)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 {
			return fmt.Errorf("%w: control character U+%04X in string", ErrNotCanonicalizable, r)
		}
	}
	return nil
}

func canonString(out *bytes.Buffer, s string) error {
	if err := checkString(s); err != nil {
		return err
	}
	out.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			out.WriteByte('\\')
		}
		out.WriteByte(s[i])
	}
	out.WriteByte('"')
	return nil
}
