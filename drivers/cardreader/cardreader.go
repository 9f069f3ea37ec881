// Package cardreader defines the smart-card reader driver interface of the
// kiosk: reader and card presence events, exclusive card sessions and APDU
// exchange. It has no PC/SC dependency; the backends live in subpackages:
// pcsc (real readers through pcsc-lite), sim (in-process simulation) and
// vpcd (the card side of the vsmartcard virtual reader, for tests and demos).
package cardreader

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// CardHandler is the card side: software that answers APDUs (used by the
// in-process simulator and by the vpcd bridge).
type CardHandler interface {
	// ATR returns the answer-to-reset (ISO/IEC 7816-3 §8).
	ATR() []byte
	// Reset is a power cycle or warm reset: volatile card state is lost.
	Reset()
	// Process answers one C-APDU with one R-APDU (data || SW1 SW2).
	// It must never panic on bad input.
	Process(capdu []byte) []byte
}

// EventKind says what changed.
type EventKind int

// Event kinds, see EventKind.String for their wire names.
const (
	ReaderAdded EventKind = iota + 1
	ReaderRemoved
	CardInserted
	CardRemoved
	ServiceDown
	ServiceUp
)

// String returns the dotted event name used on the daemon's event bus.
func (k EventKind) String() string {
	switch k {
	case ReaderAdded:
		return "reader.added"
	case ReaderRemoved:
		return "reader.removed"
	case CardInserted:
		return "card.inserted"
	case CardRemoved:
		return "card.removed"
	case ServiceDown:
		return "service.down"
	case ServiceUp:
		return "service.up"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one change seen by Driver.Run.
type Event struct {
	Kind   EventKind
	Reader string // empty for ServiceDown/ServiceUp
	ATR    []byte // CardInserted only
	Time   time.Time
	Err    string // ServiceDown: why the service was lost
}

// Card is an exclusive session with one card.
type Card interface {
	ATR() []byte
	Reader() string
	// Transmit sends one C-APDU (short or extended length, ISO/IEC 7816-4 §5.1)
	// and returns the R-APDU incl. SW. A response shorter than 2 bytes is
	// ErrShortResponse. ctx deadline/timeout → ErrTimeout (wrapped); after a
	// timeout the session is dead (its state on the card is unknown).
	Transmit(ctx context.Context, capdu []byte) ([]byte, error)
	// Close ends the session, leaving the card powered (SCARD_LEAVE_CARD)
	// unless the backend was configured to reset it. Close is idempotent.
	Close() error
}

// Driver watches readers and opens card sessions.
type Driver interface {
	// Run watches readers and cards until ctx ends, calling emit for every
	// change (emit must not block long). It survives the PC/SC service going
	// away (ServiceDown, retries with capped backoff, ServiceUp) and reader
	// hot-plug. It returns ctx.Err() when ctx ends.
	Run(ctx context.Context, emit func(Event)) error
	// Connect opens an exclusive session to the card in the named reader
	// ("" = the first reader holding a card).
	Connect(ctx context.Context, reader string) (Card, error)
	// Status is a snapshot of what Run last saw.
	Status() Status
}

// Status is a health snapshot for the daemon's status page.
type Status struct {
	State   string        `json:"state"` // "ok", "degraded" (service up, no reader), "down" (no service / not running)
	Detail  string        `json:"detail,omitempty"`
	Readers []ReaderState `json:"readers"`
	Service bool          `json:"service"`
}

// Status.State values.
const (
	StateOK       = "ok"
	StateDegraded = "degraded"
	StateDown     = "down"
)

// ReaderState is one reader in a Status.
type ReaderState struct {
	Name        string   `json:"name"`
	CardPresent bool     `json:"card_present"`
	ATR         HexBytes `json:"atr,omitempty"` // nil unless CardPresent
}

// HexBytes marshals as upper-case hex (ATRs are read that way).
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) {
	return []byte(strings.ToUpper(hex.EncodeToString(h))), nil
}

// Sentinel errors callers branch on (errors.Is).
var (
	ErrNoReader           = errors.New("cardreader: no such reader")
	ErrNoCard             = errors.New("cardreader: no card present")
	ErrCardRemoved        = errors.New("cardreader: card removed")
	ErrTimeout            = errors.New("cardreader: timeout")
	ErrShortResponse      = errors.New("cardreader: response shorter than SW1 SW2")
	ErrServiceUnavailable = errors.New("cardreader: PC/SC service unavailable")
	ErrClosed             = errors.New("cardreader: session closed")
	// ErrReaderBusy: another session (ours or another process's) holds the card.
	ErrReaderBusy = errors.New("cardreader: card in use by another session")
	// ErrMalformedCommand: a C-APDU that is not a valid ISO/IEC 7816-4 §5.1 encoding.
	ErrMalformedCommand = errors.New("cardreader: malformed command APDU")
)
