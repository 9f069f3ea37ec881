package hubstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Notifier is implemented by stores that several instances share
// (pgstore, with PostgreSQL's LISTEN/NOTIFY): small messages sent to every
// instance listening on a channel, the sender's own listener included.
// Delivery is at most once and nothing is stored: what a listener misses
// while it reconnects is lost, and Listener.Down/Up bracket that window.
// hubd uses it to make GET /fleet/events fleet-wide; the bolt store (one
// machine) has no need of it.
type Notifier interface {
	// Notify sends payload, at most MaxNotifyPayload bytes (else
	// ErrPayloadTooLarge), to channel's listeners.
	Notify(ctx context.Context, channel string, payload []byte) error
	// Listen hands channel's notifications to l until ctx ends, and then
	// returns ctx's error. A lost connection is reported to l.Down and
	// listening starts again after a back-off.
	Listen(ctx context.Context, channel string, l Listener) error
}

// Listener receives what Listen hears. Its functions run on Listen's
// goroutine, one at a time and in order, and must return quickly; any of
// them may be nil.
type Listener struct {
	// Notification is one payload as it was sent.
	Notification func(payload []byte)
	// Up is called each time the channel is listened on: at the start
	// and after every reconnection.
	Up func()
	// Down is called when listening could not start or its connection
	// was lost, with the cause and the delay before the next attempt.
	// Notifications sent before the next Up do not arrive.
	Down func(err error, retry time.Duration)
}

// MaxNotifyPayload is the largest payload Notify sends: PostgreSQL's
// NOTIFY takes payloads shorter than 8000 bytes.
const MaxNotifyPayload = 7999

// MaxChannel bounds a channel name (PostgreSQL's identifier length).
const MaxChannel = 63

// ErrPayloadTooLarge is Notify's error for a payload over
// MaxNotifyPayload: nothing was sent.
var ErrPayloadTooLarge = errors.New("hubstore: notification payload too large")

// CheckChannel refuses a channel name a Notifier cannot use as is.
func CheckChannel(channel string) error {
	if channel == "" || len(channel) > MaxChannel {
		return fmt.Errorf("hubstore: channel name %q: 1 to %d bytes", channel, MaxChannel)
	}
	for _, r := range channel {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("hubstore: channel name %q: only a-z, 0-9 and _", channel)
		}
	}
	return nil
}
