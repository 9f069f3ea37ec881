// Package simkiosk lays out the files of one simulated kiosk for runs that
// drive the real kioskd binary (chaos, soak): a device key and
// certificate, a virtual eID holding a test photo (CAN 123456, PIN 2468)
// with its trust directory, and free loopback addresses for kioskd's
// listeners. Each run writes its own kioskd configuration from them.
package simkiosk

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"kiosk/provisioning/devkey"
	"kiosk/provisioning/issuer"
)

// Photo is the test media file the virtual eID carries; the simulated
// camera plays the same person (franck.mp4).
const Photo = "franck_01829.jpg"

// Kiosk is the files and addresses of one simulated kiosk under Dir.
type Kiosk struct {
	Dir                        string
	Conf                       string // where the run writes kioskd.toml
	TokenFile                  string // [ecr] token_file
	DeviceKey, DeviceCert      string
	CardDir, TrustDir          string // [eid] sim_card, trust_dir
	DevicesDir                 string // the device certificates, as a hub's keyring
	HTTPAddr, ECRAddr, EmbAddr string
}

// Prepare creates the device key and certificate for device, issues the
// virtual eID with document number doc and the test photo from media, and
// picks free addresses.
func Prepare(dir, device, doc, media string) (*Kiosk, error) {
	k := &Kiosk{Dir: dir, Conf: filepath.Join(dir, "kioskd.toml"), TokenFile: filepath.Join(dir, "ecr-token"),
		CardDir: filepath.Join(dir, "card"), TrustDir: filepath.Join(dir, "card", "trust"), DevicesDir: filepath.Join(dir, "devices")}
	dk, err := devkey.Create(filepath.Join(dir, "device"), k.DevicesDir, device)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	k.DeviceKey, k.DeviceCert = dk.Key, dk.Cert
	photo, err := os.ReadFile(filepath.Join(media, Photo))
	if err != nil {
		return nil, err
	}
	img, trust, err := issuer.Issue(issuer.Options{
		DocNumber: doc, Surname: "MUSTERMANN", Given: "ERIKA", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468", Photo: photo,
		ChipAuth: &issuer.CAParams{}, ActiveAuth: issuer.AAECDSAP256,
	})
	if err != nil {
		return nil, fmt.Errorf("issue the card: %w", err)
	}
	if err := img.Save(k.CardDir); err != nil {
		return nil, err
	}
	if err := trust.WriteDir(k.TrustDir); err != nil {
		return nil, err
	}
	for _, a := range []*string{&k.HTTPAddr, &k.ECRAddr, &k.EmbAddr} {
		if *a, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// FreeAddr is a loopback address with a port free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
