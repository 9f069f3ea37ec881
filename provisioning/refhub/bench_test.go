package refhub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
	"kiosk/provisioning/pgtest"
	"kiosk/provisioning/refhub"
)

// BenchmarkApplyPostgres: signed reports from 50 kiosks, published as fast
// as mosquitto takes them, applied by 1 or 2 hub instances sharing one
// PostgreSQL database; reports/s is the throughput (compare the two).
func BenchmarkApplyPostgres(b *testing.B) {
	pg := pgtest.Start(b)
	broker := mqtttest.StartMosquitto(b)
	const kiosks = 50
	ring := txreport.NewKeyring()
	var signers []*txreport.Signer
	for i := range kiosks {
		key, cert, err := devkey.Generate(fmt.Sprintf("bench-%02d", i), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		s, err := txreport.NewSigner(key, cert)
		if err != nil {
			b.Fatal(err)
		}
		if err := ring.Add(cert); err != nil {
			b.Fatal(err)
		}
		signers = append(signers, s)
	}
	for _, instances := range []int{1, 2} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			store, err := pgstore.Open(ctx, pg.NewDatabase(b), pgstore.Options{MaxConns: 16})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			var hubs []*refhub.Hub
			for i := range instances {
				h, err := refhub.New(refhub.Options{Brokers: []string{broker.URL()}, ClientID: fmt.Sprintf("bench-hub-%d", i),
					Group: fmt.Sprintf("bench-%d", instances), Keyring: ring, Store: store, Workers: 8})
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() { _ = h.Run(ctx) })
				<-h.Connected()
				hubs = append(hubs, h)
			}
			// Reports signed before the clock starts: the hub's work is
			// verifying, storing and acknowledging.
			envs := make([][]byte, b.N)
			topics := make([]string, b.N)
			for n := range b.N {
				s := signers[n%kiosks]
				r := benchReport(s.Certificate().Subject.CommonName, fmt.Sprintf("b%d-%08d", instances, n))
				if envs[n], err = s.Sign(r); err != nil {
					b.Fatal(err)
				}
				topics[n] = "kiosk/v1/" + r.Terminal + "/tx"
			}
			pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(fmt.Sprintf("bench-pub-%d", instances)).SetMaxResumePubInFlight(1000))
			if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				b.Fatal(tok.Error())
			}
			defer pub.Disconnect(0)
			b.ResetTimer()
			start := time.Now()
			applied := func() uint64 {
				var n uint64
				for _, h := range hubs {
					n += h.Stats().Applied
				}
				return n
			}
			var toks []mqtt.Token
			for n := range b.N {
				// Never more than 500 ahead: mosquitto queues at most
				// 1,000 messages per subscriber by default and drops the
				// rest (kiosks would resend; this publisher does not).
				for uint64(n) > applied()+500 {
					time.Sleep(time.Millisecond)
				}
				toks = append(toks, pub.Publish(topics[n], 1, false, envs[n]))
			}
			for _, t := range toks {
				t.Wait()
			}
			for {
				if applied() >= uint64(b.N) {
					break
				}
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("applied %d of %d", applied(), b.N)
				}
				time.Sleep(2 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
			if p, err := store.List(context.Background(), hubstore.ListQuery{Limit: 1}); err != nil || len(p.Items) == 0 {
				b.Fatalf("store empty after the run: %v", err)
			}
		})
	}
}

func benchReport(terminal, txID string) *txreport.Report {
	now := time.Now()
	return &txreport.Report{
		V: txreport.Version, TxID: txID, Terminal: terminal, Merchant: "Bench", Kind: "payment",
		Amount: 1234, Currency: "CHF", Started: txreport.Timestamp(now.Add(-5 * time.Second)), Decided: txreport.Timestamp(now),
		DocHash:  txreport.DocumentHash([]byte("bench-salt-00000"), "D", txID),
		Checks:   []txreport.Check{{Name: "passive_authentication", OK: true}},
		Scores:   []txreport.Score{txreport.NewScore("match", 0.8, 0.6)},
		Decision: txreport.Approved, Auth: txreport.Auth{Mode: txreport.AuthOffline},
	}
}
