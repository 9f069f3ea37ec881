// Command otademo is `make demo-ota`: signed firmware updates end to end
// on loop-device slots. mosquitto and kioskhub (in process, bbolt store,
// operations key) run as in demo-fleet; the kiosk is a Machine from
// firmware/update/rauctest: two ext4 slots on loop devices, RAUC's custom
// boot loader backend, a private system D-Bus and rauc service, and a boot
// loader that boots the slot the backend's attempts counters choose. Each
// boot mounts that slot read-only and runs the kioskd found in it — the
// binary that runs always comes from the slot.
//
// The operator sends update_firmware jobs through the hub's API: 2.0.0
// (good), 3.0.0 "v3-broken" (its kioskd hangs before READY=1), a tampered
// bundle, one signed by another key, and 1.0.0 (older). Every figure of the
// last line is read from the hub's executions and the machine's boots:
//
//	ota: v1→v2 installed and committed; v3-broken rolled back to v2 after 3 attempts; tampered refused; downgrade refused
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiosk/firmware/jobwire"
	"kiosk/firmware/update/rauctest"
	"kiosk/internal/demohub"
	"kiosk/internal/operatorapi"
	"kiosk/provisioning/devkey"
	"kiosk/provisioning/issuer"
)

const device = "kiosk-ota-01"

