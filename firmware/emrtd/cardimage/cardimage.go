// Package cardimage reads and writes the on-disk image of a virtual eID
// card (the format `kioskctl eid issue` writes and the virtual card serves):
//
//	DIR/card.json        Meta: passwords, MRZ key, access protocol
//	DIR/ef/<FID>.bin     file contents, FID as 4 upper-case hex digits
//	DIR/trust/           CSCA certificates (PEM) trusting this card
//	DIR/keys/ca.pem      the chip's Chip Authentication private key (optional)
//	DIR/keys/aa.pem      the chip's Active Authentication private key (optional)
//	DIR/card_security.bin EF.CardSecurity (011D in the master file; optional,
//	                     kept apart because ef/011D.bin is EF.SOD)
//
// It is a TEST card: the CAN, the PIN and the chip's private keys are
// stored in clear.
package cardimage

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits that keep a hostile or broken image from exhausting memory.
const (
	MaxMetaSize  = 64 << 10
	MaxFileSize  = 1 << 20 // one EF; a DG2 with a portrait is ~20-100 KiB
	MaxFiles     = 64
	MaxTotalSize = 16 << 20
	MaxKeySize   = 16 << 10 // one PEM private key (RSA-4096 is ~3.3 KiB)
)

// Directory and file names of the image.
const (
	MetaFile     = "card.json"
	EFDirName    = "ef"
	TrustDirName = "trust"
	KeysDirName  = "keys"
	CAKeyFile    = "ca.pem"
	AAKeyFile    = "aa.pem"
	// CardSecurityFile is EF.CardSecurity (9303-10 §3.11.3), the master
	// file's 011D: the flat ef/ directory cannot hold it beside EF.SOD.
	CardSecurityFile = "card_security.bin"
)

// FIDCardAccess is EF.CardAccess (9303-10 §3.11.2), present iff PACE.
const FIDCardAccess uint16 = 0x011C

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid card image")

// MRZKey is the part of the MRZ that keys BAC and PACE-MRZ.
type MRZKey struct {
	DocumentNumber string `json:"document_number"`
	Birth          string `json:"birth"`  // YYMMDD
	Expiry         string `json:"expiry"` // YYMMDD
}

// PACE names the PACEInfo the card announces in EF.CardAccess.
type PACE struct {
	OID         string `json:"oid"`          // e.g. 0.4.0.127.0.7.2.2.4.2.2
	ParameterID int    `json:"parameter_id"` // 9303-11 §9.5.1, e.g. 13 brainpoolP256r1
}

// Meta is card.json.
type Meta struct {
	Version        int    `json:"version"` // 1
	Profile        string `json:"profile"` // "good" or a defect name
	CAN            string `json:"can"`
	PIN            string `json:"pin"`
	PINRetries     int    `json:"pin_retries"`
	MRZ            MRZKey `json:"mrz"`
	BAC            bool   `json:"bac"` // true: no EF.CardAccess, BAC only
	PACE           *PACE  `json:"pace,omitempty"`
	ExtendedLength bool   `json:"extended_length"`
	ATR            string `json:"atr,omitempty"` // hex
	// AAHash is the hash of the chip's Active Authentication signatures
	// with an RSA key (the ISO/IEC 9796-2 trailer): "SHA-1" (default,
	// trailer BC), "SHA-224", "SHA-256", "SHA-384" or "SHA-512". ECDSA
	// keys sign with the hash of DG14's ActiveAuthenticationInfo.
	AAHash string `json:"aa_hash,omitempty"`
}

// AAHashes are the accepted Meta.AAHash values.
func AAHashes() []string { return []string{"SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"} }

// Image is a card image in memory.
type Image struct {
	Meta  Meta
	Files map[uint16][]byte
	// CAKey and AAKey are the chip's private keys (one PEM block each,
	// package pubkey's format) or nil. A genuine chip holds the keys whose
	// public halves DG14 and DG15 carry; a cloned one does not.
	CAKey, AAKey []byte
	// CardSecurity is EF.CardSecurity or nil (a PACE-CAM chip has it).
	CardSecurity []byte
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func mrzChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c == '<') {
			return false
		}
	}
	return s != ""
}

// validOID accepts dotted decimal object identifiers.
func validOID(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if !allDigits(p) || len(p) > 9 {
			return false
		}
	}
	return true
}

