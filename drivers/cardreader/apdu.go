package cardreader

import (
	"fmt"

	"kiosk/drivers/cardreader/internal/apdu"
)

// ValidateCommand checks that capdu is one of the ISO/IEC 7816-4:2005 §5.1
// command encodings (cases 1, 2S, 3S, 4S, 2E, 3E, 4E) with consistent Lc/Le
// fields and a valid INS (§5.1.2: '6X' and '9X' are invalid). Transmit
// implementations call it so that malformed commands never reach the wire,
// where readers react unpredictably (some hang, some garble the T=1 block).
// The error wraps ErrMalformedCommand.
func ValidateCommand(capdu []byte) error {
	if _, err := apdu.Parse(capdu); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedCommand, err)
	}
	return nil
}
