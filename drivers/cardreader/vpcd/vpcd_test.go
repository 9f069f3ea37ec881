package vpcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"kiosk/drivers/cardreader"
	"kiosk/drivers/cardreader/cardtest"
)

func frame(payload ...byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(payload))), payload...)
}

type panicCard struct{ *cardtest.Card }

func (panicCard) Process([]byte) []byte { panic("boom") }

type bigCard struct{ *cardtest.Card }

func (bigCard) Process([]byte) []byte { return make([]byte, MaxFrame+1) }

type resetCounter struct {
	*cardtest.Card
	resets int
}

func (r *resetCounter) Reset() { r.resets++; r.Card.Reset() }

// parseFrames splits a reply stream into frames, failing on bad framing.
func parseFrames(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("dangling byte in output")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			t.Fatalf("truncated output frame: want %d, have %d", n, len(b)-2)
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

type rw struct {
	io.Reader
	io.Writer
}

func TestServeConn(t *testing.T) {
	card := &resetCounter{Card: cardtest.New(map[uint16][]byte{0x0101: []byte("hello")})}
	sel := cardtest.SelectEF(0x0101)
	tests := []struct {
		name    string
		h       cardreader.CardHandler
		in      []byte
		want    [][]byte
		wantErr error
	}{
		{"power on, ATR, APDU, clean EOF", card,
			bytes.Join([][]byte{frame(ctrlOn), frame(ctrlATR), frame(sel...), frame(cardtest.ReadBinary(0, 5)...), frame(ctrlOff)}, nil),
			[][]byte{card.ATR(), {0x90, 0x00}, append([]byte("hello"), 0x90, 0x00)}, io.EOF},
		{"empty frame and unknown control ignored", card,
			bytes.Join([][]byte{frame(), frame(0x7F), frame(ctrlATR)}, nil), [][]byte{card.ATR()}, io.EOF},
		{"truncated length", card, []byte{0x00}, nil, io.ErrUnexpectedEOF},
		{"truncated payload", card, []byte{0x00, 0x05, 0x00, 0xA4}, nil, io.ErrUnexpectedEOF},
		{"handler panic is 6F00", panicCard{card.Card}, frame(sel...), [][]byte{{0x6F, 0x00}}, io.EOF},
		{"oversized reply is 6F00", bigCard{card.Card}, frame(sel...), [][]byte{{0x6F, 0x00}}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := serveConn(rw{bytes.NewReader(tt.in), &out}, tt.h, slog.New(slog.DiscardHandler))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			got := parseFrames(t, out.Bytes())
			if len(got) != len(tt.want) {
				t.Fatalf("got %d frames % X, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("frame %d = % X, want % X", i, got[i], tt.want[i])
				}
			}
		})
	}
	if card.resets == 0 {
		t.Error("power on did not reset the card")
	}
}

func TestServeDialRetryAndClose(t *testing.T) {
	// Reserve a port, free it, and only listen after Serve started dialling.
	l0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l0.Addr().String()
	l0.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	card := cardtest.New(nil)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, addr, card, nil) }()
	time.Sleep(150 * time.Millisecond)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s taken meanwhile: %v", addr, err)
	}
	defer l.Close()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(frame(ctrlATR)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MaxFrame)
	got, err := readFrame(conn, buf)
	if err != nil || !bytes.Equal(got, card.ATR()) {
		t.Fatalf("ATR reply % X, %v", got, err)
	}
	// Ending ctx closes the socket: the reader sees the card leave.
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := readFrame(conn, buf); !errors.Is(err, io.EOF) {
		t.Errorf("reader side after cancel: %v, want EOF", err)
	}

	// Peer closing ends Serve with nil.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { done <- Serve(ctx2, addr, card, nil) }()
	conn2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn2.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after peer close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the peer closed")
	}
}

func TestServeGivesUpWithCtx(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// Port 1 on localhost: connection refused, so Serve keeps retrying.
	err := Serve(ctx, "127.0.0.1:1", cardtest.New(nil), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v, want DeadlineExceeded", err)
	}
}

// FuzzFrames feeds arbitrary reader→card byte streams to the message loop:
// it must not panic, must stop with an error at the end of input, and
// everything it writes must be correctly framed.
func FuzzFrames(f *testing.F) {
	sel := cardtest.SelectEF(0x0101)
	f.Add(bytes.Join([][]byte{frame(ctrlOn), frame(ctrlATR), frame(sel...)}, nil))
	f.Add(frame())
	f.Add([]byte{0xFF, 0xFF, 0x00})
	f.Add([]byte{0x00})
	f.Add(frame(0x00, 0xB0, 0x00))
	f.Add(frame(cardtest.Echo(65533)...))
	f.Add(bytes.Join([][]byte{frame(ctrlReset), frame(0x09), frame(cardtest.ReadBinary(0, 300)...)}, nil))
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, in []byte) {
		card := cardtest.New(map[uint16][]byte{0x0101: bytes.Repeat([]byte{1}, 1000)})
		var out bytes.Buffer
		err := serveConn(rw{bytes.NewReader(in), &out}, card, log)
		if err == nil {
			t.Fatal("serveConn returned nil at end of input")
		}
		parseFrames(t, out.Bytes())
	})
}
