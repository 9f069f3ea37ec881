package lds

import (
	"reflect"
	"strings"
	"testing"
)

// Specimen zones of ICAO Doc 9303 (Utopia, Anna Maria Eriksson): part 4
// (TD3), part 5 (TD1), part 6 (TD2); the long document number examples
// are 9303-11 Appendix D.2 (Peter John Stevenson).
const (
	td3Specimen = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<" + "L898902C36UTO7408122F1204159ZE184226B<<<<<10"
	td1Specimen = "I<UTOD231458907<<<<<<<<<<<<<<<" + "7408122F1204159UTO<<<<<<<<<<<6" + "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"
	td2Specimen = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<" + "D231458907UTO7408122F1204159<<<<<<<6"
	td1Long     = "I<UTOD23145890<7349<<<<<<<<<<<" + "3407127M9507122UTO<<<<<<<<<<<2" + "STEVENSON<<PETER<JOHN<<<<<<<<<"
	td2Long     = "I<UTOSTEVENSON<<PETER<JOHN<<<<<<<<<<" + "D23145890<UTO3407127M95071227349<<<8"
)

// TestCheckDigit uses the worked examples of 9303-3 §4.9 and the specimen
// fields of 9303-4/5/6.
func TestCheckDigit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want byte
	}{
		{"520727", '3'},    // 9303-3 §4.9.1 example 1 (date)
		{"AB2134<<<", '5'}, // 9303-3 §4.9.1 example 2 (document number)
		{"L898902C3", '6'}, // 9303-4 specimen document number
		{"740812", '2'},    // birth
		{"120415", '9'},    // expiry
		{"ZE184226B<<<<<", '1'},
		{"L898902C36" + "7408122" + "1204159ZE184226B<<<<<1", '0'}, // TD3 composite
		{"D23145890", '7'},
		{"D23145890734", '9'}, // 9303-11 D.2 long number
		{"<<<<<<<<<<<<<<", '0'},
		{"", '0'},
	} {
		got, err := CheckDigit(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("CheckDigit(%q) = %c, %v; want %c", tt.in, got, err, tt.want)
		}
	}
	if _, err := CheckDigit("ab"); err == nil {
		t.Error("lower case accepted")
	}
}

func TestParseSpecimens(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want MRZ
	}{
		{"TD3", td3Specimen, MRZ{Format: FormatTD3, DocumentCode: "P", IssuingState: "UTO", Surname: "ERIKSSON",
			GivenNames: "ANNA MARIA", DocumentNumber: "L898902C3", Nationality: "UTO", Birth: "740812", Sex: "F",
			Expiry: "120415", OptionalData: "ZE184226B"}},
		{"TD1", td1Specimen, MRZ{Format: FormatTD1, DocumentCode: "I", IssuingState: "UTO", Surname: "ERIKSSON",
			GivenNames: "ANNA MARIA", DocumentNumber: "D23145890", Nationality: "UTO", Birth: "740812", Sex: "F",
			Expiry: "120415"}},
		{"TD2", td2Specimen, MRZ{Format: FormatTD2, DocumentCode: "I", IssuingState: "UTO", Surname: "ERIKSSON",
			GivenNames: "ANNA MARIA", DocumentNumber: "D23145890", Nationality: "UTO", Birth: "740812", Sex: "F",
			Expiry: "120415"}},
		{"TD1 long number", td1Long, MRZ{Format: FormatTD1, DocumentCode: "I", IssuingState: "UTO", Surname: "STEVENSON",
			GivenNames: "PETER JOHN", DocumentNumber: "D23145890734", Nationality: "UTO", Birth: "340712", Sex: "M",
			Expiry: "950712"}},
		{"TD2 long number", td2Long, MRZ{Format: FormatTD2, DocumentCode: "I", IssuingState: "UTO", Surname: "STEVENSON",
			GivenNames: "PETER JOHN", DocumentNumber: "D23145890734", Nationality: "UTO", Birth: "340712", Sex: "M",
			Expiry: "950712"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMRZ(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !m.Valid() {
				t.Fatalf("failed checks %v: %+v", m.Failed(), m.Checks)
			}
			wantChecks := 4
			if m.Format == FormatTD3 {
				wantChecks = 5
			}
			if len(m.Checks) != wantChecks {
				t.Errorf("%d checks", len(m.Checks))
			}
			got := *m
			got.Checks, got.Raw = nil, ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			// The encoder reproduces the standard's zone exactly.
			enc, err := tt.want.Encode()
			if err != nil || enc != tt.in {
				t.Errorf("Encode = %q, %v\nwant     %q", enc, err, tt.in)
			}
			if lines := m.Lines(); strings.Join(lines, "") != tt.in {
				t.Errorf("Lines %q", lines)
			}
		})
	}
}

// TestMRZInformation: 9303-11 Appendix D.1 (BAC worked example) and D.2.
func TestMRZInformation(t *testing.T) {
	got, err := MRZInformation("L898902C", "690806", "940623")
	if err != nil || got != "L898902C<369080619406236" {
		t.Errorf("D.1: %q %v", got, err)
	}
	m, _ := ParseMRZ(td1Long)
	got, err = m.Information()
	if err != nil || got != "D23145890734934071279507122" {
		t.Errorf("D.2: %q %v", got, err)
	}
	if _, err := MRZInformation("L898902C", "6908", "940623"); err == nil {
		t.Error("short birth accepted")
	}
}

