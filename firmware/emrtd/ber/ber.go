// Package ber turns the BER that some issuers' CMS structures use into
// the DER the rest of the terminal parses (ITU-T X.690 §8 vs §10).
//
// ICAO 9303-10 §4.6.2 and 9303-12 §9 specify DER, but real EF.SODs and
// master lists are produced by CMS libraries that stream: their
// ContentInfo, SignedData and eContent use indefinite lengths
// (X.690 §8.1.3.6, `30 80 … 00 00`) and sometimes a constructed OCTET
// STRING for the eContent (X.690 §8.7.3). ToDER rewrites exactly those
// two forms (X.690 §10.1: definite lengths; §10.2: primitive strings)
// and copies every definite-length primitive element byte for byte, so
// the certificates and signed attributes inside — which signatures
// cover — keep the bytes their signer produced.
package ber

import (
	"errors"
	"fmt"
)

// MaxDepth bounds the nesting of constructed elements.
const MaxDepth = 64

// ErrMalformed is wrapped by every error of ToDER.
var ErrMalformed = errors.New("malformed BER")

// Error says where the encoding broke.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("malformed BER at offset %d: %s", e.Offset, e.Msg) }

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *Error) Unwrap() error { return ErrMalformed }

// ToDER converts one BER element (b holds exactly one) to DER as
// described in the package comment. DER input is returned unchanged
// (the same bytes, copied).
func ToDER(b []byte) ([]byte, error) {
	p := parser{b: b}
	e, err := p.element(0)
	if err != nil {
		return nil, err
	}
	if p.off != len(b) {
		return nil, &Error{p.off, fmt.Sprintf("%d bytes after the element", len(b)-p.off)}
	}
	return e.encode(nil), nil
}

// IsIndefinite reports whether b starts with a constructed element of
// indefinite length: the cheap test of whether ToDER is needed at the
// top level.
func IsIndefinite(b []byte) bool {
	p := parser{b: b}
	id, err := p.identifier()
	if err != nil || !id.constructed() {
		return false
	}
	return p.off < len(b) && b[p.off] == 0x80
}

type parser struct {
	b   []byte
	off int
}

// node is a parsed element: raw (verbatim) when nothing in it needs
// rewriting, else its identifier and re-encoded content.
type node struct {
	raw     []byte
	id      []byte
	content []byte
}

func (n node) encode(dst []byte) []byte {
	if n.raw != nil {
		return append(dst, n.raw...)
	}
	dst = append(dst, n.id...)
	dst = appendLength(dst, len(n.content))
	return append(dst, n.content...)
}

type ident []byte

func (id ident) constructed() bool { return id[0]&0x20 != 0 }

// universalString reports whether id is a universal string type that
// X.690 §8.21 / §8.6 / §8.7 allows in constructed form, and whether it
// is a BIT STRING.
func (id ident) universalString() (str, bit bool) {
	if len(id) != 1 || id[0]&0xC0 != 0 {
		return false, false
	}
	switch id[0] & 0x1F {
	case 3:
		return true, true
	case 4, 12, 18, 19, 20, 21, 22, 25, 26, 27, 28, 30:
		return true, false
	}
	return false, false
}

func (p *parser) identifier() (ident, error) {
	start := p.off
	if p.off >= len(p.b) {
		return nil, &Error{p.off, "no data"}
	}
	first := p.b[p.off]
	p.off++
	if first&0x1F == 0x1F { // X.690 §8.1.2.4 high tag number
		for {
			if p.off >= len(p.b) {
				return nil, &Error{p.off, "truncated tag"}
			}
			if p.off-start >= 5 {
				return nil, &Error{start, "tag longer than 5 bytes"}
			}
			c := p.b[p.off]
			p.off++
			if c&0x80 == 0 {
				break
			}
		}
	}
	return ident(p.b[start:p.off]), nil
}

