package gpio

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkInputToEvent measures the latency from a simulated edge
// (Sim.SetInput) to the emitted InputEvent, with and without debounce.
func BenchmarkInputToEvent(b *testing.B) {
	for _, bc := range []struct {
		name     string
		debounce time.Duration
	}{{"debounce=0", NoDebounce}, {"debounce=20ms", 20 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := NewSim(Config{Debounce: bc.debounce, Pins: map[Role]PinConfig{Presence: {Line: "P"}}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			got := make(chan time.Time, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx, func(InputEvent) { got <- time.Now() }) }()
			<-got // initial state
			lat := make([]time.Duration, 0, b.N)
			active := false
			for b.Loop() {
				active = !active
				start := time.Now()
				if err := s.SetInput(Presence, active); err != nil {
					b.Fatal(err)
				}
				select {
				case t := <-got:
					lat = append(lat, t.Sub(start))
				case <-time.After(time.Second):
					b.Fatal("no event")
				}
			}
			cancel()
			<-done
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns/event")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns/event")
			b.ReportMetric(float64(max(bc.debounce, 0).Nanoseconds()), "debounce-ns")
		})
	}
}
