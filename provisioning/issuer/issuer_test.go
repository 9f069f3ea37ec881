package issuer

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/internal/testmedia"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// smallJPEG is a synthetic portrait-sized JPEG for tests that do not need a
// real face.
func smallJPEG(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 48, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 48; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 5), uint8(y * 4), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func baseOptions(photo []byte) Options {
	return Options{DocNumber: "L898902C3", Surname: "Eriksson", Given: "Anna Maria", Nationality: "UTO",
		Sex: "F", Birth: "740812", Expiry: "340415", CAN: "123456", PIN: "123456", Photo: photo, Now: now}
}

func dgs(im *cardimage.Image) map[int][]byte {
	return map[int][]byte{1: im.Files[0x0101], 2: im.Files[0x0102]}
}

func TestIssueVerifies(t *testing.T) {
	photo, err := os.ReadFile(testmedia.Path(t, "franck_01829.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		mod      func(*Options)
		verifier string
		sigAlg   string
	}{
		{"ecdsa td3 pace", func(o *Options) {}, "smallstep/pkcs7", "ecdsa-with-SHA-256"},
		{"rsa td1 pace nist", func(o *Options) {
			o.SignatureAlg, o.DocType, o.DocNumber = SigRSA2048, TD1, "D23145890734"
			o.PACE = &PACEParams{OID: OIDPACEECDHGMAES128, ParameterID: ParamNISTP256}
		}, "smallstep/pkcs7", "RSA PKCS#1 v1.5/SHA-256"},
		{"rsa-pss td3 bac", func(o *Options) { o.SignatureAlg, o.BACOnly = SigRSAPSS, true }, "builtin", "RSASSA-PSS/SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseOptions(photo)
			tt.mod(&o)
			im, trust, err := Issue(o)
			if err != nil {
				t.Fatal(err)
			}
			// Through the disk format, as kioskctl and the virtual card use it.
			dir := t.TempDir()
			if err := im.Save(dir); err != nil {
				t.Fatal(err)
			}
			if err := trust.WriteDir(filepath.Join(dir, cardimage.TrustDirName)); err != nil {
				t.Fatal(err)
			}
			loaded, err := cardimage.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(loaded, im) {
				t.Fatal("card image changed through Save/Load")
			}
			store, err := pa.LoadTrustStore(filepath.Join(dir, cardimage.TrustDirName))
			if err != nil {
				t.Fatal(err)
			}
			res := pa.Verify(loaded.Files[lds.FIDSOD], dgs(loaded), store, now)
			if !res.Passed {
				t.Fatalf("PA failed: %v", res.Err())
			}
			if res.Verifier != tt.verifier || res.SignatureAlgorithm != tt.sigAlg {
				t.Errorf("verifier %q alg %q, want %q %q", res.Verifier, res.SignatureAlgorithm, tt.verifier, tt.sigAlg)
			}
			m, err := lds.ParseDG1(loaded.Files[0x0101])
			if err != nil || !m.Valid() {
				t.Fatalf("DG1 %v, failed checks %v", err, m.Failed())
			}
			if m.DocumentNumber != o.DocNumber || m.Surname != "ERIKSSON" || m.GivenNames != "ANNA MARIA" || m.Birth != o.Birth {
				t.Errorf("DG1 %+v", m)
			}
			info, _ := m.Information()
			want, _ := lds.MRZInformation(loaded.Meta.MRZ.DocumentNumber, loaded.Meta.MRZ.Birth, loaded.Meta.MRZ.Expiry)
			if info != want {
				t.Errorf("card.json MRZ key gives %q, DG1 %q", want, info)
			}
			d2, err := lds.ParseDG2(loaded.Files[0x0102])
			if err != nil {
				t.Fatal(err)
			}
			f, _ := d2.Primary()
			if !bytes.Equal(f.Image, photo) || f.Format != lds.ImageJPEG || f.Width != 720 || f.Height != 576 {
				t.Errorf("DG2 face %v %dx%d, %d bytes", f.Format, f.Width, f.Height, len(f.Image))
			}
			ca, hasCA := loaded.Files[lds.FIDCardAccess]
			if hasCA == o.BACOnly {
				t.Errorf("EF.CardAccess present=%v with BACOnly=%v", hasCA, o.BACOnly)
			}
			if hasCA {
				p := o.PACE
				if p == nil {
					p = &PACEParams{OID: OIDPACEECDHGMAES128, ParameterID: ParamBrainpoolP256}
				}
				want, _ := cardAccess(p)
				if !bytes.Equal(ca, want) || loaded.Meta.PACE.OID != p.OID || loaded.Meta.PACE.ParameterID != p.ParameterID {
					t.Errorf("EF.CardAccess % X / meta %+v", ca, loaded.Meta.PACE)
				}
			}
		})
	}
}

