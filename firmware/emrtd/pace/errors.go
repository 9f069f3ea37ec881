package pace

import (
	"errors"
	"fmt"

	"kiosk/firmware/emrtd/apdu"
)

// Terminal errors callers branch on.
var (
	// ErrWrongPassword: the chip rejected the password (see
	// *WrongPasswordError for the retry counter).
	ErrWrongPassword = errors.New("pace: wrong password")
	// ErrPINBlocked: the PIN's retry counter is exhausted (6983, or 63C0
	// after the last wrong attempt); the PUK unblocks it.
	ErrPINBlocked = errors.New("pace: PIN blocked")
	// ErrPasswordDeactivated: the password is deactivated (6283).
	ErrPasswordDeactivated = errors.New("pace: password deactivated")
	// ErrAuthenticationFailed: the protocol failed for another reason: a
	// malformed or invalid chip answer, a chip token that does not verify,
	// an unexpected status word.
	ErrAuthenticationFailed = errors.New("pace: authentication failed")
)

// WrongPasswordError is ErrWrongPassword with the retry counter when the
// chip reported one (63Cx); RetriesLeft is -1 when unknown (6300, CAN/MRZ).
type WrongPasswordError struct {
	Password    PasswordType
	RetriesLeft int
}

func (e *WrongPasswordError) Error() string {
	if e.RetriesLeft >= 0 {
		return fmt.Sprintf("pace: wrong %s, %d retries left", e.Password, e.RetriesLeft)
	}
	return fmt.Sprintf("pace: wrong %s", e.Password)
}

// Is makes errors.Is(err, ErrWrongPassword) true.
func (e *WrongPasswordError) Is(target error) bool { return target == ErrWrongPassword }

// statusError maps a chip status word during PACE to a typed error
// (9303-11 §4.4.4; retry counters per ISO/IEC 7816-4 §5.1.3).
func statusError(step string, pw PasswordType, sw uint16) error {
	se := &apdu.StatusError{SW: sw}
	if n, ok := apdu.RetriesLeft(sw); ok {
		if n == 0 && pw == PIN {
			return fmt.Errorf("%s: %w: %w", step, ErrPINBlocked, se)
		}
		return fmt.Errorf("%s: %w: %w", step, &WrongPasswordError{Password: pw, RetriesLeft: n}, se)
	}
	switch sw {
	case apdu.SWVerificationFailed:
		return fmt.Errorf("%s: %w: %w", step, &WrongPasswordError{Password: pw, RetriesLeft: -1}, se)
	case apdu.SWAuthMethodBlocked:
		return fmt.Errorf("%s: %w: %w", step, ErrPINBlocked, se)
	case apdu.SWPasswordDeactivated:
		return fmt.Errorf("%s: %w: %w", step, ErrPasswordDeactivated, se)
	case apdu.SWWrongData, apdu.SWReferencedDataNotFound, apdu.SWIncorrectP1P2, apdu.SWFunctionNotSupported:
		return fmt.Errorf("%s: %w: %w", step, ErrUnsupportedParameters, se)
	}
	return fmt.Errorf("%s: %w: %w", step, ErrAuthenticationFailed, se)
}
