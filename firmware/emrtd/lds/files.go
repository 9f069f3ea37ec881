// Package lds implements the Logical Data Structure of eMRTD chips
// (ICAO Doc 9303-10): file identifiers, EF.COM, DG1 (MRZ, with the check
// digits of 9303-3 §4.9), DG2 (ISO/IEC 19794-5 face in a CBEFF template),
// EF.SOD's LDSSecurityObject and EF.CardAccess SecurityInfos.
//
// Every parser treats its input as hostile: structural errors are returned
// (wrapping ErrMalformed), nothing panics, and no allocation is sized by a
// length field that the data does not back.
package lds

import (
	"errors"
	"fmt"

	"kiosk/firmware/emrtd/tlv"
)

// ErrMalformed is wrapped by every structural parse error of this package.
var ErrMalformed = errors.New("malformed LDS data")

// ErrUnsupported is wrapped when data is well formed but uses a variant this
// package does not implement (e.g. a 19794-5:2011 face record).
var ErrUnsupported = errors.New("unsupported LDS data")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// AIDeMRTD is the LDS1 eMRTD application identifier (9303-10 §3.6.1).
const AIDeMRTD = "\xA0\x00\x00\x02\x47\x10\x01"

// File identifiers (9303-10 §3.6 and §3.11, tables 37-40).
const (
	FIDCardAccess   uint16 = 0x011C // in the MF
	FIDCardSecurity uint16 = 0x011D // in the MF (same FID as EF.SOD, other DF)
	FIDATRInfo      uint16 = 0x2F01 // in the MF
	FIDDir          uint16 = 0x2F00 // in the MF
	FIDCOM          uint16 = 0x011E
	FIDSOD          uint16 = 0x011D
)

// Short file identifiers (9303-10 §3.6).
const (
	SFICardAccess   byte = 0x1C
	SFICardSecurity byte = 0x1D
	SFICOM          byte = 0x1E
	SFISOD          byte = 0x1D
)

// Tags of the LDS1 files (9303-10 §4.6, table 34).
const (
	TagCOM tlv.Tag = 0x60
	TagSOD tlv.Tag = 0x77
	TagDG1 tlv.Tag = 0x61
	TagDG2 tlv.Tag = 0x75
	// DG14 (Chip Authentication / PACE-CAM public keys) and DG15 (Active
	// Authentication public key) are parsed by later issues; their ids are
	// here so readers can select them.
	TagDG14 tlv.Tag = 0x6E
	TagDG15 tlv.Tag = 0x6F
)

// File describes one elementary file of the eMRTD application.
type File struct {
	Name string
	FID  uint16
	SFI  byte
	Tag  tlv.Tag
	DG   int // 1..16, 0 for EF.COM and EF.SOD
}

// dgTags lists the data group tags DG1..DG16 (9303-10 table 34).
func dgTags() [16]tlv.Tag {
	return [16]tlv.Tag{0x61, 0x75, 0x63, 0x76, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70}
}

// DGFile returns the file of data group n (1..16): FID 01nn, SFI nn.
func DGFile(n int) (File, bool) {
	if n < 1 || n > 16 {
		return File{}, false
	}
	return File{Name: fmt.Sprintf("DG%d", n), FID: 0x0100 + uint16(n), SFI: byte(n), Tag: dgTags()[n-1], DG: n}, true
}

// COMFile and SODFile describe EF.COM and EF.SOD.
func COMFile() File { return File{Name: "EF.COM", FID: FIDCOM, SFI: SFICOM, Tag: TagCOM} }

// SODFile describes EF.SOD.
func SODFile() File { return File{Name: "EF.SOD", FID: FIDSOD, SFI: SFISOD, Tag: TagSOD} }

// DGForTag returns the data group number whose file tag is t, or 0.
func DGForTag(t tlv.Tag) int {
	for i, dt := range dgTags() {
		if dt == t {
			return i + 1
		}
	}
	return 0
}

// FileForFID returns the LDS1 application file with identifier fid.
func FileForFID(fid uint16) (File, bool) {
	switch fid {
	case FIDCOM:
		return COMFile(), true
	case FIDSOD:
		return SODFile(), true
	}
	if fid > 0x0100 && fid <= 0x0110 {
		return DGFile(int(fid - 0x0100))
	}
	return File{}, false
}
