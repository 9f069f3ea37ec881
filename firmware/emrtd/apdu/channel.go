package apdu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Transport sends one C-APDU and returns the R-APDU including SW1 SW2
// (kiosk/drivers/cardreader.Card satisfies it).
type Transport interface {
	Transmit(ctx context.Context, capdu []byte) ([]byte, error)
}

// Wrapper protects commands and checks responses: secure messaging
// (9303-11 §9.8, see package sm). Wrap runs before encoding; Unwrap runs on
// the complete response after GET RESPONSE chaining.
type Wrapper interface {
	Wrap(cmd Command) (Command, error)
	Unwrap(resp Response) (Response, error)
}

// Default limits and chunk sizes.
const (
	// ShortChunk is the READ BINARY length for short-length channels:
	// 0xDF data bytes stay within a 256-byte response even with secure
	// messaging (DO'87 of 225 bytes + DO'99 + DO'8E = 242 bytes).
	ShortChunk = 0xDF
	// ExtendedChunk is the READ BINARY length for extended-length channels;
	// it leaves room for the secure messaging overhead (padding, DO'87
	// header, DO'99, DO'8E: under 64 bytes) within 65536.
	ExtendedChunk = 0xFF00
	// DefaultMaxChained bounds the GET RESPONSE rounds of one command.
	DefaultMaxChained = 64
	// DefaultMaxResponse bounds the data of one (chained) response.
	DefaultMaxResponse = 64 << 10
	// DefaultMaxFileSize bounds ReadFile.
	DefaultMaxFileSize = 1 << 20
)

// Errors returned by the Channel.
var (
	ErrTooManyChained  = errors.New("apdu: too many 61xx response chunks")
	ErrResponseTooLong = errors.New("apdu: response too long")
	ErrTooMuchData     = errors.New("apdu: card returned more data than requested")
	ErrShortRead       = errors.New("apdu: card returned no data before the end of the file")
	ErrFileTooLarge    = errors.New("apdu: file larger than the limit")
	ErrBadFileHeader   = errors.New("apdu: file does not start with a TLV header")
)

// Options configure a Channel. Zero values pick the defaults.
type Options struct {
	// Extended allows extended-length APDUs (the card announced support,
	// e.g. in EF.ATR/INFO or its ATR historical bytes).
	Extended bool
	// ChunkSize is the READ BINARY length ReadFile uses; 0 means
	// ShortChunk or ExtendedChunk depending on Extended.
	ChunkSize int
	// MaxChained bounds GET RESPONSE rounds (default DefaultMaxChained).
	MaxChained int
	// MaxResponse bounds the data bytes of one response (default
	// DefaultMaxResponse).
	MaxResponse int
	// MaxFileSize bounds ReadFile (default DefaultMaxFileSize).
	MaxFileSize int
	// Logger gets one debug line per APDU (header, lengths and SW only:
	// never data, which may hold personal data or keys). nil discards.
	Logger *slog.Logger
}

// Stats counts the raw traffic of a Channel (GET RESPONSE and re-sent
// commands included; bytes as exchanged, i.e. protected).
type Stats struct {
	APDUs    int
	BytesOut int64
	BytesIn  int64
}

// Channel is an APDU channel to one card. Its methods are safe for
// concurrent use but serialise: a card processes one command at a time.
type Channel struct {
	t    Transport
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	wrapper Wrapper
	stats   Stats
}

// NewChannel returns a Channel over t.
func NewChannel(t Transport, opts Options) *Channel {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = ShortChunk
		if opts.Extended {
			opts.ChunkSize = ExtendedChunk
		}
	}
	if !opts.Extended && opts.ChunkSize > ShortChunk {
		opts.ChunkSize = ShortChunk
	}
	if opts.ChunkSize > ExtendedChunk {
		opts.ChunkSize = ExtendedChunk
	}
	if opts.MaxChained <= 0 {
		opts.MaxChained = DefaultMaxChained
	}
	if opts.MaxResponse <= 0 {
		opts.MaxResponse = DefaultMaxResponse
	}
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Channel{t: t, opts: opts, log: log}
}

// Extended reports whether extended length is enabled.
func (c *Channel) Extended() bool { return c.opts.Extended }

// SetWrapper installs (or, with nil, removes) secure messaging. PACE and
// BAC install their session; a later Chip Authentication replaces it.
func (c *Channel) SetWrapper(w Wrapper) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrapper = w
}

