package fleetsim_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/firmware/txreport"
	"kiosk/internal/fleetsim"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/pgtest"
)

// A small fleet end to end, as `make fleet-sim` runs a large one: 20
// kiosks, two kioskhub processes, mosquitto and PostgreSQL; every payment
// committed is at the hub once, and the latencies were measured.
func TestSmallFleet(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kioskhub")
	if out, err := exec.Command("go", "build", "-o", bin, "kiosk/provisioning/cmd/kioskhub").CombinedOutput(); err != nil {
		t.Fatalf("build kioskhub: %v\n%s", err, out)
	}
	broker := mqtttest.StartMosquitto(t)
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	hubKey, err := devkey.Create(filepath.Join(dir, "hubkey"), filepath.Join(dir, "hubkey", "unused"), "hub-auth")
	if err != nil {
		t.Fatal(err)
	}
	hubKeys, err := txreport.LoadKeyringFile(hubKey.Cert)
	if err != nil {
		t.Fatal(err)
	}
	devices := filepath.Join(dir, "devices")
	fleet, err := fleetsim.Prepare(fleetsim.Config{Kiosks: 20, Rate: 10, StormWindow: time.Second, Brokers: []string{broker.URL()},
		Dir: filepath.Join(dir, "kiosks"), DevicesDir: devices, HubKeys: hubKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 2 {
		h, err := fleetsim.StartHub(ctx, fleetsim.HubSpec{Bin: bin, Dir: dir, DSN: dsn, Brokers: []string{broker.URL()}, Devices: devices, Key: hubKey}, i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Stop)
	}
	if _, err := fleet.Start(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := fleet.Pay(ctx, 6*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Drain(ctx, res); err != nil {
		t.Fatal(err)
	}
	v, err := fleetsim.Check(ctx, dsn, res.Committed)
	if err != nil {
		t.Fatal(err)
	}
	if res.Payments < 20 || v.AtHub != res.Payments || v.Lost != 0 || v.Duplicates != 0 || v.Extra != 0 {
		t.Fatalf("payments %d, verdict %+v", res.Payments, v)
	}
	if len(res.Auth) != res.Payments || len(res.Ack) != res.Payments || res.Online != res.Payments || res.AcksRefused != 0 {
		t.Fatalf("measured %d auths, %d acks for %d payments (%d online, %d acks refused)", len(res.Auth), len(res.Ack), res.Payments, res.Online, res.AcksRefused)
	}
	t.Logf("%d payments, auth p50 %s, ack p50 %s", res.Payments, fleetsim.Quantile(res.Auth, 0.5), fleetsim.Quantile(res.Ack, 0.5))
}