func main() {
	kioskd := flag.String("kioskd", "bin/kioskd", "the kioskd binary the firmware images carry")
	models := flag.String("models", ".cache/models", "face models the images carry (make models)")
	media := flag.String("media", ".cache/testdata/media", "test media: the simulated camera's video (make testdata)")
	keep := flag.Bool("keep", false, "keep the working directory (logs, images)")
	flag.Parse()
	if err := run(*kioskd, *models, *media, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo-ota:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("demo-ota: "+format+"\n", a...) }

func run(kioskd, models, media string, keep bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (loop devices, mount)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "demo-ota-")
	if err != nil {
		return err
	}
	if keep {
		step("working directory %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}

	// Release PKI, images and bundles.
	pki, err := rauctest.NewPKI(filepath.Join(dir, "release"), "Example Bank")
	if err != nil {
		return err
	}
	rogue, err := rauctest.NewPKI(filepath.Join(dir, "rogue"), "Someone Else")
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(kioskd)
	if err != nil {
		return fmt.Errorf("kioskd binary: %w", err)
	}
	broken := []byte("#!/bin/sh\n# firmware 3.0.0: a build that hangs before it is ready\nexec sleep 3600\n")
	video, err := filepath.Abs(filepath.Join(media, "franck.mp4"))
	if err != nil {
		return err
	}
	images := map[string]string{}
	for _, v := range []struct {
		version string
		kioskd  []byte
	}{{"1.0.0", bin}, {"2.0.0", bin}, {"3.0.0", broken}} {
		tree := filepath.Join(dir, "tree-"+v.version)
		if err := writeTree(tree, v.version, v.kioskd, models); err != nil {
			return err
		}
		images[v.version] = filepath.Join(dir, "rootfs-"+v.version+".ext4")
		if err := rauctest.RootFS(ctx, tree, images[v.version]); err != nil {
			return err
		}
		os.RemoveAll(tree)
	}
	bundles := filepath.Join(dir, "www")
	if err := os.MkdirAll(bundles, 0o755); err != nil {
		return err
	}
	for _, b := range []struct {
		name    string
		pki     rauctest.PKI
		version string
	}{{"v1.raucb", pki, "1.0.0"}, {"v2.raucb", pki, "2.0.0"}, {"v3-broken.raucb", pki, "3.0.0"}, {"rogue.raucb", rogue, "2.1.0"}} {
		if err := rauctest.Bundle(ctx, b.pki, rauctest.Compatible, b.version, images[b.version[:1]+".0.0"], filepath.Join(bundles, b.name)); err != nil {
			return err
		}
	}
	good, err := os.ReadFile(filepath.Join(bundles, "v2.raucb"))
	if err != nil {
		return err
	}
	tampered := bytes.Clone(good)
	tampered[len(tampered)/3] ^= 0x40
	if err := os.WriteFile(filepath.Join(bundles, "tampered.raucb"), tampered, 0o644); err != nil {
		return err
	}
	www := httptest.NewServer(http.FileServer(http.Dir(bundles)))
	defer www.Close()
	step("bundles signed by the release key: 1.0.0, 2.0.0, 3.0.0 (v3-broken); a tampered copy of 2.0.0; 2.1.0 signed by another key")

	// The hub.
	h, err := demohub.New(dir)
	if err != nil {
		return err
	}
	defer h.Close()
	// The data partition (survives updates), inside the system's directory.
	kdir := filepath.Join(dir, "sys", "data")
	if _, err := devkey.Create(kdir, h.Devices, device); err != nil {
		return err
	}
	_, trust, err := issuer.Issue(issuer.Options{DocNumber: "C01X00T47", Surname: "DEMO", Given: "OTA", Nationality: "UTO", Sex: "F",
		Birth: "640812", Expiry: time.Now().AddDate(5, 0, 0).Format("060102"), CAN: "123456", PIN: "2468", Photo: photo()})
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if err := trust.WriteDir(filepath.Join(kdir, "trust")); err != nil {
		return err
	}
	if err := h.Serve(ctx, "demo-ota", nil); err != nil {
		return err
	}

	// The machine: slot A holds 1.0.0.
	sysLog, err := os.Create(filepath.Join(dir, "rauc.log"))
	if err != nil {
		return err
	}
	defer sysLog.Close()
	sys, err := rauctest.Start(ctx, rauctest.Options{Dir: filepath.Join(dir, "sys"), Keyring: pki.CA, Initial: images["1.0.0"],
		SlotSize: slotSize(images), Log: sysLog})
	if err != nil {
		return err
	}
	defer func() {
		if err := sys.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo-ota: close the slots:", err)
		}
	}()
	reboot := filepath.Join(dir, "reboot-request")
	conf := filepath.Join(kdir, "kioskd.toml")
	camera := fmt.Sprintf(`[camera]
backend = "sim"
path = %q
fps = 0.0
[face]
models_dir = "usr/share/kioskd/models"   # in the booted slot (kioskd runs with the slot as its directory)
`, video)
	extra := fmt.Sprintf(`[log]
level = "info"
format = "text"
[update]
keyring = %q
rauc_conf = %q
commit_within = "60s"
reboot_command = ["/bin/sh", "-c", "touch %s"]
`, pki.CA, sys.Conf, reboot)
	if err := os.WriteFile(conf, h.KioskConfig(device, kdir, camera, extra), 0o644); err != nil {
		return err
	}
	kLog, err := os.Create(filepath.Join(dir, "kioskd.log"))
	if err != nil {
		return err
	}
	defer kLog.Close()
	m := &rauctest.Machine{Sys: sys, Args: []string{"--config", conf}, StartTimeout: 30 * time.Second, RebootRequest: reboot, Output: kLog}
	mctx, mstop := context.WithCancel(ctx)
	merr := make(chan error, 1)
	go func() {
		err := m.Run(mctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo-ota: machine:", err)
			cancel() // nothing more can happen: end the waits
		}
		merr <- err
	}()
	machineDone := false
	defer func() { // before the slots are closed
		if !machineDone {
			mstop()
			<-merr
		}
	}()

	api := h.API
	if err := operatorapi.WaitFor(ctx, "the kiosk online", func() bool {
		var devs []struct {
			Device string `json:"device"`
			Online bool   `json:"online"`
		}
		if api.Call(ctx, "GET", "/fleet/devices", nil, &devs) != nil {
			return false
		}
		for _, d := range devs {
			if d.Online {
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	step("kiosk booted slot %s (1.0.0) and is online", m.Boots()[0].Slot)
	doc := func(name string, downgrade bool) (string, error) {
		b, err := os.ReadFile(filepath.Join(bundles, name))
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(b)
		d, _ := json.Marshal(map[string]any{"url": www.URL + "/" + name, "size": len(b), "sha256": hex.EncodeToString(sum[:]), "allow_downgrade": downgrade})
		return string(d), nil
	}
	update := func(name string) (operatorapi.Execution, error) {
		d, err := doc(name, false)
		if err != nil {
			return operatorapi.Execution{}, err
		}
		var j struct {
			ID string `json:"id"`
		}
		if err := api.Call(ctx, "POST", "/fleet/jobs", map[string]any{"kind": jobwire.KindUpdateFirmware, "devices": []string{device}, "ttl": "30m", "doc": d}, &j); err != nil {
			return operatorapi.Execution{}, err
		}
		jctx, jcancel := context.WithTimeout(ctx, 5*time.Minute)
		defer jcancel()
		es, err := api.Wait(jctx, j.ID)
		if err != nil || len(es) != 1 {
			return operatorapi.Execution{}, fmt.Errorf("job %s: %v (%d executions)", j.ID, err, len(es))
		}
		return es[0], nil
	}

	// 1. v1 → v2.
	n0 := len(m.Boots())
	e2, err := update("v2.raucb")
	if err != nil {
		return err
	}
	boots := m.Boots()[n0-1:]
	st, err := sys.State()
	if err != nil {
		return err
	}
	v2ok := e2.Status == jobwire.StatusSucceeded && len(boots) == 2 && boots[1].Slot == "B" && boots[1].Ready &&
		strings.Contains(e2.Result, `"version":"2.0.0"`) && st.Order[0] == "B" && st.Left["B"] == rauctest.Attempts
	step("2.0.0: job %s %s%s; boots %s; boot state %v", e2.Status, e2.Reason, e2.Result, bootList(boots), st)

	// 2. v3-broken: installed into A, never ready, rolled back to B.
	n0 = len(m.Boots())
	e3, err := update("v3-broken.raucb")
	if err != nil {
		return err
	}
	boots = m.Boots()[n0-1:]
	attempts := 0
	for _, b := range boots[1:] {
		if b.Slot == "A" && !b.Ready {
			attempts++
		}
	}
	last := boots[len(boots)-1]
	v3rolled := e3.Status == jobwire.StatusFailed && strings.HasPrefix(e3.Reason, jobwire.ReasonRolledBack) && last.Slot == "B" && last.Ready
	step("3.0.0 (v3-broken): job %s: %s; boots %s", e3.Status, e3.Reason, bootList(boots))

	// 3. Refused before install: tampered, another key, older.
	n0 = len(m.Boots())
	before, err := slotHashes(sys)
	if err != nil {
		return err
	}
	refused := map[string]operatorapi.Execution{}
	for _, name := range []string{"tampered.raucb", "rogue.raucb", "v1.raucb"} {
		if refused[name], err = update(name); err != nil {
			return err
		}
		step("%s: job %s: %s", name, refused[name].Status, refused[name].Reason)
	}
	after, err := slotHashes(sys)
	if err != nil {
		return err
	}
	unchanged := before == after && len(m.Boots()) == n0
	step("slots unchanged by the refused bundles: %v; no reboot: %v", before == after, len(m.Boots()) == n0)
	isRefused := func(name, reason string) bool {
		e := refused[name]
		return e.Status == jobwire.StatusRejected && strings.HasPrefix(e.Reason, reason) && unchanged
	}
	tamperedRefused := isRefused("tampered.raucb", jobwire.ReasonBundleSignature) && isRefused("rogue.raucb", jobwire.ReasonBundleSignature)
	downgradeRefused := isRefused("v1.raucb", jobwire.ReasonDowngrade)

	mstop()
	merrV := <-merr
	machineDone = true
	if merrV != nil {
		return fmt.Errorf("machine: %w", merrV)
	}
	if !v2ok || !v3rolled || attempts != rauctest.Attempts || !tamperedRefused || !downgradeRefused {
		return fmt.Errorf("not as expected: v2 committed %v, v3 rolled back %v after %d attempts, tampered refused %v, downgrade refused %v (logs: -keep)",
			v2ok, v3rolled, attempts, tamperedRefused, downgradeRefused)
	}
	fmt.Printf("ota: v1→v2 installed and committed; v3-broken rolled back to v2 after %d attempts; tampered refused; downgrade refused\n", attempts)
	return nil
}

// writeTree lays out a root file system: kioskd, the face models and the
// firmware version file kioskd reads (../lib/kioskd/firmware-version
// beside it).
func writeTree(root, version string, kioskd []byte, models string) error {
	for _, d := range []string{"usr/bin", "usr/lib/kioskd", "usr/share/kioskd/models", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(models)
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(models, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "usr/share/kioskd/models", e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/kioskd"), kioskd, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/kioskd/firmware-version"), []byte(version+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("NAME=\"Kiosk firmware\"\nVERSION_ID="+version+"\n"), 0o644)
}

// slotSize fits the largest image with room to spare.
func slotSize(images map[string]string) int64 {
	var n int64
	for _, p := range images {
		if fi, err := os.Stat(p); err == nil && fi.Size() > n {
			n = fi.Size()
		}
	}
	return (n*3/2)>>20<<20 + 32<<20
}

func slotHashes(sys *rauctest.System) (string, error) {
	a, err := sys.SlotSHA256("A")
	if err != nil {
		return "", err
	}
	b, err := sys.SlotSHA256("B")
	if err != nil {
		return "", err
	}
	st, err := sys.State()
	return fmt.Sprintf("A %s B %s %v", a[:12], b[:12], st), err
}

func bootList(bs []rauctest.Boot) string {
	var parts []string
	for _, b := range bs {
		r := "ready"
		if !b.Ready {
			r = "not ready"
		}
		end := b.End
		if end == "" {
			end = "running"
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", b.Slot, r, end))
	}
	return strings.Join(parts, " → ")
}

// photo is a plain grey JPEG: the demo's card is never read, only its
// issuer's CSCA and CRL are used.
func photo() []byte {
	img := image.NewGray(image.Rect(0, 0, 120, 160))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	var b bytes.Buffer
	_ = jpeg.Encode(&b, img, nil)
	return b.Bytes()
}
