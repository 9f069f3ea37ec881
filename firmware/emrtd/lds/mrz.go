package lds

import (
	"fmt"
	"strings"

	"kiosk/firmware/emrtd/tlv"
)

// Format is the size variant of the machine readable zone (9303-3 §4.2).
type Format int

// MRZ formats: TD1 3x30 (9303-5), TD2 2x36 (9303-6), TD3 2x44 (9303-4).
const (
	FormatTD1 Format = 1
	FormatTD2 Format = 2
	FormatTD3 Format = 3
)

func (f Format) String() string {
	switch f {
	case FormatTD1:
		return "TD1"
	case FormatTD2:
		return "TD2"
	case FormatTD3:
		return "TD3"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

func (f Format) lines() (n, width int) {
	switch f {
	case FormatTD1:
		return 3, 30
	case FormatTD2:
		return 2, 36
	case FormatTD3:
		return 2, 44
	}
	return 0, 0
}

// Names of the check digits in MRZ.Checks.
const (
	CheckDocumentNumber = "document_number"
	CheckBirth          = "birth"
	CheckExpiry         = "expiry"
	CheckOptionalData   = "optional_data" // TD3 personal number
	CheckComposite      = "composite"
)

// Check is the outcome of one check digit.
type Check struct {
	Field    string
	Found    byte // the character in the MRZ
	Computed byte // '0'..'9'
	OK       bool
}

// MRZ is the parsed machine readable zone (DG1 content, 9303-10 §4.7.1).
// Filler characters are removed from the text fields; Raw keeps the zone.
type MRZ struct {
	Format         Format
	DocumentCode   string // "P", "I", "ID", "AC", ...
	IssuingState   string // ISO 3166-1 alpha-3 or 9303-3 code, e.g. "UTO", "D"
	Surname        string // primary identifier, '<' inside a name become spaces
	GivenNames     string // secondary identifier, names separated by one space
	DocumentNumber string // the full number, including a TD1/TD2 extension
	Nationality    string
	Birth          string // YYMMDD as printed
	Sex            string // "M", "F", "X" or "<" (unspecified)
	Expiry         string // YYMMDD
	OptionalData   string // TD3 personal number; TD1 line 1 / TD2 optional data
	OptionalData2  string // TD1 line 2 optional data
	// Checks lists every check digit of the zone. Parsing does not fail on a
	// wrong check digit: the caller decides (see Valid and Failed).
	Checks []Check
	Raw    string // the zone without line breaks
}

// Valid reports whether every check digit matched.
func (m *MRZ) Valid() bool { return len(m.Failed()) == 0 }

// Failed lists the fields whose check digit did not match.
func (m *MRZ) Failed() []string {
	var out []string
	for _, c := range m.Checks {
		if !c.OK {
			out = append(out, c.Field)
		}
	}
	return out
}

// Lines returns the zone split into its lines.
func (m *MRZ) Lines() []string {
	n, w := m.Format.lines()
	if n == 0 || len(m.Raw) != n*w {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = m.Raw[i*w : (i+1)*w]
	}
	return out
}

func charValue(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10, true
	case c == '<':
		return 0, true
	}
	return 0, false
}

// CheckDigit computes the check digit of s (9303-3 §4.9: weights 7,3,1
// repeating, digits count their value, A..Z 10..35, '<' 0, modulus 10).
func CheckDigit(s string) (byte, error) {
	weights := [3]int{7, 3, 1}
	sum := 0
	for i := 0; i < len(s); i++ {
		v, ok := charValue(s[i])
		if !ok {
			return 0, fmt.Errorf("%w: character %q at %d is not an MRZ character", ErrMalformed, s[i], i)
		}
		sum += v * weights[i%3]
	}
	return byte('0' + sum%10), nil
}

func validMRZChars(s string) error {
	for i := 0; i < len(s); i++ {
		if _, ok := charValue(s[i]); !ok {
			return malformed("MRZ character %q at %d", s[i], i)
		}
	}
	return nil
}

func trimFiller(s string) string { return strings.TrimRight(s, "<") }

// check records the check digit of data found at cd. data contains only
// MRZ characters here (validated before), so CheckDigit cannot fail.
func check(field, data string, cd byte) Check {
	c, _ := CheckDigit(data)
	return Check{Field: field, Found: cd, Computed: c, OK: c == cd}
}

func parseName(f string) (surname, given string) {
	primary, secondary, _ := strings.Cut(f, "<<")
	surname = strings.TrimSpace(strings.ReplaceAll(primary, "<", " "))
	var parts []string
	for _, p := range strings.Split(secondary, "<") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return surname, strings.Join(parts, " ")
}

// docNumber handles the TD1/TD2 long document number rule (9303-5 §4.2.2
// note j, 9303-6 §4.2.2): when the number is longer than 9 characters the
// check digit position holds '<', the remaining characters start the
// optional data, followed by the check digit and a filler. It returns the
// full number, its check, and the optional data left after the extension.
func docNumber(field string, cd byte, opt string) (string, Check, string) {
	if cd != '<' {
		return trimFiller(field), check(CheckDocumentNumber, field, cd), opt
	}
	ext, rest, _ := strings.Cut(opt, "<")
	if len(ext) < 2 {
		// '<' announces an extension that is not there: report the check as
		// failed rather than inventing a number.
		c := check(CheckDocumentNumber, field, '<')
		return trimFiller(field), c, opt
	}
	full := field + ext[:len(ext)-1]
	return trimFiller(full), check(CheckDocumentNumber, full, ext[len(ext)-1]), strings.TrimLeft(rest, "<")
}

// ParseMRZ parses a TD1, TD2 or TD3 zone given as one string (as stored in
// DG1) or as lines separated by newlines. The format follows from the length.
// A structural problem (wrong length, a character outside A-Z 0-9 '<') is an
// error; wrong check digits are reported in MRZ.Checks.
func ParseMRZ(s string) (*MRZ, error) {
	s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	if err := validMRZChars(s); err != nil {
		return nil, err
	}
	m := &MRZ{Raw: s}
	switch len(s) {
	case 90:
		m.Format = FormatTD1
		parseTD1(m, s[0:30], s[30:60], s[60:90])
	case 72:
		m.Format = FormatTD2
		parseTD2or3(m, s[0:36], s[36:72])
	case 88:
		m.Format = FormatTD3
		parseTD2or3(m, s[0:44], s[44:88])
	default:
		return nil, malformed("MRZ of %d characters is neither TD1 (90), TD2 (72) nor TD3 (88)", len(s))
	}
	return m, nil
}

// parseTD1 follows 9303-5 §4.2.2.
func parseTD1(m *MRZ, l1, l2, l3 string) {
	m.DocumentCode = trimFiller(l1[0:2])
	m.IssuingState = trimFiller(l1[2:5])
	var dc Check
	var opt1 string
	m.DocumentNumber, dc, opt1 = docNumber(l1[5:14], l1[14], l1[15:30])
	m.OptionalData = trimFiller(opt1)
	m.Birth = l2[0:6]
	m.Sex = l2[7:8]
	m.Expiry = l2[8:14]
	m.Nationality = trimFiller(l2[15:18])
	m.OptionalData2 = trimFiller(l2[18:29])
	m.Surname, m.GivenNames = parseName(l3)
	m.Checks = []Check{
		dc,
		check(CheckBirth, l2[0:6], l2[6]),
		check(CheckExpiry, l2[8:14], l2[14]),
		check(CheckComposite, l1[5:30]+l2[0:7]+l2[8:15]+l2[18:29], l2[29]),
	}
}

// parseTD2or3 follows 9303-6 §4.2.2 (TD2) and 9303-4 §4.2.2 (TD3); the
// two share line 2 up to the expiry check digit.
func parseTD2or3(m *MRZ, l1, l2 string) {
	m.DocumentCode = trimFiller(l1[0:2])
	m.IssuingState = trimFiller(l1[2:5])
	m.Surname, m.GivenNames = parseName(l1[5:])
	m.Nationality = trimFiller(l2[10:13])
	m.Birth = l2[13:19]
	m.Sex = l2[20:21]
	m.Expiry = l2[21:27]
	birth := check(CheckBirth, l2[13:19], l2[19])
	expiry := check(CheckExpiry, l2[21:27], l2[27])
	if m.Format == FormatTD3 {
		m.DocumentNumber = trimFiller(l2[0:9])
		m.OptionalData = trimFiller(l2[28:42])
		opt := check(CheckOptionalData, l2[28:42], l2[42])
		// 9303-4 §4.2.2 note: an unused personal number field may carry
		// '<' as its check digit.
		if !opt.OK && l2[42] == '<' && m.OptionalData == "" {
			opt.OK = true
		}
		m.Checks = []Check{
			check(CheckDocumentNumber, l2[0:9], l2[9]), birth, expiry, opt,
			check(CheckComposite, l2[0:10]+l2[13:20]+l2[21:43], l2[43]),
		}
		return
	}
	var dc Check
	var opt string
	m.DocumentNumber, dc, opt = docNumber(l2[0:9], l2[9], l2[28:35])
	m.OptionalData = trimFiller(opt)
	m.Checks = []Check{dc, birth, expiry,
		check(CheckComposite, l2[0:10]+l2[13:20]+l2[21:35], l2[35])}
}

// MRZInformation returns the "MRZ information" that keys BAC and PACE with
// an MRZ password (9303-11 §4.3.2 / §9.7.3): document number (padded with
// '<' to at least 9 characters) + its check digit + birth + check digit +
// expiry + check digit. Long document numbers are used in full (9303-11
// Appendix D.2).
func MRZInformation(docNumber, birth, expiry string) (string, error) {
	if docNumber == "" {
		return "", malformed("empty document number")
	}
	if len(birth) != 6 || !digits(birth) || len(expiry) != 6 || !digits(expiry) {
		return "", malformed("birth %q / expiry %q are not YYMMDD", birth, expiry)
	}
	for len(docNumber) < 9 {
		docNumber += "<"
	}
	var b strings.Builder
	for _, f := range []string{docNumber, birth, expiry} {
		cd, err := CheckDigit(f)
		if err != nil {
			return "", err
		}
		b.WriteString(f)
		b.WriteByte(cd)
	}
	return b.String(), nil
}

// Information returns MRZInformation for this zone.
func (m *MRZ) Information() (string, error) {
	return MRZInformation(m.DocumentNumber, m.Birth, m.Expiry)
}

// field pads s with '<' to n characters after replacing spaces.
func field(name, s string, n int) (string, error) {
	s = strings.ReplaceAll(s, " ", "<")
	if len(s) > n {
		return "", malformed("%s %q longer than %d characters", name, s, n)
	}
	if err := validMRZChars(s); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return s + strings.Repeat("<", n-len(s)), nil
}

func nameField(surname, given string, n int) (string, error) {
	s := strings.ReplaceAll(strings.TrimSpace(surname), "-", " ")
	if g := strings.TrimSpace(strings.ReplaceAll(given, "-", " ")); g != "" {
		s += "<<" + strings.Join(strings.Fields(g), "<")
	}
	// 9303-3 §4.6 truncation rules are not implemented: too long is an error.
	return field("name", s, n)
}

func cd(s string) byte {
	c, _ := CheckDigit(s)
	return c
}

// Encode builds the zone for m's Format from its fields, computing every
// check digit; Checks and Raw are ignored. Names must already be
// transliterated to A-Z (9303-3 §6).
func (m *MRZ) Encode() (string, error) {
	code, err := field("document code", m.DocumentCode, 2)
	if err != nil {
		return "", err
	}
	state, err := field("issuing state", m.IssuingState, 3)
	if err != nil {
		return "", err
	}
	nat, err := field("nationality", m.Nationality, 3)
	if err != nil {
		return "", err
	}
	for _, d := range []struct{ n, v string }{{"birth", m.Birth}, {"expiry", m.Expiry}} {
		if len(d.v) != 6 || !digits(d.v) {
			return "", malformed("%s %q is not YYMMDD", d.n, d.v)
		}
	}
	sex := m.Sex
	if sex == "" {
		sex = "<"
	}
	if sex != "M" && sex != "F" && sex != "X" && sex != "<" {
		return "", malformed("sex %q is not M, F, X or <", m.Sex)
	}
	if m.DocumentNumber == "" {
		return "", malformed("empty document number")
	}
	if err := validMRZChars(m.DocumentNumber); err != nil {
		return "", fmt.Errorf("document number: %w", err)
	}
	birth := m.Birth + string(cd(m.Birth))
	expiry := m.Expiry + string(cd(m.Expiry))

	switch m.Format {
	case FormatTD3:
		if len(m.DocumentNumber) > 9 {
			return "", malformed("TD3 document number %q longer than 9", m.DocumentNumber)
		}
		doc, _ := field("document number", m.DocumentNumber, 9)
		name, err := nameField(m.Surname, m.GivenNames, 39)
		if err != nil {
			return "", err
		}
		pn, err := field("personal number", m.OptionalData, 14)
		if err != nil {
			return "", err
		}
		pncd := cd(pn)
		if m.OptionalData == "" {
			pncd = '<'
		}
		l2 := doc + string(cd(doc)) + nat + birth + sex + expiry + pn + string(pncd)
		l2 += string(cd(l2[0:10] + l2[13:20] + l2[21:43]))
		return code + state + name + l2, nil
	case FormatTD1, FormatTD2:
		optLen := 15
		if m.Format == FormatTD2 {
			optLen = 7
		}
		doc, docCD, optPrefix := longDocNumber(m.DocumentNumber)
		opt, err := field("optional data", optPrefix+m.OptionalData, optLen)
		if err != nil {
			return "", err
		}
		if m.Format == FormatTD2 {
			name, err := nameField(m.Surname, m.GivenNames, 31)
			if err != nil {
				return "", err
			}
			l2 := doc + string(docCD) + nat + birth + sex + expiry + opt
			l2 += string(cd(l2[0:10] + l2[13:20] + l2[21:35]))
			return code + state + name + l2, nil
		}
		opt2, err := field("optional data 2", m.OptionalData2, 11)
		if err != nil {
			return "", err
		}
		name, err := nameField(m.Surname, m.GivenNames, 30)
		if err != nil {
			return "", err
		}
		l1 := code + state + doc + string(docCD) + opt
		l2 := birth + sex + expiry + nat + opt2
		l2 += string(cd(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29]))
		return l1 + l2 + name, nil
	}
	return "", malformed("unknown MRZ format %v", m.Format)
}