// Validate checks the metadata on its own.
func (m *Meta) Validate() error {
	if m.Version != 1 {
		return invalid("version %d (want 1)", m.Version)
	}
	if len(m.CAN) != 6 || !allDigits(m.CAN) {
		return invalid("can must be 6 digits")
	}
	if len(m.PIN) < 4 || len(m.PIN) > 10 || !allDigits(m.PIN) {
		return invalid("pin must be 4..10 digits")
	}
	if m.PINRetries < 1 || m.PINRetries > 15 {
		return invalid("pin_retries %d (want 1..15)", m.PINRetries)
	}
	if !mrzChars(m.MRZ.DocumentNumber) || len(m.MRZ.DocumentNumber) > 22 {
		return invalid("mrz.document_number %q", m.MRZ.DocumentNumber)
	}
	if len(m.MRZ.Birth) != 6 || !allDigits(m.MRZ.Birth) || len(m.MRZ.Expiry) != 6 || !allDigits(m.MRZ.Expiry) {
		return invalid("mrz.birth/expiry must be YYMMDD")
	}
	switch {
	case m.BAC && m.PACE != nil:
		return invalid("bac is true but pace is set")
	case !m.BAC && m.PACE == nil:
		return invalid("pace is required unless bac is true")
	case m.PACE != nil && (!validOID(m.PACE.OID) || m.PACE.ParameterID < 0 || m.PACE.ParameterID > 31):
		return invalid("pace oid %q / parameter_id %d", m.PACE.OID, m.PACE.ParameterID)
	}
	if m.AAHash != "" && !slices.Contains(AAHashes(), m.AAHash) {
		return invalid("aa_hash %q (want one of %v)", m.AAHash, AAHashes())
	}
	if m.ATR != "" {
		atr, err := hex.DecodeString(m.ATR)
		if err != nil || len(atr) < 2 || len(atr) > 33 {
			return invalid("atr must be 2..33 bytes of hex")
		}
	}
	return nil
}

// ValidFID reports whether fid can name an EF in an image: not the MF
// (3F00), not reserved (3FFF, FFFF).
func ValidFID(fid uint16) bool {
	return fid != 0x3F00 && fid != 0x3FFF && fid != 0xFFFF
}

// Validate checks the metadata and its consistency with the files.
func (im *Image) Validate() error {
	if err := im.Meta.Validate(); err != nil {
		return err
	}
	if len(im.Files) > MaxFiles {
		return invalid("%d files (max %d)", len(im.Files), MaxFiles)
	}
	total := 0
	for fid, b := range im.Files {
		if !ValidFID(fid) {
			return invalid("file id %04X is reserved", fid)
		}
		if len(b) > MaxFileSize {
			return invalid("file %04X of %d bytes (max %d)", fid, len(b), MaxFileSize)
		}
		total += len(b)
	}
	if len(im.CardSecurity) > MaxFileSize {
		return invalid("EF.CardSecurity of %d bytes (max %d)", len(im.CardSecurity), MaxFileSize)
	}
	if total += len(im.CardSecurity); total > MaxTotalSize {
		return invalid("files total %d bytes (max %d)", total, MaxTotalSize)
	}
	for name, k := range map[string][]byte{CAKeyFile: im.CAKey, AAKeyFile: im.AAKey} {
		if k == nil {
			continue
		}
		if len(k) > MaxKeySize {
			return invalid("key %s of %d bytes (max %d)", name, len(k), MaxKeySize)
		}
		if blk, _ := pem.Decode(k); blk == nil || !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			return invalid("key %s is not a PEM private key", name)
		}
	}
	_, hasCA := im.Files[FIDCardAccess]
	if im.Meta.BAC && hasCA {
		return invalid("bac card must not have EF.CardAccess (011C)")
	}
	if !im.Meta.BAC && !hasCA {
		return invalid("pace card needs EF.CardAccess (011C)")
	}
	return nil
}