// Wrapper returns the installed wrapper (nil if none).
func (c *Channel) Wrapper() Wrapper {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrapper
}

// Stats returns the traffic counters.
func (c *Channel) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Transmit sends cmd (through the wrapper, if any) and returns the
// response, whatever its status word: a non-9000 SW is not an error here
// (see Do). Errors are transport, encoding, chaining-limit and secure
// messaging failures.
func (c *Channel) Transmit(ctx context.Context, cmd Command) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.wrapper
	if w != nil {
		var err error
		if cmd, err = w.Wrap(cmd); err != nil {
			return Response{}, fmt.Errorf("wrap INS %02X: %w", cmd.INS, err)
		}
	}
	raw, err := cmd.Encode(c.opts.Extended)
	if err != nil {
		return Response{}, err
	}
	resp, err := c.exchange(ctx, raw, cmd)
	if err != nil {
		return Response{}, err
	}
	if w != nil {
		if resp, err = w.Unwrap(resp); err != nil {
			return Response{}, fmt.Errorf("unwrap response to INS %02X: %w", cmd.INS, err)
		}
	}
	return resp, nil
}

// Do is Transmit that turns a non-9000 SW into a *StatusError.
func (c *Channel) Do(ctx context.Context, cmd Command) ([]byte, error) {
	resp, err := c.Transmit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if err := resp.Err(); err != nil {
		return nil, fmt.Errorf("INS %02X: %w", cmd.INS, err)
	}
	return resp.Data, nil
}

// exchange does the ISO/IEC 7816-4 §5.3.3 / 7816-3 T=0 transport chaining
// on raw bytes: one re-send with the right Le on 6Cxx, GET RESPONSE while
// 61xx, within the configured bounds.
func (c *Channel) exchange(ctx context.Context, raw []byte, cmd Command) (Response, error) {
	resp, err := c.roundTrip(ctx, raw)
	if err != nil {
		return Response{}, err
	}
	// 6Cxx: wrong Le, SW2 is the right one. Only meaningful for a short
	// command that carried Le; re-send once.
	if resp.SW1() == 0x6C && cmd.Fits() && cmd.Ne > 0 {
		again := append([]byte(nil), raw...)
		again[len(again)-1] = resp.SW2()
		if resp, err = c.roundTrip(ctx, again); err != nil {
			return Response{}, err
		}
	}
	if resp.SW1() != 0x61 {
		return resp, nil
	}
	data := append([]byte(nil), resp.Data...)
	for i := 0; resp.SW1() == 0x61; i++ {
		if i >= c.opts.MaxChained {
			return Response{}, fmt.Errorf("%w: more than %d", ErrTooManyChained, c.opts.MaxChained)
		}
		gr := []byte{cmd.CLA & 0x03, 0xC0, 0x00, 0x00, resp.SW2()} // GET RESPONSE, Le = SW2 (00 = 256)
		if resp, err = c.roundTrip(ctx, gr); err != nil {
			return Response{}, err
		}
		if len(data)+len(resp.Data) > c.opts.MaxResponse {
			return Response{}, fmt.Errorf("%w: over %d bytes", ErrResponseTooLong, c.opts.MaxResponse)
		}
		data = append(data, resp.Data...)
	}
	return Response{Data: data, SW: resp.SW}, nil
}

func (c *Channel) roundTrip(ctx context.Context, raw []byte) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	out, err := c.t.Transmit(ctx, raw)
	c.stats.APDUs++
	c.stats.BytesOut += int64(len(raw))
	c.stats.BytesIn += int64(len(out))
	if err != nil {
		return Response{}, fmt.Errorf("transmit INS %02X: %w", raw[1], err)
	}
	resp, err := ParseResponse(out)
	if err != nil {
		return Response{}, fmt.Errorf("INS %02X: %w", raw[1], err)
	}
	if len(resp.Data) > c.opts.MaxResponse {
		return Response{}, fmt.Errorf("%w: %d bytes", ErrResponseTooLong, len(resp.Data))
	}
	c.log.Debug("apdu", "cla", raw[0], "ins", raw[1], "p1", raw[2], "p2", raw[3],
		"out", len(raw), "in", len(out), "sw", fmt.Sprintf("%04X", resp.SW))
	return resp, nil
}
