package feedback

import "time"

// Step is one phase of a pattern: the output is on or off for D.
type Step struct {
	On bool
	D  time.Duration
}

// Pattern is what one output does: a sequence of steps, played once
// (then the output stays off) or looped. The zero Pattern is "off".
type Pattern struct {
	Name  string
	Steps []Step
	Loop  bool
}

// Steady is an output held on (or off) indefinitely.
func Steady(name string, on bool) Pattern {
	return Pattern{Name: name, Steps: []Step{{On: on}}}
}

// Blink toggles on for on and off for off, forever.
func Blink(name string, on, off time.Duration) Pattern {
	return Pattern{Name: name, Steps: []Step{{true, on}, {false, off}}, Loop: true}
}

// Beeps is n beeps of on with gaps of off, played once.
func Beeps(name string, n int, on, off time.Duration) Pattern {
	p := Pattern{Name: name}
	for i := range n {
		if i > 0 {
			p.Steps = append(p.Steps, Step{false, off})
		}
		p.Steps = append(p.Steps, Step{true, on})
	}
	return p
}

// At returns the level elapsed after the pattern started and how long that
// level lasts (0 = until the pattern changes). A step with no duration
// holds for ever once reached (Steady); a one-shot pattern is off once
// played.
func (p Pattern) At(elapsed time.Duration) (on bool, hold time.Duration) {
	for pass := 0; pass < 2; pass++ {
		var t time.Duration
		for _, s := range p.Steps {
			if s.D <= 0 {
				return s.On, 0
			}
			if elapsed < t+s.D {
				return s.On, t + s.D - elapsed
			}
			t += s.D
		}
		if !p.Loop || t == 0 {
			return false, 0
		}
		elapsed %= t // second pass lands inside the cycle
	}
	return false, 0
}
