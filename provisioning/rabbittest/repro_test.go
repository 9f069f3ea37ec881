package rabbittest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestReproNodeKill(t *testing.T) {
	c, err := Launch(3, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got atomic.Int64
	o := mqtt.NewClientOptions().SetClientID("dev1").SetCleanSession(false).SetAutoReconnect(true).
		SetMaxReconnectInterval(time.Second).SetConnectRetry(true)
	o.AddBroker(c.Node(0).MQTTURL())
	o.AddBroker(c.Node(1).MQTTURL())
	o.AddBroker(c.Node(2).MQTTURL())
	o.SetOnConnectHandler(func(cl mqtt.Client) {
		r := cl.OptionsReader()
		t.Logf("mqtt connected %v", r.Servers())
		tok := cl.Subscribe("kiosk/v1/dev1/tx-ack", 1, func(_ mqtt.Client, m mqtt.Message) { got.Add(1) })
		tok.Wait()
		t.Logf("subscribed %v", tok.Error())
	})
	cl := mqtt.NewClient(o)
	if tok := cl.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cl.Disconnect(100)
	time.Sleep(time.Second)
	out, _ := c.Ctl(1, "list_queues", "name", "type", "leader", "members", "online")
	t.Log(out)
	conn, err := amqp.Dial(c.Node(1).AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	ch.Confirm(false)
	pub := func(i int) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "amq.topic", "kiosk.v1.dev1.tx-ack", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint(i))})
		if err != nil {
			return "err " + err.Error()
		}
		ok, err := dc.WaitContext(ctx)
		return fmt.Sprint(ok, err)
	}
	t.Log("before:", pub(0))
	c.Kill(0)
	t0 := time.Now()
	for i := 1; time.Since(t0) < 60*time.Second; i++ {
		r := pub(i)
		t.Logf("%5.1fs pub %d: %s got %d", time.Since(t0).Seconds(), i, r, got.Load())
		if i%10 == 0 {
			out, _ := c.Ctl(1, "list_queues", "name", "type", "leader", "members", "online", "consumers")
			t.Log(out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
