package backoff

import (
	"context"
	"testing"
	"time"
)

func TestExpBounds(t *testing.T) {
	for attempt := 1; attempt < 20; attempt++ {
		want := min(100*time.Millisecond<<min(attempt-1, 10), 2*time.Second)
		for i := 0; i < 50; i++ {
			d := Exp(100*time.Millisecond, 2*time.Second, attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
	if Jitter(0) != 0 {
		t.Fatal("Jitter(0) != 0")
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep returned false without cancel")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Fatal("Sleep ignored a cancelled context")
	}
}
