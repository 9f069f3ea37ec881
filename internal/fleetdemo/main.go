// Command fleetdemo is `make demo-fleet`: fleet operations end to end on
// this machine. mosquitto, kioskhub (in process, bbolt store, an
// authorization and a separate operations key, a group of five) and five
// kioskd daemons (the real daemon package, simulated devices) run
// together; the operator API runs a group job, a configuration change with
// one invalid value then a valid one, a trust bundle, and a rogue client
// publishes a forged ack to every kiosk. Every number of the last line is
// counted from the hub's executions and the kiosks' own health:
//
//	fleet: 5 kiosks, job 5/5 succeeded, config v2 applied 5/5 (invalid rejected 5/5), bundle v2 5/5, forged ack ignored 5/5
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kiosk/firmware/config"
	"kiosk/firmware/daemon"
	"kiosk/firmware/hub"
	"kiosk/firmware/jobwire"
	"kiosk/firmware/txflow"
	"kiosk/firmware/txreport"
	"kiosk/internal/demohub"
	"kiosk/internal/operatorapi"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/issuer"
)

const kiosks = 5

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo-fleet:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("demo-fleet: "+format+"\n", a...) }

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "demo-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// mosquitto drops root for its own user: it must reach its files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	h, err := demohub.New(dir)
	if err != nil {
		return err
	}
	defer h.Close()
	step("mosquitto on %s", h.Broker.URL())

	// One CSCA for the branch (the trust store every kiosk starts with).
	_, trust, err := issuer.Issue(issuer.Options{DocNumber: "C01X00T47", Surname: "DEMO", Given: "FLEET", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468", Photo: photo()})
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}

	var ids []string
	var confs []config.Config
	for i := range kiosks {
		id := fmt.Sprintf("kiosk-%02d", i+1)
		ids = append(ids, id)
		kdir := filepath.Join(dir, id)
		if _, err := devkey.Create(kdir, h.Devices, id); err != nil {
			return err
		}
		if err := trust.WriteDir(filepath.Join(kdir, "trust")); err != nil {
			return err
		}
		c, err := config.Parse(h.KioskConfig(id, kdir, "", ""))
		if err != nil {
			return fmt.Errorf("%s config: %w", id, err)
		}
		confs = append(confs, c)
	}

	if err := h.Serve(ctx, "demo-fleet", map[string][]string{"branch-1": ids}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	step("kioskhub serving (operator API on %s)", h.Addr)

	// The five kiosks: the real daemon, simulated devices.
	kctx, kstop := context.WithCancel(ctx)
	defer kstop()
	var ds []*daemon.Daemon
	for i, c := range confs {
		d, err := daemon.New(c, daemon.Options{Version: "demo"})
		if err != nil {
			return fmt.Errorf("%s: %w", ids[i], err)
		}
		ds = append(ds, d)
		wg.Go(func() { _ = d.Run(kctx) })
	}
	api := h.API
	if err := operatorapi.WaitFor(ctx, "five kiosks online", func() bool {
		var devs []struct {
			Online bool `json:"online"`
		}
		if api.Call(ctx, "GET", "/fleet/devices", nil, &devs) != nil {
			return false
		}
		n := 0
		for _, d := range devs {
			if d.Online {
				n++
			}
		}
		return n == kiosks
	}); err != nil {
		return err
	}
	step("%d kiosks online", kiosks)

	// 1. A group job.
	jobOK, err := jobOutcome(ctx, api, map[string]any{"kind": jobwire.KindHealth, "group": "branch-1", "ttl": "5m"}, "")
	if err != nil {
		return err
	}
	step("group job (health): %d/%d succeeded", jobOK, kiosks)

	// 2. Configuration: v1 with an invalid value, then v2.
	invalidRejected, err := configOutcome(ctx, api, map[string]any{"policy.time_extensions": 99, "policy.card_timeout": "45s"},
		jobwire.StatusRejected, "offending keys policy.time_extensions")
	if err != nil {
		return err
	}
	step("config v1 (time_extensions = 99): rejected by %d/%d, naming the key", invalidRejected, kiosks)
	if _, err := configOutcome(ctx, api, map[string]any{"policy.card_timeout": "45s", "policy.time_extensions": 2}, jobwire.StatusSucceeded, ""); err != nil {
		return err
	}
	configApplied := 0
	for _, d := range ds {
		if v, ok := d.Health().Components["config"].Info.(map[string]any); ok && v["version"] == 2 {
			configApplied++
		}
	}
	step("config v2: applied by %d/%d (their health reports v2)", configApplied, kiosks)

	// 3. A trust bundle v2: the same CSCA with a fresh CRL.
	files := map[string][]byte{}
	bdir := filepath.Join(dir, "bundle")
	if err := trust.WriteDir(bdir); err != nil {
		return err
	}
	ents, err := os.ReadDir(bdir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if files[e.Name()], err = os.ReadFile(filepath.Join(bdir, e.Name())); err != nil {
			return err
		}
	}
	now := time.Now()
	crl, err := issuer.NewCRL(trust.CSCA, trust.CSCAKey, issuer.CRLOptions{ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(7 * 24 * time.Hour), Number: 2})
	if err != nil {
		return err
	}
	files["csca.crl"] = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})
	doc, _ := json.Marshal(map[string]any{"version": 2, "files": files})
	if _, err := jobOutcome(ctx, api, map[string]any{"kind": jobwire.KindTrustBundle, "group": "branch-1", "ttl": "5m", "doc": string(doc)}, ""); err != nil {
		return err
	}
	bundleOK := 0
	for _, d := range ds {
		if in, ok := d.Health().Components["eid"].Info.(daemon.TrustInfo); ok && in.Bundle == 2 {
			bundleOK++
		}
	}
	step("trust bundle v2: installed by %d/%d", bundleOK, kiosks)

	// 4. A forged ack to every kiosk (sealed by a key that is not the hub's).
	rogue, err := newRogue()
	if err != nil {
		return err
	}
	before := make([]uint64, kiosks)
	for i, d := range ds {
		before[i] = txStatus(d).AcksRefused
	}
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(h.Broker.URL()).SetClientID("rogue"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("rogue client: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	for _, id := range ids {
		b, err := rogue.Seal(hub.TxAck{TxID: "tx-forged", Terminal: id, ReportSHA256: strings.Repeat("0", 64), Status: "applied"})
		if err != nil {
			return err
		}
		if tok := pub.Publish("kiosk/v1/"+id+"/"+hub.TopicTxAck, 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("rogue publish: %v", tok.Error())
		}
	}
	forgedIgnored := 0
	_ = operatorapi.WaitFor(ctx, "the forged acks refused", func() bool {
		forgedIgnored = 0
		for i, d := range ds {
			if txStatus(d).AcksRefused > before[i] {
				forgedIgnored++
			}
		}
		return forgedIgnored == kiosks
	})
	step("forged ack: refused by %d/%d (counted in their health)", forgedIgnored, kiosks)

	kstop()
	fmt.Printf("fleet: %d kiosks, job %d/%d succeeded, config v2 applied %d/%d (invalid rejected %d/%d), bundle v2 %d/%d, forged ack ignored %d/%d\n",
		kiosks, jobOK, kiosks, configApplied, kiosks, invalidRejected, kiosks, bundleOK, kiosks, forgedIgnored, kiosks)
	if jobOK != kiosks || configApplied != kiosks || invalidRejected != kiosks || bundleOK != kiosks || forgedIgnored != kiosks {
		return fmt.Errorf("not every kiosk did what it should")
	}
	return nil
}

