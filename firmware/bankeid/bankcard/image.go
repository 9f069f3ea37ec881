// Package bankcard is a virtual bank eID card in software: a
// cardreader.CardHandler that answers the KIOSK-EID-1 profile (package
// bankeid) from an on-disk image, in-process through the simulated reader
// and behind pcscd through vpcd (`kioskctl eid emulate`). Profiles make it
// misbehave the ways the terminal must refuse (profiles.go).
//
// Image directory (written by `kioskctl eid issue --kind bankeid`):
//
//	DIR/bankeid.json   Meta: profile, PIN, retry counter
//	DIR/cert.der       the eID certificate (EF C001)
//	DIR/key.pem        the card's signing key (PKCS #8; SM2 or P-256)
//	DIR/trust/         the eID authority's root (root.pem) and CRL (root.crl)
//	DIR/authority/     the authority's root key (to issue and revoke more)
//
// It is a TEST card: the PIN and the private key are stored in clear.
package bankcard

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/emmansun/gmsm/smx509"
)

// File names of the image.
const (
	MetaFile     = "bankeid.json"
	CertFile     = "cert.der"
	KeyFile      = "key.pem"
	TrustDirName = "trust"
	AuthorityDir = "authority"
	maxFile      = 64 << 10
)

// Kind is Meta.Kind: what tells a bank eID image from an ICAO one.
const Kind = "bankeid"

// Meta is bankeid.json.
type Meta struct {
	Kind    string `json:"kind"`
	Profile string `json:"profile"`
	// PIN is what the card accepts; the holder's printed PIN differs
	// only on the wrong-pin profile.
	PIN        string `json:"pin"`
	PINRetries int    `json:"pin_retries"` // the counter's maximum
	// BlockedPIN starts the card with no retries left.
	BlockedPIN bool `json:"blocked_pin,omitempty"`
	// ReplayDigest is what a replay card signs whatever it is asked: the
	// digest of an earlier challenge.
	ReplayDigest []byte `json:"replay_digest,omitempty"`
}

// Image is a bank eID card.
type Image struct {
	Meta Meta
	Cert []byte // DER
	Key  any    // *sm2.PrivateKey or *ecdsa.PrivateKey
}

// ErrImage is wrapped by every load error.
var ErrImage = errors.New("bankcard: invalid image")

// IsImage reports whether dir holds a bank eID image.
func IsImage(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, MetaFile))
	return err == nil
}

// Save writes the image to dir (created).
func (im *Image) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	meta, err := json.MarshalIndent(im.Meta, "", "  ")
	if err != nil {
		return err
	}
	key, err := smx509.MarshalPKCS8PrivateKey(im.Key)
	if err != nil {
		return fmt.Errorf("bankcard: key: %w", err)
	}
	for name, b := range map[string][]byte{
		MetaFile: meta, CertFile: im.Cert,
		KeyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Load reads an image saved by Save.
func Load(dir string) (*Image, error) {
	read := func(name string) ([]byte, error) {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrImage, err)
		}
		if fi.Size() > maxFile {
			return nil, fmt.Errorf("%w: %s larger than %d bytes", ErrImage, name, maxFile)
		}
		return os.ReadFile(p)
	}
	var im Image
	b, err := read(MetaFile)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &im.Meta); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrImage, MetaFile, err)
	}
	if im.Meta.Kind != Kind || im.Meta.PINRetries < 1 || im.Meta.PINRetries > 15 {
		return nil, fmt.Errorf("%w: %s: kind %q, pin_retries %d (1-15)", ErrImage, MetaFile, im.Meta.Kind, im.Meta.PINRetries)
	}
	if im.Cert, err = read(CertFile); err != nil {
		return nil, err
	}
	kb, err := read(KeyFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s is not PEM", ErrImage, KeyFile)
	}
	if im.Key, err = smx509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrImage, KeyFile, err)
	}
	return &im, nil
}