// Load reads and validates an image directory. card.json is decoded
// strictly: unknown fields and trailing data are errors.
func Load(dir string) (*Image, error) {
	raw, err := readBounded(filepath.Join(dir, MetaFile), MaxMetaSize)
	if err != nil {
		return nil, fmt.Errorf("load card image: %w", err)
	}
	im := &Image{Files: map[uint16][]byte{}}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&im.Meta); err != nil {
		return nil, fmt.Errorf("load card image: %s: %w", MetaFile, errors.Join(ErrInvalid, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("load card image: %s: %w", MetaFile, invalid("data after the JSON object"))
	}
	efDir := filepath.Join(dir, EFDirName)
	ents, err := os.ReadDir(efDir)
	if err != nil {
		return nil, fmt.Errorf("load card image: %w", err)
	}
	total := 0
	for _, e := range ents {
		name := e.Name()
		fid, ok := parseEFName(name)
		if !ok || !e.Type().IsRegular() {
			return nil, fmt.Errorf("load card image: %w", invalid("unexpected entry %s/%s (want <4 hex digits>.bin files)", EFDirName, name))
		}
		if len(im.Files) >= MaxFiles {
			return nil, fmt.Errorf("load card image: %w", invalid("more than %d files", MaxFiles))
		}
		b, err := readBounded(filepath.Join(efDir, name), MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("load card image: %w", err)
		}
		if total += len(b); total > MaxTotalSize {
			return nil, fmt.Errorf("load card image: %w", invalid("files exceed %d bytes", MaxTotalSize))
		}
		if _, dup := im.Files[fid]; dup {
			return nil, fmt.Errorf("load card image: %w", invalid("file %04X appears twice", fid))
		}
		im.Files[fid] = b
	}
	if err := loadKeys(dir, im); err != nil {
		return nil, fmt.Errorf("load card image: %w", err)
	}
	switch b, err := readBounded(filepath.Join(dir, CardSecurityFile), MaxFileSize); {
	case err == nil:
		im.CardSecurity = b
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("load card image: %w", err)
	}
	if err := im.Validate(); err != nil {
		return nil, fmt.Errorf("load card image %s: %w", dir, err)
	}
	return im, nil
}

// loadKeys reads DIR/keys/ when it exists: only ca.pem and aa.pem, regular
// files, each bounded.
func loadKeys(dir string, im *Image) error {
	kdir := filepath.Join(dir, KeysDirName)
	ents, err := os.ReadDir(kdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		var dst *[]byte
		switch e.Name() {
		case CAKeyFile:
			dst = &im.CAKey
		case AAKeyFile:
			dst = &im.AAKey
		default:
			return invalid("unexpected entry %s/%s (want %s, %s)", KeysDirName, e.Name(), CAKeyFile, AAKeyFile)
		}
		if !e.Type().IsRegular() {
			return invalid("%s/%s is not a regular file", KeysDirName, e.Name())
		}
		b, err := readBounded(filepath.Join(kdir, e.Name()), MaxKeySize)
		if err != nil {
			return err
		}
		*dst = b
	}
	return nil
}

// parseEFName accepts exactly four hex digits (either case) + ".bin".
func parseEFName(name string) (uint16, bool) {
	base, ok := strings.CutSuffix(name, ".bin")
	if !ok || len(base) != 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(base, 16, 16)
	if err != nil || !ValidFID(uint16(v)) {
		return 0, false
	}
	return uint16(v), true
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, invalid("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// Save validates the image and writes card.json and ef/ under dir
// (created if needed). Stale ef/*.bin files not in the image are removed.
// Files are private (0600): card.json holds the PIN.
func (im *Image) Save(dir string) error {
	if err := im.Validate(); err != nil {
		return fmt.Errorf("save card image: %w", err)
	}
	efDir := filepath.Join(dir, EFDirName)
	if err := os.MkdirAll(efDir, 0o700); err != nil {
		return fmt.Errorf("save card image: %w", err)
	}
	meta, err := json.MarshalIndent(&im.Meta, "", "  ")
	if err != nil {
		return fmt.Errorf("save card image: %w", err)
	}
	if err := writeFile(filepath.Join(dir, MetaFile), append(meta, '\n')); err != nil {
		return err
	}
	fids := make([]int, 0, len(im.Files))
	for fid := range im.Files {
		fids = append(fids, int(fid))
	}
	sort.Ints(fids)
	keep := map[string]bool{}
	for _, fid := range fids {
		name := fmt.Sprintf("%04X.bin", fid)
		keep[name] = true
		if err := writeFile(filepath.Join(efDir, name), im.Files[uint16(fid)]); err != nil {
			return err
		}
	}
	if err := saveKeys(dir, im); err != nil {
		return err
	}
	csPath := filepath.Join(dir, CardSecurityFile)
	if im.CardSecurity != nil {
		if err := writeFile(csPath, im.CardSecurity); err != nil {
			return err
		}
	} else if err := os.Remove(csPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("save card image: %w", err)
	}
	ents, err := os.ReadDir(efDir)
	if err != nil {
		return fmt.Errorf("save card image: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".bin") && !keep[e.Name()] {
			if err := os.Remove(filepath.Join(efDir, e.Name())); err != nil {
				return fmt.Errorf("save card image: remove stale file: %w", err)
			}
		}
	}
	return nil
}

// saveKeys writes DIR/keys/ (private, 0700/0600) and removes key files
// the image no longer has.
func saveKeys(dir string, im *Image) error {
	kdir := filepath.Join(dir, KeysDirName)
	if im.CAKey == nil && im.AAKey == nil {
		if err := os.RemoveAll(kdir); err != nil {
			return fmt.Errorf("save card image: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(kdir, 0o700); err != nil {
		return fmt.Errorf("save card image: %w", err)
	}
	for name, k := range map[string][]byte{CAKeyFile: im.CAKey, AAKeyFile: im.AAKey} {
		path := filepath.Join(kdir, name)
		if k == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("save card image: %w", err)
			}
			continue
		}
		if err := writeFile(path, k); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes via a temporary file and rename so a reader never sees
// half a file.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save card image: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save card image: %w", err)
	}
	return nil
}
