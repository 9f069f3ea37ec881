// Package link models the physical link between a reader and a card, so a
// software card (the vpcd card, the simulated reader's card) answers with
// the delay a real one would: every APDU costs its bytes on the wire at
// the link's bit rate plus a per-APDU turnaround (the chip's processing
// and the reader's latency). It wraps a cardreader.CardHandler; without it
// the virtual card answers as fast as the host computes.
//
// The wire model (a floor, not a simulation of every guard time):
//
//   - ISO/IEC 14443 (contactless, the eMRTD's interface): 106, 212, 424 or
//     848 kbit/s; every byte is 9 bits (8 data bits and the odd parity bit
//     of Type A framing, ISO/IEC 14443-3 §6.2.3); each block of the
//     ISO/IEC 14443-4 block protocol carries a PCB and a 2-byte CRC (3
//     bytes, §7.1) and at most 256 bytes (FSC = FSD = 256, FSCI 8); a
//     chained block is acknowledged by an R(ACK) block (3 bytes) the other
//     way (§7.5.3).
//   - ISO/IEC 7816-3 T=1 (contact): 115.2 kbit/s; every character is 11
//     etu (start bit, 8 data bits, parity, and the 1 etu of extra guard
//     time T=1 needs at least, §11.2); each block carries a 3-byte
//     prologue and a 1-byte LRC (§11.3) and at most 254 bytes (IFSC =
//     IFSD = 254); chained blocks are acknowledged by R-blocks (4 bytes).
package link

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"kiosk/drivers/cardreader"
)

// Model is one physical link.
type Model struct {
	Name        string
	BitRate     int // bits per second
	BitsPerByte int // on the wire, framing included
	// BlockOverhead is the bytes each block adds (protocol header and
	// checksum); BlockSize the most information bytes a block carries;
	// AckBytes what acknowledging a chained block costs the other way.
	BlockOverhead, BlockSize, AckBytes int
	// Turnaround is added once per APDU: the chip's processing and the
	// reader's latency, which the bytes do not account for.
	Turnaround time.Duration
}

var models = map[string]Model{
	"iso14443-106": iso14443(106_000),
	"iso14443-212": iso14443(212_000),
	"iso14443-424": iso14443(424_000),
	"iso14443-848": iso14443(848_000),
	"t1-115200":    {Name: "t1-115200", BitRate: 115_200, BitsPerByte: 11, BlockOverhead: 4, BlockSize: 254, AckBytes: 4},
}

func iso14443(rate int) Model {
	return Model{Name: fmt.Sprintf("iso14443-%d", rate/1000), BitRate: rate, BitsPerByte: 9, BlockOverhead: 3, BlockSize: 256, AckBytes: 3}
}

// Names lists the models ByName knows.
func Names() []string {
	var out []string
	for n := range models {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ByName returns a known model (turnaround zero): iso14443-106, -212,
// -424, -848 or t1-115200.
func ByName(name string) (Model, error) {
	m, ok := models[name]
	if !ok {
		return Model{}, fmt.Errorf("link: unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return m, nil
}

// WireBytes is what n bytes of an APDU become on the wire, blocks and
// the acknowledgements of chained blocks included.
func (m Model) WireBytes(n int) int {
	blocks := 1
	if m.BlockSize > 0 && n > m.BlockSize {
		blocks = (n + m.BlockSize - 1) / m.BlockSize
	}
	return n + blocks*m.BlockOverhead + (blocks-1)*m.AckBytes
}

// Transfer is the time one exchange spends on the wire: the command's and
// the response's bytes at the bit rate (no turnaround).
func (m Model) Transfer(cmd, resp int) time.Duration {
	bits := int64(m.WireBytes(cmd)+m.WireBytes(resp)) * int64(m.BitsPerByte)
	return time.Duration(bits * int64(time.Second) / int64(m.BitRate))
}

// Stats sum what a Handler carried.
type Stats struct {
	APDUs     int
	WireBytes int           // both directions, framing included
	Floor     time.Duration // WireBytes at the bit rate: the physical floor
	Delay     time.Duration // Floor plus the turnarounds: what was added
}

// Handler is a card behind a link model.
type Handler struct {
	card  cardreader.CardHandler
	m     Model
	sleep func(time.Duration)

	mu    sync.Mutex
	stats Stats
}

var _ cardreader.CardHandler = (*Handler)(nil)

// New puts card behind the link m.
func New(card cardreader.CardHandler, m Model) (*Handler, error) {
	if m.BitRate <= 0 || m.BitsPerByte <= 0 || m.Turnaround < 0 {
		return nil, fmt.Errorf("link: model %q needs a bit rate, bits per byte and a turnaround ≥ 0", m.Name)
	}
	return &Handler{card: card, m: m, sleep: time.Sleep}, nil
}

// ATR is the card's (the ATR's own transfer is not modelled).
func (h *Handler) ATR() []byte { return h.card.ATR() }

// Reset resets the card.
func (h *Handler) Reset() { h.card.Reset() }

// Process answers after the exchange's time on the link.
func (h *Handler) Process(capdu []byte) []byte {
	resp := h.card.Process(capdu)
	floor := h.m.Transfer(len(capdu), len(resp))
	d := floor + h.m.Turnaround
	h.mu.Lock()
	h.stats.APDUs++
	h.stats.WireBytes += h.m.WireBytes(len(capdu)) + h.m.WireBytes(len(resp))
	h.stats.Floor += floor
	h.stats.Delay += d
	h.mu.Unlock()
	h.sleep(d)
	return resp
}

// Stats returns the sums since the last TakeStats.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// TakeStats returns the sums and starts new ones.
func (h *Handler) TakeStats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stats
	h.stats = Stats{}
	return s
}
