package hubqueue_test

import (
	"context"
	"log/slog"

	"kiosk/provisioning/hubqueue"
)

// A hub instance: handle each kiosk message, reply over MQTT, then ack.
// Several instances with the same options share the work.
func ExampleClient() {
	ctx := context.Background()
	q, err := hubqueue.New(hubqueue.Options{
		URLs:   []string{"amqp://hub:secret@rabbit1:5672/", "amqp://hub:secret@rabbit2:5672/", "amqp://hub:secret@rabbit3:5672/"},
		Logger: slog.Default(),
	})
	if err != nil {
		panic(err)
	}
	_ = q.Run(ctx, func(ctx context.Context, m hubqueue.Msg) {
		// Verify and store idempotently (m.Redelivered messages, and
		// kiosks' resends, come again), then reply to the kiosk.
		reply := []byte(`{"body":{},"alg":"ES256","sig":"…","cert":"…"}`)
		topic := "kiosk/v1/" + m.Device + "/tx-ack"
		if m.Sub == "auth/req" {
			topic = "kiosk/v1/" + m.Device + "/auth/resp"
		}
		if err := q.Publish(ctx, topic, reply); err != nil {
			_ = m.Nack(true) // handled again, here or by another instance
			return
		}
		_ = m.Ack()
	})
}