// length returns the content length, or -1 for the indefinite form.
func (p *parser) length() (int, error) {
	if p.off >= len(p.b) {
		return 0, &Error{p.off, "truncated length"}
	}
	c := p.b[p.off]
	p.off++
	switch {
	case c < 0x80:
		if int(c) > len(p.b)-p.off {
			return 0, &Error{p.off, fmt.Sprintf("length %d exceeds the %d bytes left", c, len(p.b)-p.off)}
		}
		return int(c), nil
	case c == 0x80:
		return -1, nil
	case c == 0xFF:
		return 0, &Error{p.off - 1, "reserved length octet FF"}
	}
	k := int(c & 0x7F)
	if k > 4 {
		return 0, &Error{p.off - 1, fmt.Sprintf("length of %d bytes", k)}
	}
	if p.off+k > len(p.b) {
		return 0, &Error{p.off, "truncated length"}
	}
	n := 0
	for _, d := range p.b[p.off : p.off+k] {
		n = n<<8 | int(d)
	}
	p.off += k
	if n < 0 || n > len(p.b)-p.off {
		return 0, &Error{p.off, fmt.Sprintf("length %d exceeds the %d bytes left", n, len(p.b)-p.off)}
	}
	return n, nil
}

func (p *parser) atEOC() bool {
	return p.off+1 < len(p.b) && p.b[p.off] == 0 && p.b[p.off+1] == 0
}

func (p *parser) element(depth int) (node, error) {
	if depth > MaxDepth {
		return node{}, &Error{p.off, "nested too deeply"}
	}
	start := p.off
	id, err := p.identifier()
	if err != nil {
		return node{}, err
	}
	if len(id) == 1 && id[0] == 0 {
		return node{}, &Error{start, "end-of-contents where an element was expected"}
	}
	n, err := p.length()
	if err != nil {
		return node{}, err
	}
	if !id.constructed() {
		if n < 0 {
			return node{}, &Error{start, "primitive element with indefinite length"}
		}
		p.off += n
		return node{raw: p.b[start:p.off]}, nil
	}
	var kids []node
	changed := n < 0
	if n < 0 {
		for !p.atEOC() {
			k, err := p.element(depth + 1)
			if err != nil {
				return node{}, err
			}
			kids = append(kids, k)
		}
		p.off += 2
	} else {
		end := p.off + n
		sub := parser{b: p.b[:end], off: p.off}
		for sub.off < end {
			k, err := sub.element(depth + 1)
			if err != nil {
				return node{}, err
			}
			changed = changed || k.raw == nil
			kids = append(kids, k)
		}
		p.off = end
	}
	if str, bit := id.universalString(); str {
		return flatten(id, kids, bit, start)
	}
	if !changed {
		return node{raw: p.b[start:p.off]}, nil
	}
	var content []byte
	for _, k := range kids {
		content = k.encode(content)
	}
	return node{id: id, content: content}, nil
}

// flatten turns a constructed string into the primitive one (X.690
// §10.2): the segments' contents concatenated; for a BIT STRING only
// the last segment may have unused bits (§8.6.4).
func flatten(id ident, kids []node, bit bool, off int) (node, error) {
	prim := id[0] &^ 0x20
	var content []byte
	if bit {
		content = []byte{0}
	}
	for i, k := range kids {
		seg, sid, err := segment(k)
		if err != nil {
			return node{}, &Error{off, err.Error()}
		}
		if len(sid) != 1 || sid[0] != prim {
			return node{}, &Error{off, fmt.Sprintf("constructed string of tag %02X holds tag % X", id[0], sid)}
		}
		if !bit {
			content = append(content, seg...)
			continue
		}
		if len(seg) == 0 || seg[0] > 7 || (seg[0] != 0 && i != len(kids)-1) || (len(seg) == 1 && seg[0] != 0) {
			return node{}, &Error{off, "BIT STRING segment with misplaced unused bits"}
		}
		content = append(content, seg[1:]...)
		content[0] = seg[0]
	}
	return node{id: []byte{prim}, content: content}, nil
}

// segment returns the content and identifier of a flattened child.
func segment(k node) (content, id []byte, err error) {
	if k.raw == nil {
		return k.content, k.id, nil
	}
	p := parser{b: k.raw}
	i, err := p.identifier()
	if err != nil {
		return nil, nil, err
	}
	n, err := p.length()
	if err != nil || n < 0 {
		return nil, nil, errors.New("string segment length")
	}
	return k.raw[p.off : p.off+n], i, nil
}

func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xFF:
		return append(dst, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xFFFFFF:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}
