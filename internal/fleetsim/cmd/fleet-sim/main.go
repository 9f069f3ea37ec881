// Command fleet-sim runs N simulated kiosks against a broker, K kioskhub
// processes and PostgreSQL on this machine, and prints one line of
// results (`make fleet-sim`); with -chaos it kills hub instances, the
// broker and database connections at random meanwhile (`make
// chaos-fleet`). It exits 1 unless every committed report is at the hub
// exactly once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/internal/fleetsim"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/pgtest"
	"kiosk/provisioning/rabbittest"
)

func main() { os.Exit(run()) }

func run() int {
	kiosks := flag.Int("kiosks", 1000, "simulated kiosks")
	hubs := flag.Int("hubs", 2, "kioskhub instances")
	rate := flag.Float64("rate", 0, "payments per second across the fleet (default kiosks/60)")
	dur := flag.Duration("duration", 5*time.Minute, "payment phase after the connect storm")
	storm := flag.Duration("storm", 10*time.Second, "window over which the kiosks first connect (jitter)")
	hubBin := flag.String("hub-bin", "bin/kioskhub", "kioskhub binary")
	brokerKind := flag.String("broker", "mosquitto", "mosquitto, or rabbitmq (a 3-node cluster; hubs consume over AMQP)")
	chaos := flag.Bool("chaos", false, "kill hub instances, the broker (a RabbitMQ node) and database connections at random")
	killNode := flag.Bool("kill-node", false, "with -broker rabbitmq: SIGKILL one node halfway through the payment phase, for good")
	minPayments := flag.Int("min-payments", 0, "with -chaos: keep paying until this many are committed")
	verbose := flag.Bool("v", false, "log warnings of kiosks and hubs")
	flag.Parse()

	// Each kiosk holds a socket; children (mosquitto) inherit the limit we
	// set, which Go would otherwise reset for them.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	lvl := slog.LevelError
	if *verbose {
		lvl = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "fleet-sim-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	var broker *mqtttest.Broker
	var cluster *rabbittest.Cluster
	var kioskBrokers, amqpURLs []string
	switch *brokerKind {
	case "mosquitto":
		if err := os.MkdirAll(filepath.Join(dir, "mosquitto"), 0o700); err != nil {
			return fail(err)
		}
		if broker, err = mqtttest.Launch(filepath.Join(dir, "mosquitto"), "max_queued_messages 100000"); err != nil {
			return fail(fmt.Errorf("mosquitto: %w", err))
		}
		defer broker.Stop()
		kioskBrokers = []string{broker.URL()}
	case "rabbitmq":
		c, err := rabbittest.Launch(3, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
		if err != nil {
			return fail(fmt.Errorf("rabbitmq: %w", err))
		}
		defer c.Close()
		cluster = c
		kioskBrokers, amqpURLs = c.MQTTURLs(), c.AMQPURLs()
	default:
		return fail(fmt.Errorf("-broker %q: mosquitto or rabbitmq", *brokerKind))
	}
	if *killNode && cluster == nil {
		return fail(errors.New("-kill-node needs -broker rabbitmq"))
	}
	pg, err := pgtest.Launch()
	if err != nil {
		return fail(fmt.Errorf("postgresql: %w", err))
	}
	defer pg.Close()
	dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		return fail(err)
	}
	hubKey, err := devkey.Create(filepath.Join(dir, "hubkey"), filepath.Join(dir, "hubkey", "unused"), "hub-auth")
	if err != nil {
		return fail(err)
	}
	hubKeys, err := txreport.LoadKeyringFile(hubKey.Cert)
	if err != nil {
		return fail(err)
	}
	devices := filepath.Join(dir, "devices")
	fleet, err := fleetsim.Prepare(fleetsim.Config{Kiosks: *kiosks, Rate: *rate, StormWindow: *storm, Brokers: kioskBrokers,
		Dir: filepath.Join(dir, "kiosks"), DevicesDir: devices, HubKeys: hubKeys, Log: log})
	if err != nil {
		return fail(err)
	}
	defer fleet.Stop()
	spec := fleetsim.HubSpec{Bin: *hubBin, Dir: dir, DSN: dsn, Brokers: kioskBrokers, AMQPURLs: amqpURLs, Devices: devices, Key: hubKey, MaxConns: 8, Workers: 8}
	var procs []*fleetsim.HubProc
	for i := range *hubs {
		h, err := fleetsim.StartHub(ctx, spec, i)
		if err != nil {
			return fail(err)
		}
		defer h.Stop()
		procs = append(procs, h)
	}

	stormCtx, cancel := context.WithTimeout(ctx, *storm+2*time.Minute)
	took, err := fleet.Start(stormCtx)
	cancel()
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "fleet-sim: %d kiosks connected in %.1f s; paying for %s\n", *kiosks, took.Seconds(), *dur)

	chaosCtx, stopChaos := context.WithCancel(ctx)
	chaosDone := make(chan chaosCount, 1)
	if *chaos {
		strike := func() { strikeMosquitto(broker) }
		if cluster != nil {
			strike = func() { strikeNode(cluster) }
		}
		go func() { chaosDone <- runChaos(chaosCtx, procs, strike, pg, dsn) }()
	} else {
		chaosDone <- chaosCount{}
	}
	if *killNode {
		// A node lost for good mid-run: the figure the issue asks for is
		// the fleet's latency on the two nodes left.
		t := time.AfterFunc(*dur/2, func() {
			n := rand.IntN(3)
			cluster.Kill(n)
			fmt.Fprintf(os.Stderr, "fleet-sim: killed %s (SIGKILL) at %s into the payment phase\n", cluster.Node(n).Name, *dur/2)
		})
		defer t.Stop()
	}
	res, err := fleet.Pay(ctx, *dur)
	for err == nil && *chaos && res.Payments < *minPayments && ctx.Err() == nil {
		var more *fleetsim.Result
		if more, err = fleet.Pay(ctx, 30*time.Second); err == nil {
			res.Merge(more)
		}
	}
	stopChaos()
	cc := <-chaosDone
	if err != nil {
		return fail(err)
	}
	// Everything back up before the drain.
	for _, h := range procs {
		if _, herr := h.Health(ctx); herr != nil {
			if err := h.Restart(ctx); err != nil {
				return fail(err)
			}
		}
	}
	if err := fleet.Drain(ctx, res); err != nil {
		return fail(err)
	}
	v, err := fleetsim.Check(ctx, dsn, res.Committed)
	if err != nil {
		return fail(err)
	}
	q := func(ds []time.Duration, p float64) float64 {
		return float64(fleetsim.Quantile(ds, p)) / float64(time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "fleet-sim: %d payments (%d online, %d arrivals found no idle kiosk), %d acks refused, %d redeliveries deduplicated, %d extra at hub\n",
		res.Payments, res.Online, res.Skipped, res.AcksRefused, v.Redeliveries, v.Extra)
	ok := v.Lost == 0 && v.Duplicates == 0 && v.AtHub == v.Committed && v.Extra == 0
	if *chaos {
		fmt.Fprintf(os.Stderr, "chaos-fleet: %d hub kills, %d hub stalls, %d broker kills, %d database connection kills\n", cc.hubs, cc.stalls, cc.brokers, cc.pgConns)
		fmt.Printf("chaos-fleet: committed %d, at hub %d, duplicates %d, lost %d, redeliveries %d\n",
			v.Committed, v.AtHub, v.Duplicates, v.Lost, v.Redeliveries)
		if v.Redeliveries == 0 {
			fmt.Fprintln(os.Stderr, "chaos-fleet: no redelivery was deduplicated: the kills missed the publish→ack window")
			ok = false
		}
	} else {
		fmt.Printf("fleet-sim: %d kiosks, %d hubs, %.1f payments/s for %.1f min, connect storm %.1f s, auth p50 %.1f ms p99 %.1f ms, report→ack p50 %.1f ms p99 %.1f ms, lost %d, duplicates %d\n",
			*kiosks, *hubs, res.Rate, res.Phase.Minutes(), took.Seconds(), q(res.Auth, 0.5), q(res.Auth, 0.99), q(res.Ack, 0.5), q(res.Ack, 0.99), v.Lost, v.Duplicates)
	}
	if !ok {
		return 1
	}
	return 0
}

type chaosCount struct{ hubs, stalls, brokers, pgConns int }

// runChaos strikes every few seconds until ctx ends: kills a hub instance
// (SIGKILL, back after 1–3 s), stalls one for 12 s, kills the broker
// (SIGKILL or SIGTERM, back after 0.2–2 s) or every database connection
// of the hubs.
func runChaos(ctx context.Context, hubs []*fleetsim.HubProc, strikeBroker func(), pg *pgtest.Server, dsn string) chaosCount {
	var c chaosCount
	db := dsn[len(dsn)-len("t1"):] // pgtest names databases t1, t2…
	for {
		select {
		case <-ctx.Done():
			return c
		case <-time.After(time.Duration(2000+rand.IntN(3000)) * time.Millisecond):
		}
		switch rand.IntN(4) {
		case 0:
			// Past the kiosks' resend time, within the broker's keepalive
			// (1.5 × 10 s), so the hub wakes still connected.
			hubs[rand.IntN(len(hubs))].Stall(12 * time.Second)
			c.stalls++
		case 1:
			h := hubs[rand.IntN(len(hubs))]
			h.Kill()
			c.hubs++
			time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
			if err := h.Restart(context.Background()); err != nil {
				fmt.Fprintln(os.Stderr, "chaos: hub restart:", err)
			}
		case 2:
			strikeBroker()
			c.brokers++
		case 3:
			if _, err := pg.TerminateConnections(context.Background(), db); err == nil {
				c.pgConns++
			}
		}
	}
}

// strikeMosquitto kills the broker (SIGKILL or SIGTERM) and brings it back
// after 0.2–2 s.
func strikeMosquitto(b *mqtttest.Broker) {
	if rand.IntN(2) == 0 {
		b.Kill()
	} else {
		b.Stop()
	}
	time.Sleep(time.Duration(200+rand.IntN(1800)) * time.Millisecond)
	if err := b.Restart(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: broker restart:", err)
	}
}

// strikeNode SIGKILLs one RabbitMQ node and restarts it after 1–3 s (a
// restart takes several seconds more); one node down at a time, so the
// quorum queues keep their majority.
func strikeNode(c *rabbittest.Cluster) {
	n := rand.IntN(len(c.Nodes()))
	c.Kill(n)
	time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
	if err := c.Restart(n); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: node restart:", err)
	}
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "fleet-sim:", err)
	return 2
}
