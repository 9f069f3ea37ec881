package fleet

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"kiosk/firmware/jobwire"
)

// BenchmarkJobRoundTrip measures a ping job from Create at the hub to each
// kiosk's sealed "succeeded" back at the hub, over mosquitto on loopback:
// every kiosk is the real runner over the real hub client. p50/p99 are
// over all executions of all iterations.
func BenchmarkJobRoundTrip(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("kiosks=%d", n), func(b *testing.B) {
			w := newWorld(b, n)
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				j, err := w.svc.Create(context.Background(), Spec{Kind: jobwire.KindPing, Group: "branch-1", TTL: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				done := 0
				timeout := time.After(60 * time.Second)
				for done < n {
					select {
					case e := <-w.events:
						if e.Kind == "status" && e.JobID == j.ID && e.Status == jobwire.StatusSucceeded {
							lat = append(lat, time.Since(t0))
							done++
						}
					case <-timeout:
						b.Fatalf("job %s: %d of %d succeeded", j.ID, done, n)
					}
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
