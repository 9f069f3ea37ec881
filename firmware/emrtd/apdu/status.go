package apdu

import (
	"errors"
	"fmt"
)

// Status words used by the eMRTD protocols (ISO/IEC 7816-4 §5.1.3,
// 9303-11 §4.3/§4.4/§9.8).
const (
	SWOK                     uint16 = 0x9000
	SWEndOfFile              uint16 = 0x6282 // end of file reached before Ne bytes
	SWVerificationFailed     uint16 = 0x6300 // authentication failed (BAC, PACE)
	SWWrongLength            uint16 = 0x6700
	SWSecurityNotSatisfied   uint16 = 0x6982
	SWAuthMethodBlocked      uint16 = 0x6983 // PIN blocked
	SWReferenceDataUnusable  uint16 = 0x6984
	SWConditionsNotSatisfied uint16 = 0x6985
	SWSMDataObjectsMissing   uint16 = 0x6987
	SWSMDataObjectsIncorrect uint16 = 0x6988
	SWWrongData              uint16 = 0x6A80
	SWFunctionNotSupported   uint16 = 0x6A81
	SWFileNotFound           uint16 = 0x6A82
	SWIncorrectP1P2          uint16 = 0x6A86
	SWReferencedDataNotFound uint16 = 0x6A88
	SWWrongP1P2              uint16 = 0x6B00
	SWINSNotSupported        uint16 = 0x6D00
	SWCLANotSupported        uint16 = 0x6E00
	SWUnknown                uint16 = 0x6F00
	SWPasswordDeactivated    uint16 = 0x6283 // selected file/password deactivated
)

// StatusError is a response whose status word is not 9000.
type StatusError struct {
	SW uint16
}

func (e *StatusError) Error() string {
	if d := describe(e.SW); d != "" {
		return fmt.Sprintf("card status %04X (%s)", e.SW, d)
	}
	return fmt.Sprintf("card status %04X", e.SW)
}

// IsSW reports whether err is (or wraps) a *StatusError with this SW.
func IsSW(err error, sw uint16) bool {
	var se *StatusError
	return errors.As(err, &se) && se.SW == sw
}

// SWOf returns the status word of a wrapped *StatusError.
func SWOf(err error) (uint16, bool) {
	var se *StatusError
	if errors.As(err, &se) {
		return se.SW, true
	}
	return 0, false
}

// RetriesLeft decodes a 63Cx status word (ISO/IEC 7816-4 §5.1.3: counter).
func RetriesLeft(sw uint16) (int, bool) {
	if sw&0xFFF0 == 0x63C0 {
		return int(sw & 0x0F), true
	}
	return 0, false
}

func describe(sw uint16) string {
	if n, ok := RetriesLeft(sw); ok {
		return fmt.Sprintf("verification failed, %d retries left", n)
	}
	switch sw >> 8 {
	case 0x61:
		return "more data available"
	case 0x6C:
		return "wrong Le"
	}
	switch sw {
	case SWEndOfFile:
		return "end of file"
	case SWPasswordDeactivated:
		return "deactivated"
	case SWVerificationFailed:
		return "authentication failed"
	case SWWrongLength:
		return "wrong length"
	case SWSecurityNotSatisfied:
		return "security status not satisfied"
	case SWAuthMethodBlocked:
		return "authentication method blocked"
	case SWReferenceDataUnusable:
		return "reference data not usable"
	case SWConditionsNotSatisfied:
		return "conditions of use not satisfied"
	case SWSMDataObjectsMissing:
		return "expected secure messaging data objects missing"
	case SWSMDataObjectsIncorrect:
		return "incorrect secure messaging data objects"
	case SWWrongData:
		return "incorrect data"
	case SWFunctionNotSupported:
		return "function not supported"
	case SWFileNotFound:
		return "file not found"
	case SWIncorrectP1P2:
		return "incorrect P1-P2"
	case SWReferencedDataNotFound:
		return "referenced data not found"
	case SWWrongP1P2:
		return "wrong parameters P1-P2"
	case SWINSNotSupported:
		return "instruction not supported"
	case SWCLANotSupported:
		return "class not supported"
	case SWUnknown:
		return "no precise diagnosis"
	}
	return ""
}
