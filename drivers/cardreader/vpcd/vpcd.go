// Package vpcd is the card side of the vsmartcard "vpcd" virtual reader
// protocol: a software card (cardreader.CardHandler) connects over TCP to
// the vpcd driver loaded by pcscd and is then seen by every PC/SC client as
// a card in that reader. Used by tests, the demo and `kioskctl eid emulate`.
//
// Protocol (vsmartcard vpcd, both directions): each message is a 2-byte
// big-endian length followed by that many bytes. From the reader, a 1-byte
// message is a control code (00 power off, 01 power on, 02 reset — no reply;
// 04 get ATR — reply with the ATR); a longer message is a C-APDU, answered by
// exactly one R-APDU message. Closing the connection removes the card.
//
// Security: vpcd listens on all interfaces; it must never be installed on a
// production kiosk. This package only dials out.
package vpcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"kiosk/drivers/cardreader"
)

// Control codes sent by the vpcd driver as 1-byte messages.
const (
	ctrlOff   = 0x00
	ctrlOn    = 0x01
	ctrlReset = 0x02
	ctrlATR   = 0x04
)

// MaxFrame is the largest payload the 2-byte length prefix can carry.
const MaxFrame = 0xFFFF

// Dial retry backoff: pcscd may not be listening yet (or is restarting).
const (
	dialBackoffMin = 20 * time.Millisecond
	dialBackoffMax = 1 * time.Second
)

// ErrFrameTooLarge: a reply does not fit the 2-byte length prefix.
var ErrFrameTooLarge = errors.New("vpcd: frame larger than 65535 bytes")

// Serve dials pcscd's vpcd port at addr (retrying with capped exponential
// backoff until connected or ctx ends), then answers the reader with h until
// ctx ends or the peer closes. Ending ctx closes the socket, which the reader
// sees as card removal; Serve returns after the APDU in progress (if any) has
// been answered by h, so a handler that stalls delays the return.
// It returns nil when the peer closed the connection and ctx.Err() when ctx ended.
func Serve(ctx context.Context, addr string, h cardreader.CardHandler, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("vpcd", addr)
	conn, err := dial(ctx, addr, logger)
	if err != nil {
		return err
	}
	// Closing the connection is the only way to interrupt a blocking read;
	// AfterFunc does it when ctx ends. stop() and Close are both safe to race.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()
	logger.Debug("card connected")
	err = serveConn(ackConn{conn}, h, logger)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) {
		logger.Debug("reader closed the connection")
		return nil
	}
	return fmt.Errorf("vpcd %s: %w", addr, err)
}

func dial(ctx context.Context, addr string, logger *slog.Logger) (net.Conn, error) {
	var d net.Dialer
	backoff := dialBackoffMin
	for attempt := 1; ; attempt++ {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true) // one small frame per APDU: latency matters, not throughput
			}
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt == 1 || attempt%20 == 0 {
			logger.Debug("dial vpcd failed, retrying", "attempt", attempt, "err", err)
		}
		// Full jitter keeps several cards from dialing in lockstep after a restart.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, dialBackoffMax)
	}
}

// ackConn re-arms quick ACKs around every read (see quickAck).
type ackConn struct{ net.Conn }

func (c ackConn) Read(p []byte) (int, error) {
	quickAck(c.Conn)
	n, err := c.Conn.Read(p)
	quickAck(c.Conn)
	return n, err
}

// serveConn runs the message loop on rw until a read or write fails.
func serveConn(rw io.ReadWriter, h cardreader.CardHandler, logger *slog.Logger) error {
	buf := make([]byte, MaxFrame)
	for {
		msg, err := readFrame(rw, buf)
		if err != nil {
			return err
		}
		reply, ok := handle(msg, h, logger)
		if !ok {
			continue
		}
		if err := writeFrame(rw, reply); err != nil {
			return err
		}
	}
}

// readFrame reads one length-prefixed message into buf (len(buf) >= MaxFrame)
// and returns the payload slice of buf. A clean EOF before a new frame is io.EOF;
// EOF inside a frame is io.ErrUnexpectedEOF.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read frame length: %w", err)
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %d-byte frame: %w", n, err)
	}
	return buf[:n], nil
}

func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > MaxFrame {
		return ErrFrameTooLarge
	}
	out := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(out, uint16(len(payload)))
	copy(out[2:], payload)
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// handle interprets one message; ok=false means "send nothing".
func handle(msg []byte, h cardreader.CardHandler, logger *slog.Logger) (reply []byte, ok bool) {
	switch len(msg) {
	case 0:
		// Not produced by vpcd; ignore rather than tear down the card.
		logger.Warn("ignoring empty vpcd frame")
		return nil, false
	case 1:
		switch msg[0] {
		case ctrlOff:
			return nil, false
		case ctrlOn, ctrlReset:
			h.Reset()
			return nil, false
		case ctrlATR:
			return h.ATR(), true
		default:
			logger.Warn("ignoring unknown vpcd control code", "code", msg[0])
			return nil, false
		}
	}
	rapdu := process(h, msg, logger)
	if len(rapdu) > MaxFrame {
		// The reader cannot carry it; answer like a card whose buffer overflowed
		// (ISO/IEC 7816-4 §5.1.3: 6F00 no precise diagnosis) instead of dropping the link.
		logger.Error("handler response too large for vpcd", "len", len(rapdu))
		return []byte{0x6F, 0x00}, true
	}
	return rapdu, true
}

// process calls the handler, turning a handler panic into SW 6F00: a buggy
// emulated card must look like a broken card, not crash the test binary.
func process(h cardreader.CardHandler, capdu []byte, logger *slog.Logger) (rapdu []byte) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error("card handler panicked", "panic", r)
			rapdu = []byte{0x6F, 0x00}
		}
	}()
	// The handler may keep the slice; buf is reused for the next frame.
	return h.Process(append([]byte(nil), capdu...))
}
