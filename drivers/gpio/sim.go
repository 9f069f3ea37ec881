package gpio

import (
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// simEdgeBuffer is how many unconsumed edges a fake line holds, like the
// kernel's per-line event FIFO.
const simEdgeBuffer = 64

// Sim is the simulated backend: a Board over periph gpiotest pins whose
// inputs can be driven from tests and the demo page.
type Sim struct {
	*Board
	fakes map[Role]*gpiotest.Pin
}

// NewSim builds a simulated board. With no pins configured, every role is
// mapped to an active-high fake line "SIM_<ROLE>". Fake inputs start at their
// inactive level unless the configured pull says otherwise (as hardware).
func NewSim(cfg Config, logger *slog.Logger) (*Sim, error) {
	if len(cfg.Pins) == 0 {
		cfg.Pins = map[Role]PinConfig{}
		for _, r := range Roles() {
			cfg.Pins[r] = PinConfig{Line: "SIM_" + strings.ToUpper(string(r))}
		}
	} else {
		cfg.Pins = maps.Clone(cfg.Pins)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sim{fakes: map[Role]*gpiotest.Pin{}}
	pins := map[Role]gpio.PinIO{}
	for i, r := range Roles() {
		pc, ok := cfg.Pins[r]
		if !ok {
			continue
		}
		p := &gpiotest.Pin{N: pc.Line, Num: i, L: gpio.Level(pc.ActiveLow), EdgesChan: make(chan gpio.Level, simEdgeBuffer)}
		s.fakes[r] = p
		pins[r] = p
	}
	b, err := NewBoard(pins, cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("gpio sim: %w", err)
	}
	// Edges queued while nobody watched would replay stale levels into a new
	// Run; a real line request starts with an empty FIFO too.
	b.onRun = s.drainEdges
	s.Board = b
	return s, nil
}

func (s *Sim) drainEdges() {
	for _, p := range s.fakes {
		for drained := false; !drained; {
			select {
			case <-p.EdgesChan:
			default:
				drained = true
			}
		}
	}
}

func (s *Sim) input(role Role) (*line, *gpiotest.Pin, error) {
	l, err := s.lookup(role)
	if err != nil {
		return nil, nil, err
	}
	if l.output {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotInput, role)
	}
	return l, s.fakes[role], nil
}

// SetInput drives a fake input to a logical level as hardware would: the
// line level changes and, while Run is watching, an edge is queued.
func (s *Sim) SetInput(role Role, active bool) error {
	l, p, err := s.input(role)
	if err != nil {
		return err
	}
	s.drive(l, p, l.level(active))
	return nil
}

// drive sets the electrical level and queues the edge. Holding Board.mu
// orders it against Run start (which drains edges and samples levels).
func (s *Sim) drive(l *line, p *gpiotest.Pin, lv gpio.Level) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.Lock()
	p.L = lv
	p.Unlock()
	if !s.running {
		return
	}
	select {
	case p.EdgesChan <- lv:
	default:
		// FIFO full: drop the oldest edge, keep the newest so the last
		// consumed edge matches the line level.
		select {
		case <-p.EdgesChan:
		default:
		}
		select {
		case p.EdgesChan <- lv:
		default:
		}
	}
}

// Bounce emits transitions edges, alternating, ending at the logical level
// final, with gap between them (like a bouncing contact). It blocks for
// about transitions*gap.
func (s *Sim) Bounce(role Role, final bool, transitions int, gap time.Duration) error {
	l, p, err := s.input(role)
	if err != nil {
		return err
	}
	if transitions < 1 {
		return fmt.Errorf("gpio sim: bounce %s: transitions %d < 1", role, transitions)
	}
	for i := range transitions {
		if i > 0 && gap > 0 {
			time.Sleep(gap)
		}
		// Parity chosen so the last edge lands on final.
		active := final == ((transitions-1-i)%2 == 0)
		s.drive(l, p, l.level(active))
	}
	return nil
}
