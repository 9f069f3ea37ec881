package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"kiosk/firmware/event"
	"kiosk/firmware/hub"
)

// hubEvent is the payload on <prefix>/<device>/events/<kind>
// (docs/mqtt.md, "Events").
type hubEvent struct {
	Seq  uint64    `json:"seq"`
	Kind string    `json:"kind"`
	Time time.Time `json:"time"`
	Data any       `json:"data,omitempty"`
}

// forwardedEvent says whether the fleet hears of an event kind and at
// which QoS: alarms at least once, the rest as a best-effort stream. Face
// progress (several a second) and raw input levels stay on the kiosk;
// nothing forwarded holds a face, a PIN or a document number.
func forwardedEvent(kind string) (qos byte, ok bool) {
	switch {
	case strings.HasPrefix(kind, "alarm."), kind == "outbox.alarm", kind == "kiosk.service":
		return 1, true
	case kind == "session.progress":
		return 0, false
	case strings.HasPrefix(kind, "session."), kind == "camera.state", kind == "kioskd.started",
		strings.HasPrefix(kind, "staff."), kind == "tx.delivered":
		return 0, true
	}
	return 0, false
}

// forwardEvents publishes the session's transitions, service changes and
// alarms to the hub as they happen. While the link is down they are
// dropped: the state itself reaches the fleet with the next health
// telemetry, and transactions travel through the outbox.
func (d *Daemon) forwardEvents(ctx context.Context) error {
	sub := d.bus.Subscribe(ctx, 256)
	defer sub.Close()
	for {
		var e event.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-sub.C:
			if !ok {
				return nil
			}
		}
		qos, fwd := forwardedEvent(e.Kind)
		if !fwd {
			continue
		}
		b, err := json.Marshal(hubEvent{Seq: e.Seq, Kind: e.Kind, Time: e.Time.UTC(), Data: e.Data})
		if err != nil {
			d.log.Warn("event not forwarded", "kind", e.Kind, "err", err)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = d.hub.Publish(pctx, "events/"+e.Kind, qos, false, b)
		cancel()
		if err != nil && !errors.Is(err, hub.ErrNotConnected) && ctx.Err() == nil {
			d.log.Debug("event not forwarded", "kind", e.Kind, "err", err)
		}
	}
}