// TestCardAccessEncoding checks the PACEInfo DER byte for byte: SET {
// SEQUENCE { OID 0.4.0.127.0.7.2.2.4.2.2, INTEGER 2, INTEGER 13 } }.
func TestCardAccessEncoding(t *testing.T) {
	got, err := cardAccess(&PACEParams{OID: OIDPACEECDHGMAES128, ParameterID: 13})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x31, 0x14, 0x30, 0x12, 0x06, 0x0A, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x02, 0x02, 0x04, 0x02, 0x02,
		0x02, 0x01, 0x02, 0x02, 0x01, 0x0D}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % X\nwant % X", got, want)
	}
}

func TestDefects(t *testing.T) {
	photo := smallJPEG(t)
	tests := []struct {
		name  string
		mod   func(*Options)
		codes []string
	}{
		{"good", func(o *Options) {}, nil},
		{"DG1 altered", func(o *Options) { o.AlterDGAfterSigning = 1 }, []string{"dg_hash_mismatch:DG1"}},
		{"DG2 altered", func(o *Options) { o.AlterDGAfterSigning = 2 }, []string{"dg_hash_mismatch:DG2"}},
		{"expired DS", func(o *Options) { o.ExpiredDS = true }, []string{"ds_expired"}},
		{"unknown CSCA", func(o *Options) { o.UnknownCSCA = true }, []string{"csca_unknown"}},
		{"unknown CSCA rsa", func(o *Options) { o.UnknownCSCA, o.SignatureAlg = true, SigRSA2048 }, []string{"csca_unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseOptions(photo)
			tt.mod(&o)
			im, trust, err := Issue(o)
			if err != nil {
				t.Fatal(err)
			}
			res := pa.Verify(im.Files[lds.FIDSOD], dgs(im), trust.Store(), now)
			if got := res.Codes(); !reflect.DeepEqual(got, tt.codes) {
				t.Fatalf("codes %v, want %v (%v)", got, tt.codes, res.Err())
			}
			if res.Passed != (tt.codes == nil) {
				t.Fatalf("Passed=%v", res.Passed)
			}
			if tt.codes == nil && im.Meta.Profile != "good" {
				t.Errorf("profile %q", im.Meta.Profile)
			}
			// The altered DG must still parse: only PA can catch it.
			if _, err := lds.ParseDG1(im.Files[0x0101]); err != nil {
				t.Error(err)
			}
			if _, err := lds.ParseDG2(im.Files[0x0102]); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	photo := smallJPEG(t)
	for name, mod := range map[string]func(*Options){
		"no photo":         func(o *Options) { o.Photo = nil },
		"not an image":     func(o *Options) { o.Photo = []byte("GIF89a....") },
		"long TD3 number":  func(o *Options) { o.DocNumber = "L898902C3XX" },
		"bad birth":        func(o *Options) { o.Birth = "7408" },
		"bad name":         func(o *Options) { o.Surname = "Eriksson!" },
		"bad CAN":          func(o *Options) { o.CAN = "12a456" },
		"bad alg":          func(o *Options) { o.SignatureAlg = "DSA" },
		"alter DG3":        func(o *Options) { o.AlterDGAfterSigning = 3 },
		"bac and pace":     func(o *Options) { o.BACOnly, o.PACE = true, &PACEParams{OID: OIDPACEECDHGMAES128} },
		"bad PACE OID":     func(o *Options) { o.PACE = &PACEParams{OID: "0.4.x"} },
		"bad country code": func(o *Options) { o.CountryCodeCerts = "UTO" },
	} {
		o := baseOptions(photo)
		mod(&o)
		if _, _, err := Issue(o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err %v, want ErrOptions", name, err)
		}
	}
}

// TestJPEG2000Photo issues documents whose DG2 holds a JPEG 2000 face, as a
// JP2 file and as a raw codestream, converted from the test photo by ffmpeg.
func TestJPEG2000Photo(t *testing.T) {
	src := testmedia.Path(t, "franck_01829.jpg") // skips under -short
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg not found (%v): install the Debian package ffmpeg (see `make deps`)", err)
	}
	for _, tt := range []struct {
		ext    string
		format lds.ImageFormat
	}{{"jp2", lds.ImageJP2}, {"j2k", lds.ImageJ2K}} {
		t.Run(tt.ext, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "face."+tt.ext)
			cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", src,
				"-c:v", "libopenjpeg", "-format", tt.ext, out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, b)
			}
			photo, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			im, trust, err := Issue(baseOptions(photo))
			if err != nil {
				t.Fatal(err)
			}
			if res := pa.Verify(im.Files[lds.FIDSOD], dgs(im), trust.Store(), now); !res.Passed {
				t.Fatal(res.Err())
			}
			d2, err := lds.ParseDG2(im.Files[0x0102])
			if err != nil {
				t.Fatal(err)
			}
			f, _ := d2.Primary()
			if f.Format != tt.format || f.ImageDataType != 1 || f.Width != 720 || f.Height != 576 || !bytes.Equal(f.Image, photo) {
				t.Fatalf("face %v type %d %dx%d", f.Format, f.ImageDataType, f.Width, f.Height)
			}
		})
	}
}