func TestParseReportsWrongCheckDigits(t *testing.T) {
	set := func(s string, i int, c byte) string { b := []byte(s); b[i] = c; return string(b) }
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"TD3 document number", set(td3Specimen, 44+9, '7'), []string{CheckDocumentNumber, CheckComposite}},
		{"TD3 birth", set(td3Specimen, 44+19, '3'), []string{CheckBirth, CheckComposite}},
		{"TD3 expiry", set(td3Specimen, 44+27, '0'), []string{CheckExpiry, CheckComposite}},
		{"TD3 personal number", set(td3Specimen, 44+42, '2'), []string{CheckOptionalData, CheckComposite}},
		{"TD3 composite", set(td3Specimen, 87, '1'), []string{CheckComposite}},
		{"TD3 data changed", set(td3Specimen, 44+14, '5'), []string{CheckBirth, CheckComposite}},
		{"TD1 composite", set(td1Specimen, 59, '5'), []string{CheckComposite}},
		{"TD1 optional data", set(td1Specimen, 20, 'X'), []string{CheckComposite}},
		{"TD1 long extension missing", set(td1Specimen, 14, '<'), []string{CheckDocumentNumber, CheckComposite}},
		{"TD2 birth", set(td2Specimen, 36+19, '1'), []string{CheckBirth, CheckComposite}},
		{"check digit not a digit", set(td2Specimen, 36+27, 'A'), []string{CheckExpiry, CheckComposite}},
	}
	for _, tt := range tests {
		m, err := ParseMRZ(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := m.Failed(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: failed %v, want %v", tt.name, got, tt.want)
		}
	}
	// An unused personal number may have '<' as check digit (9303-4).
	m, _ := ParseMRZ((&MRZ{Format: FormatTD3, DocumentCode: "P", IssuingState: "UTO", Surname: "X", DocumentNumber: "1",
		Nationality: "UTO", Birth: "000101", Expiry: "300101"}).mustEncode(t))
	if !m.Valid() || m.Raw[44+42] != '<' {
		t.Errorf("empty personal number: %v %q", m.Failed(), m.Raw)
	}
}

func (m *MRZ) mustEncode(t *testing.T) string {
	t.Helper()
	s, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"empty":         "",
		"89 characters": td3Specimen[:87] + "<<",
		"lower case":    strings.ToLower(td3Specimen),
		"space":         strings.Replace(td1Specimen, "<", " ", 1),
		"utf-8":         td2Specimen[:71] + "é",
	} {
		if _, err := ParseMRZ(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Line breaks are accepted.
	if _, err := ParseMRZ(td3Specimen[:44] + "\r\n" + td3Specimen[44:] + "\n"); err != nil {
		t.Error(err)
	}
}

func TestEncodeErrors(t *testing.T) {
	base := MRZ{Format: FormatTD3, DocumentCode: "P", IssuingState: "UTO", Surname: "ERIKSSON", GivenNames: "ANNA",
		DocumentNumber: "L898902C3", Nationality: "UTO", Birth: "740812", Sex: "F", Expiry: "120415"}
	for name, mod := range map[string]func(*MRZ){
		"TD3 long number": func(m *MRZ) { m.DocumentNumber = "L898902C3X" },
		"bad birth":       func(m *MRZ) { m.Birth = "74081" },
		"bad sex":         func(m *MRZ) { m.Sex = "Q" },
		"name too long":   func(m *MRZ) { m.Surname = strings.Repeat("A", 40) },
		"bad char":        func(m *MRZ) { m.Surname = "ÉRIK" },
		"no number":       func(m *MRZ) { m.DocumentNumber = "" },
		"TD1 too long":    func(m *MRZ) { m.Format, m.DocumentNumber = FormatTD1, strings.Repeat("1", 23) },
		"bad format":      func(m *MRZ) { m.Format = 7 },
	} {
		m := base
		mod(&m)
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestDG1RoundTrip(t *testing.T) {
	for _, z := range []string{td1Specimen, td2Specimen, td3Specimen, td1Long} {
		m, _ := ParseMRZ(z)
		b, err := EncodeDG1(m)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0x61 || b[2] != 0x5F || b[3] != 0x1F {
			t.Fatalf("DG1 % X", b[:4])
		}
		m2, err := ParseDG1(b)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip %v\n%+v\n%+v", err, m, m2)
		}
	}
	for name, b := range map[string][]byte{
		"wrong tag":    {0x62, 0x03, 0x5F, 0x1F, 0x00},
		"no 5F1F":      {0x61, 0x02, 0x04, 0x00},
		"short MRZ":    {0x61, 0x05, 0x5F, 0x1F, 0x02, 'P', '<'},
		"trailing":     append(append([]byte{}, mustDG1(t)...), 0x00),
		"inner excess": {0x61, 0x06, 0x5F, 0x1F, 0x01, 'P', 0x00, 0x00},
	} {
		if _, err := ParseDG1(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustDG1(t *testing.T) []byte {
	m, _ := ParseMRZ(td3Specimen)
	b, err := EncodeDG1(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseDG1(f *testing.F) {
	for _, z := range []string{td1Specimen, td2Specimen, td3Specimen, td1Long, td2Long} {
		m, _ := ParseMRZ(z)
		b, _ := EncodeDG1(m)
		f.Add(b)
	}
	f.Add([]byte{0x61, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDG1(b)
		if err != nil {
			return
		}
		n, w := m.Format.lines()
		if n*w != len(m.Raw) || strings.Join(m.Lines(), "") != m.Raw {
			t.Fatalf("format %v with %d characters", m.Format, len(m.Raw))
		}
		if len(m.Checks) < 4 {
			t.Fatalf("%d checks", len(m.Checks))
		}
		for _, c := range m.Checks {
			if c.Computed < '0' || c.Computed > '9' || c.OK != (c.Found == c.Computed) && c.Field != CheckOptionalData {
				t.Fatalf("check %+v", c)
			}
		}
		_, _ = m.Information()
	})
}