func txStatus(d *daemon.Daemon) txflow.Status {
	s, _ := d.Health().Components["transactions"].Info.(txflow.Status)
	return s
}

// jobOutcome creates a job and counts the executions that succeeded.
func jobOutcome(ctx context.Context, a *operatorapi.Client, req map[string]any, _ string) (int, error) {
	var j struct {
		ID string `json:"id"`
	}
	if err := a.Call(ctx, "POST", "/fleet/jobs", req, &j); err != nil {
		return 0, err
	}
	es, err := a.Wait(ctx, j.ID)
	n := 0
	for _, e := range es {
		if e.Status == jobwire.StatusSucceeded {
			n++
		} else {
			step("  %s: %s %s", e.Device, e.Status, e.Reason)
		}
	}
	return n, err
}

// configOutcome sets the next desired version and counts executions that
// ended in status with reason containing want.
func configOutcome(ctx context.Context, a *operatorapi.Client, settings map[string]any, status, want string) (int, error) {
	var out struct {
		Version int `json:"version"`
		Job     struct {
			ID string `json:"id"`
		} `json:"job"`
	}
	if err := a.Call(ctx, "POST", "/fleet/config", map[string]any{"group": "branch-1", "settings": settings}, &out); err != nil {
		return 0, err
	}
	es, err := a.Wait(ctx, out.Job.ID)
	n := 0
	for _, e := range es {
		if e.Status == status && strings.Contains(e.Reason, want) {
			n++
		} else {
			step("  %s: %s %s", e.Device, e.Status, e.Reason)
		}
	}
	return n, err
}

func newRogue() (*txreport.Signer, error) {
	k, c, err := devkey.Generate("hub-auth", time.Hour)
	if err != nil {
		return nil, err
	}
	return txreport.NewSigner(k, c)
}

// photo is a plain grey JPEG: the demo's card is never read, only its
// issuer's CSCA and CRL are used.
func photo() []byte {
	img := image.NewGray(image.Rect(0, 0, 120, 160))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	img.Set(0, 0, color.Gray{Y: 0})
	var b bytes.Buffer
	_ = jpeg.Encode(&b, img, nil)
	return b.Bytes()
}
