package event

import (
	"context"
	"testing"
	"time"
)

func TestPublishFanOutAndOrder(t *testing.T) {
	b := New(nil)
	ctx := context.Background()
	a := b.Subscribe(ctx, 8)
	c := b.Subscribe(ctx, 8)
	for i := 0; i < 3; i++ {
		b.Publish(Event{Source: "test", Kind: "tick"})
	}
	for _, s := range []*Subscription{a, c} {
		for want := uint64(1); want <= 3; want++ {
			e := <-s.C
			if e.Seq != want || e.Kind != "tick" || e.Time.IsZero() {
				t.Fatalf("got %+v, want seq %d", e, want)
			}
		}
	}
}

func TestSlowSubscriberDropsWithoutBlocking(t *testing.T) {
	b := New(nil)
	s := b.Subscribe(context.Background(), 2)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10; i++ {
			b.Publish(Event{Kind: "x"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if got := s.Dropped(); got != 8 {
		t.Fatalf("dropped = %d, want 8", got)
	}
	if e := <-s.C; e.Seq != 1 {
		t.Fatalf("first kept event seq = %d, want 1", e.Seq)
	}
}

func TestSubscriptionEndsWithContext(t *testing.T) {
	b := New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	s := b.Subscribe(ctx, 1)
	cancel()
	select {
	case _, ok := <-s.C:
		if ok {
			t.Fatal("received an event after cancel")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("subscription not closed after context cancel")
	}
	b.Publish(Event{Kind: "after"}) // must not panic on a closed subscriber
	s.Close()                       // idempotent
}

func TestCloseBus(t *testing.T) {
	b := New(nil)
	s := b.Subscribe(context.Background(), 1)
	b.Close()
	if _, ok := <-s.C; ok {
		t.Fatal("subscription open after bus close")
	}
	late := b.Subscribe(context.Background(), 1)
	if _, ok := <-late.C; ok {
		t.Fatal("subscription on closed bus is open")
	}
	b.Publish(Event{})
}
