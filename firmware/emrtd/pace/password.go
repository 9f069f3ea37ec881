package pace

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"

	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/smcrypto"
)

// PasswordType is the PACE password reference of MSE:Set AT DO'83'
// (9303-11 §4.4.4.1, §9.2.1).
type PasswordType byte

// Password references.
const (
	MRZ PasswordType = 1
	CAN PasswordType = 2
	PIN PasswordType = 3
	PUK PasswordType = 4
)

func (t PasswordType) String() string {
	switch t {
	case MRZ:
		return "MRZ"
	case CAN:
		return "CAN"
	case PIN:
		return "PIN"
	case PUK:
		return "PUK"
	}
	return fmt.Sprintf("PasswordType(%d)", byte(t))
}

// Password is a PACE password. Secret holds the MRZ information for MRZ
// passwords (document number, birth, expiry, each with check digit) and
// the digits for CAN/PIN/PUK.
type Password struct {
	Type   PasswordType
	Secret string `json:"-"`
}

// String and LogValue show the type only: a PIN or CAN must never reach a
// log line, whatever the handler or format verb.
func (p Password) String() string { return p.Type.String() + ":***" }

// LogValue implements slog.LogValuer.
func (p Password) LogValue() slog.Value { return slog.StringValue(p.String()) }

// GoString keeps %#v from printing the secret too.
func (p Password) GoString() string { return p.String() }

// MRZPassword builds the MRZ password from the MRZ fields (9303-11
// §4.4.3.1: K = SHA-1(MRZ information)).
func MRZPassword(k bac.Key) (Password, error) {
	info, err := k.MRZInformation()
	if err != nil {
		return Password{}, err
	}
	return Password{Type: MRZ, Secret: info}, nil
}

// CANPassword, PINPassword and PUKPassword wrap numeric passwords.
func CANPassword(can string) Password { return Password{Type: CAN, Secret: can} }

// PINPassword wraps a PIN.
func PINPassword(pin string) Password { return Password{Type: PIN, Secret: pin} }

// PUKPassword wraps a PUK.
func PUKPassword(puk string) Password { return Password{Type: PUK, Secret: puk} }

var errEmptyPassword = errors.New("pace: empty password")

// key returns Kπ = KDF(K, 3) with K = SHA-1(MRZ information) for MRZ and
// the ISO 8859-1 bytes of the password otherwise (9303-11 §4.4.3.1,
// §9.7.3).
func (p Password) key(c smcrypto.Cipher) ([]byte, error) {
	if p.Secret == "" {
		return nil, errEmptyPassword
	}
	var k []byte
	switch p.Type {
	case MRZ:
		sum := sha1.Sum([]byte(p.Secret))
		k = sum[:]
	case CAN, PIN, PUK:
		k = []byte(p.Secret)
	default:
		return nil, fmt.Errorf("pace: unknown password type %d", byte(p.Type))
	}
	defer clear(k) // the password bytes (or their hash) must not linger
	return smcrypto.KDF(c, k, smcrypto.KDFPassword)
}
