// Package demohub is the bank side of the fleet and OTA demos on one
// machine: mosquitto, kioskhub in process (bbolt store, an authorization
// and a separate operations key, the operator API with a bearer token) and
// the configuration of a simulated kiosk that reaches it.
package demohub

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"kiosk/firmware/hub/mqtttest"
	"kiosk/internal/operatorapi"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
)

// Hub is a running demo hub. Close stops it.
type Hub struct {
	Broker  *mqtttest.Broker
	Auth    devkey.Files // authorization key: seals answers and acks
	Ops     devkey.Files // operations key: signs jobs
	Devices string       // the directory of enrolled device certificates
	Addr    string       // the operator API
	API     *operatorapi.Client

	dir  string
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New runs mosquitto under dir (which mosquitto, dropping root, must be
// able to enter) and makes the hub's keys. The kiosks' certificates go
// into Devices before Serve: kioskhub reads them when it starts.
func New(dir string) (_ *Hub, err error) {
	h := &Hub{dir: dir, Devices: filepath.Join(dir, "hub", "devices")}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	mqDir := filepath.Join(dir, "mosquitto")
	if err := os.MkdirAll(mqDir, 0o777); err != nil {
		return nil, err
	}
	if err := os.Chmod(mqDir, 0o777); err != nil {
		return nil, err
	}
	if h.Broker, err = mqtttest.Launch(mqDir, ""); err != nil {
		return nil, err
	}
	// The hub's keys: authorization and operations, never the same.
	if h.Auth, err = devkey.Create(filepath.Join(dir, "hub", "auth"), filepath.Join(dir, "unused"), "hub-auth"); err != nil {
		return nil, err
	}
	if h.Ops, err = devkey.Create(filepath.Join(dir, "hub", "ops"), filepath.Join(dir, "unused"), "hub-operations"); err != nil {
		return nil, err
	}
	return h, nil
}

// Serve runs kioskhub until Close; groups are its stored groups, name
// prefixes its error lines.
func (h *Hub) Serve(ctx context.Context, name string, groups map[string][]string) error {
	dir := h.dir
	token := strings.Repeat("demo-operator-", 4)
	tokenFile := filepath.Join(dir, "hub", "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h.Addr = ln.Addr().String()
	ln.Close()
	var conf strings.Builder
	fmt.Fprintf(&conf, `mode = "simulation"
[log]
level = "error"
format = "text"
[store]
kind = "bolt"
path = %q
[mqtt]
brokers = [%q]
[keys]
auth_key = %q
auth_cert = %q
operations_key = %q
operations_cert = %q
devices = %q
[http]
listen = %q
operator_token_file = %q
`, filepath.Join(dir, "hub", "hub.db"), h.Broker.URL(), h.Auth.Key, h.Auth.Cert, h.Ops.Key, h.Ops.Cert, h.Devices, h.Addr, tokenFile)
	if len(groups) > 0 {
		conf.WriteString("[fleet.groups]\n")
		for g, ids := range groups {
			js, _ := json.Marshal(ids)
			fmt.Fprintf(&conf, "%s = %s\n", g, js)
		}
	}
	cfg, err := hubd.Parse([]byte(conf.String()))
	if err != nil {
		return fmt.Errorf("kioskhub config: %w", err)
	}
	hubCtx, stop := context.WithCancel(ctx)
	h.stop = stop
	ready := make(chan struct{})
	h.wg.Go(func() {
		if err := hubd.Run(hubCtx, cfg, hubd.Options{Ready: func(string) { close(ready) }}); err != nil {
			fmt.Fprintf(os.Stderr, "%s: kioskhub: %v\n", name, err)
		}
	})
	select {
	case <-ready:
	case <-ctx.Done():
		return fmt.Errorf("kioskhub did not start")
	}
	h.API = &operatorapi.Client{Base: "http://" + h.Addr, Token: token}
	return nil
}

// Close stops kioskhub (once Serve ran), then mosquitto.
func (h *Hub) Close() {
	if h.stop != nil {
		h.stop()
	}
	h.wg.Wait()
	if h.Broker != nil {
		h.Broker.Stop()
	}
}

// KioskConfig is the kioskd configuration of a simulated kiosk whose key
// (id.key, id.crt), trust store, state and document salt are in kdir and
// which reaches this hub: simulated card reader and GPIO, no ECR. camera
// and extra are TOML tables put in as they are (camera "": no camera).
func (h *Hub) KioskConfig(id, kdir, camera, extra string) []byte {
	if camera == "" {
		camera = "[camera]\nbackend = \"none\"\n"
	}
	return fmt.Appendf(nil, `[device]
id = %q
mode = "simulation"
[http]
listen = "127.0.0.1:0"
%s[cardreader]
backend = "sim"
[gpio]
backend = "sim"
[eid]
trust_dir = %q
[ecr]
listen = ""
[transactions]
state_dir = %q
device_key = %q
device_cert = %q
doc_salt_file = %q
[hub]
brokers = [%q]
auth_cert = %q
operations_cert = %q
telemetry_every = "2s"
retry_max = "1s"
[shutdown]
timeout = "5s"
%s`, id, camera, filepath.Join(kdir, "trust"), filepath.Join(kdir, "state"), filepath.Join(kdir, id+".key"), filepath.Join(kdir, id+".crt"),
		filepath.Join(kdir, "doc-salt"), h.Broker.URL(), h.Auth.Cert, h.Ops.Cert, extra)
}
