package hub

import (
	"fmt"
	"log/slog"
	"net"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// EmbeddedBroker is an in-process MQTT broker for simulation and demos,
// used when no hub is configured. It accepts any client, so it may only
// listen on loopback; production mode refuses it (see firmware/config).
type EmbeddedBroker struct {
	srv  *mochi.Server
	addr string
}

// StartEmbeddedBroker listens on addr (a loopback host:port; port 0 picks
// a free one) and serves until Close.
func StartEmbeddedBroker(addr string, logger *slog.Logger) (*EmbeddedBroker, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("embedded broker address %q: must be loopback", addr)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Resolve port 0 here so callers learn the real address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	real := ln.Addr().String()
	ln.Close()

	srv := mochi.New(&mochi.Options{Logger: logger.With("component", "embedded-broker"), InlineClient: false})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "loopback", Address: real})); err != nil {
		return nil, fmt.Errorf("embedded broker listen %s: %w", real, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &EmbeddedBroker{srv: srv, addr: real}, nil
}

// URL is the broker's tcp:// address for clients.
func (b *EmbeddedBroker) URL() string { return "tcp://" + b.addr }

// Close stops the broker and disconnects its clients.
func (b *EmbeddedBroker) Close() error { return b.srv.Close() }
