package cardimage

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testImage() *Image {
	return &Image{
		Meta: Meta{Version: 1, Profile: "good", CAN: "123456", PIN: "123456", PINRetries: 3,
			MRZ:            MRZKey{DocumentNumber: "L898902C3", Birth: "740812", Expiry: "120415"},
			PACE:           &PACE{OID: "0.4.0.127.0.7.2.2.4.2.2", ParameterID: 13},
			ExtendedLength: true, ATR: "3B8880010000000000000000"},
		Files: map[uint16][]byte{0x011C: {0x31, 0x00}, 0x011E: {0x60, 0x00}, 0x0101: {0x61, 0x00}, 0x011D: {0x77, 0x00}},
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	im := testImage()
	if err := im.Save(dir); err != nil {
		t.Fatal(err)
	}
	// The documented layout.
	for _, name := range []string{"card.json", "ef/011C.bin", "ef/011E.bin", "ef/0101.bin", "ef/011D.bin"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", name, fi.Mode())
		}
	}
	js, _ := os.ReadFile(filepath.Join(dir, "card.json"))
	for _, key := range []string{`"version": 1`, `"can": "123456"`, `"pin_retries": 3`, `"document_number": "L898902C3"`,
		`"parameter_id": 13`, `"extended_length": true`, `"bac": false`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("card.json lacks %s:\n%s", key, js)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, im) {
		t.Fatalf("got %+v\nwant %+v", got, im)
	}
	// Saving a smaller image removes the stale file.
	delete(im.Files, 0x0101)
	if err := im.Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ef", "0101.bin")); !os.IsNotExist(err) {
		t.Errorf("stale file: %v", err)
	}
	if got, err = Load(dir); err != nil || len(got.Files) != 3 {
		t.Fatalf("%v %d files", err, len(got.Files))
	}
	// EF.CardSecurity lives beside ef/ (its FID is EF.SOD's) and goes when
	// the image no longer has it.
	im.CardSecurity = []byte{0x30, 0x00}
	if err := im.Save(dir); err != nil {
		t.Fatal(err)
	}
	if got, err = Load(dir); err != nil || !reflect.DeepEqual(got.CardSecurity, im.CardSecurity) || !reflect.DeepEqual(got.Files[0x011D], []byte{0x77, 0x00}) {
		t.Fatalf("EF.CardSecurity: %v %X", err, got.CardSecurity)
	}
	im.CardSecurity = nil
	if err := im.Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CardSecurityFile)); !os.IsNotExist(err) {
		t.Errorf("stale EF.CardSecurity: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := map[string]func(dir string){
		"unknown json field": func(dir string) { editJSON(dir, `"profile"`, `"colour": "red", "profile"`) },
		"trailing json":      func(dir string) { appendFile(dir, "card.json", "{}") },
		"wrong version":      func(dir string) { editJSON(dir, `"version": 1`, `"version": 2`) },
		"bad CAN":            func(dir string) { editJSON(dir, `"can": "123456"`, `"can": "12345"`) },
		"pin retries 0":      func(dir string) { editJSON(dir, `"pin_retries": 3`, `"pin_retries": 0`) },
		"bad birth":          func(dir string) { editJSON(dir, `"birth": "740812"`, `"birth": "74-08-12"`) },
		"bac with pace":      func(dir string) { editJSON(dir, `"bac": false`, `"bac": true`) },
		"bad oid":            func(dir string) { editJSON(dir, `"oid": "0.4.0.127.0.7.2.2.4.2.2"`, `"oid": "pace"`) },
		"bad atr":            func(dir string) { editJSON(dir, `"atr": "3B88`, `"atr": "ZZ88`) },
		"no card access":     func(dir string) { os.Remove(filepath.Join(dir, "ef", "011C.bin")) },
		"short name":         func(dir string) { writeEF(dir, "11C.bin", 1) },
		"not hex":            func(dir string) { writeEF(dir, "01G1.bin", 1) },
		"other extension":    func(dir string) { writeEF(dir, "0101.dat", 1) },
		"MF id":              func(dir string) { writeEF(dir, "3F00.bin", 1) },
		"duplicate by case":  func(dir string) { writeEF(dir, "011c.bin", 1) },
		"file too large":     func(dir string) { writeEF(dir, "0102.bin", MaxFileSize+1) },
		"subdirectory":       func(dir string) { os.Mkdir(filepath.Join(dir, "ef", "0103.bin"), 0o700) },
		"no ef dir":          func(dir string) { os.RemoveAll(filepath.Join(dir, "ef")) },
		"no card.json":       func(dir string) { os.Remove(filepath.Join(dir, "card.json")) },
		"huge card.json":     func(dir string) { appendFile(dir, "card.json", strings.Repeat(" ", MaxMetaSize)) },
	}
	for name, corrupt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := testImage().Save(dir); err != nil {
				t.Fatal(err)
			}
			corrupt(dir)
			if im, err := Load(dir); err == nil {
				t.Fatalf("loaded %+v", im.Meta)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	im := testImage()
	im.Files[0xFFFF] = nil
	if err := im.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("FFFF: %v", err)
	}
	im = testImage()
	im.Meta.BAC, im.Meta.PACE = true, nil
	if err := im.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("bac with EF.CardAccess: %v", err)
	}
	delete(im.Files, FIDCardAccess)
	if err := im.Validate(); err != nil {
		t.Errorf("bac card: %v", err)
	}
	if err := im.Save(t.TempDir()); err != nil {
		t.Error(err)
	}
	im.Meta.PIN = "12"
	if err := im.Save(t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Errorf("save invalid: %v", err)
	}
}

func editJSON(dir, old, new string) {
	p := filepath.Join(dir, "card.json")
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), old) {
		panic("test setup: " + old + " not in card.json")
	}
	os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o600)
}

func appendFile(dir, name, s string) {
	f, _ := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(s)
	f.Close()
}

func writeEF(dir, name string, n int) {
	os.WriteFile(filepath.Join(dir, "ef", name), make([]byte, n), 0o600)
}
