package link

import (
	"testing"
	"time"
)

type echo struct{ resets int }

func (e *echo) ATR() []byte                 { return []byte{0x3B, 0x00} }
func (e *echo) Reset()                      { e.resets++ }
func (e *echo) Process(capdu []byte) []byte { return append(make([]byte, 254), 0x90, 0x00) }

// The wire arithmetic, worked by hand.
func TestWireModel(t *testing.T) {
	m, err := ByName("iso14443-106")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ n, wire int }{
		{0, 3}, {5, 8}, {256, 259},
		// 257 bytes: two blocks (2·3) and one R(ACK) (3).
		{257, 257 + 6 + 3},
		// 1000 bytes: four blocks, three acknowledgements.
		{1000, 1000 + 12 + 9},
	} {
		if got := m.WireBytes(tc.n); got != tc.wire {
			t.Errorf("%d bytes: %d on the wire, want %d", tc.n, got, tc.wire)
		}
	}
	// A 5-byte command and a 256-byte answer: (8 + 259) bytes · 9 bits at
	// 106 kbit/s = 2403 bits = 22.67 ms.
	if d := m.Transfer(5, 256); d != 2403*time.Second/106_000 {
		t.Errorf("transfer %v", d)
	}
	t1, _ := ByName("t1-115200")
	// (9 + 260) bytes · 11 bits at 115.2 kbit/s.
	if d := t1.Transfer(5, 256); d != time.Duration(int64(9+256+2*4+4)*11*int64(time.Second)/115_200) {
		t.Errorf("T=1 transfer %v", d)
	}
	if _, err := ByName("usb"); err == nil {
		t.Error("unknown model accepted")
	}
}

// The handler answers after the modelled time and sums what it carried.
func TestHandlerDelays(t *testing.T) {
	m, _ := ByName("iso14443-424")
	m.Turnaround = 5 * time.Millisecond
	card := &echo{}
	h, err := New(card, m)
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	h.sleep = func(d time.Duration) { slept = append(slept, d) }
	for i := 0; i < 3; i++ {
		if r := h.Process([]byte{0, 0xB0, 0, 0, 0}); len(r) != 256 {
			t.Fatalf("answer of %d bytes", len(r))
		}
	}
	want := m.Transfer(5, 256) + 5*time.Millisecond
	if len(slept) != 3 || slept[0] != want {
		t.Fatalf("slept %v, want 3 × %v", slept, want)
	}
	s := h.TakeStats()
	if s.APDUs != 3 || s.WireBytes != 3*(8+259) || s.Floor != 3*m.Transfer(5, 256) || s.Delay != 3*want {
		t.Fatalf("stats %+v", s)
	}
	if s := h.Stats(); s.APDUs != 0 {
		t.Fatalf("stats not restarted: %+v", s)
	}
	h.Reset()
	if card.resets != 1 || len(h.ATR()) != 2 {
		t.Fatal("Reset or ATR not passed on")
	}
	if _, err := New(card, Model{Name: "broken"}); err == nil {
		t.Fatal("a model without bit rate accepted")
	}
}