// longDocNumber splits a TD1/TD2 document number: up to 9 characters go in
// the number field with their check digit; a longer number puts '<' there
// and starts the optional data with the rest, its check digit and '<'.
func longDocNumber(n string) (field string, checkDigit byte, optPrefix string) {
	if len(n) <= 9 {
		f := n + strings.Repeat("<", 9-len(n))
		return f, cd(f), ""
	}
	return n[:9], '<', n[9:] + string(cd(n)) + "<"
}

// Tags inside DG1 (9303-10 §4.7.1).
const tagMRZ tlv.Tag = 0x5F1F

// ParseDG1 parses the DG1 file (tag 61 { 5F1F MRZ }).
func ParseDG1(b []byte) (*MRZ, error) {
	v, err := tlv.Unwrap(b, TagDG1)
	if err != nil {
		return nil, malformed("DG1: %v", err)
	}
	mrz, err := tlv.Unwrap(v, tagMRZ)
	if err != nil {
		return nil, malformed("DG1: %v", err)
	}
	m, err := ParseMRZ(string(mrz))
	if err != nil {
		return nil, fmt.Errorf("DG1: %w", err)
	}
	return m, nil
}

// EncodeDG1 builds the DG1 file for m (see MRZ.Encode).
func EncodeDG1(m *MRZ) ([]byte, error) {
	s, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("DG1: %w", err)
	}
	return tlv.Encode(TagDG1, tlv.Encode(tagMRZ, []byte(s))), nil
}
