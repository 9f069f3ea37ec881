package update_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"kiosk/firmware/update"
	"kiosk/firmware/update/rauctest"
)

// fixture is one A/B system on loop devices with rauc service, the
// bundles of the cases and an HTTP server for them, shared by the steps
// of TestUpdateOnLoopSlots (building it is the slow part).
type fixture struct {
	sys     *rauctest.System
	srv     *httptest.Server
	files   map[string][]byte // served name → content
	ranges  atomic.Int64      // requests that carried a Range header
	cutOnce sync.Map          // name → cut this download once at a third
	pki     rauctest.PKI
	dir     string
	version string // the running firmware version file
}

func tree(t *testing.T, dir, version string, filler int) string {
	t.Helper()
	root := filepath.Join(dir, "tree-"+version)
	for _, d := range []string{"usr/bin", "usr/lib/kioskd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.WriteFile(filepath.Join(root, "usr/bin/kioskd"), []byte("#!/bin/sh\necho kioskd "+version+"\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "usr/lib/kioskd/firmware-version"), []byte(version+"\n"), 0o644))
	if filler > 0 {
		// Incompressible: the install takes long enough to be cut off.
		b := make([]byte, filler)
		_, _ = rand.Read(b)
		must(t, os.WriteFile(filepath.Join(root, "usr/lib/kioskd/filler"), b, 0o644))
	}
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T) *fixture {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mount (CI runs as root)")
	}
	for _, tool := range []string{"rauc", "mksquashfs", "dbus-daemon", "mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing (make deps installs rauc, squashfs-tools, dbus, e2fsprogs): %v", tool, err)
		}
	}
	ctx := t.Context()
	dir := t.TempDir()
	f := &fixture{dir: dir, files: map[string][]byte{}}
	var err error
	f.pki, err = rauctest.NewPKI(filepath.Join(dir, "pki"), "Example Bank")
	must(t, err)
	rogue, err := rauctest.NewPKI(filepath.Join(dir, "rogue"), "Someone Else")
	must(t, err)
	img := func(version string, filler int) string {
		out := filepath.Join(dir, "rootfs-"+version+".ext4")
		must(t, rauctest.RootFS(ctx, tree(t, dir, version, filler), out))
		return out
	}
	bundle := func(name string, p rauctest.PKI, version, rootfs string) {
		out := filepath.Join(dir, name)
		must(t, rauctest.Bundle(ctx, p, rauctest.Compatible, version, rootfs, out))
		b, err := os.ReadFile(out)
		must(t, err)
		f.files[name] = b
	}
	v1, v2, v3 := img("1.0.0", 0), img("2.0.0", 24<<20), img("3.0.0", 0)
	bundle("v1.raucb", f.pki, "1.0.0", v1)
	bundle("v2.raucb", f.pki, "2.0.0", v2)
	bundle("v3.raucb", f.pki, "3.0.0", v3)
	bundle("rogue.raucb", rogue, "2.1.0", v2)
	// Tampered: one byte of the image changed after signing.
	tampered := bytes.Clone(f.files["v2.raucb"])
	tampered[len(tampered)/3] ^= 0x40
	f.files["tampered.raucb"] = tampered
	f.files["short.raucb"] = f.files["v3.raucb"][:len(f.files["v3.raucb"])/2]

	f.sys, err = rauctest.Start(ctx, rauctest.Options{Dir: filepath.Join(dir, "sys"), Keyring: f.pki.CA, Initial: v1, SlotSize: 96 << 20})
	must(t, err)
	t.Cleanup(func() {
		if err := f.sys.Close(); err != nil {
			t.Errorf("close the A/B system: %v", err)
		}
	})
	f.boot(t, "A")
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.version = filepath.Join(dir, "firmware-version")
	f.setVersion(t, "1.0.0")
	return f
}

// serve answers GET /NAME with Range support; a name in cutOnce is cut
// off after a third of its bytes the first time (a dropped link, or a
// kiosk killed mid-download: the partial file is what it left).
func (f *fixture) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	b, ok := f.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Range") != "" {
		f.ranges.Add(1)
	}
	if _, cut := f.cutOnce.LoadAndDelete(name); cut {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b[:len(b)/3])
		w.(http.Flusher).Flush()
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
			}
		}
		return
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

func (f *fixture) setVersion(t *testing.T, v string) {
	must(t, os.WriteFile(f.version, []byte(v+"\n"), 0o644))
}

// boot takes the boot loader's choice, checks it is want, and starts
// rauc service as on that slot.
func (f *fixture) boot(t *testing.T, want string) {
	t.Helper()
	got, err := f.sys.NextBoot()
	must(t, err)
	if got != want {
		t.Fatalf("the boot loader booted slot %s, want %s", got, want)
	}
	must(t, f.sys.StartService(t.Context(), got))
}

func (f *fixture) doc(name string) update.Doc {
	sum := sha256.Sum256(f.files[name])
	return update.Doc{URL: f.srv.URL + "/" + name, Size: int64(len(f.files[name])), SHA256: hex.EncodeToString(sum[:])}
}

func (f *fixture) updater(t *testing.T) *update.Updater {
	u, err := update.New(update.Options{Dir: filepath.Join(f.dir, "sys", "state", "update"), Keyring: f.pki.CA, MaxSize: 256 << 20,
		Rauc: f.sys.Rauc(), VersionFile: f.version})
	must(t, err)
	return u
}

// slots hashes both slots and reads the boot state: what must not change
// when a bundle is refused.
func (f *fixture) slots(t *testing.T) string {
	a, err := f.sys.SlotSHA256("A")
	must(t, err)
	b, err := f.sys.SlotSHA256("B")
	must(t, err)
	st, err := f.sys.State()
	must(t, err)
	return fmt.Sprintf("A=%s B=%s %v", a[:12], b[:12], st)
}

func nop(update.Progress) {}

// TestUpdateOnLoopSlots runs the cases in order on one system:
// bad input, refused bundles, a download cut off and resumed, an install
// cut off, a good update committed, a broken one rolled back after its
// boot attempts, and one that gave up on itself.
func TestUpdateOnLoopSlots(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	u := f.updater(t)
	before := f.slots(t)

	t.Run("bad input changes nothing", func(t *testing.T) {
		d := f.doc("v2.raucb")
		d.SHA256 = strings.Repeat("ab", 32)
		if _, err := u.Prepare(ctx, d, nop); !errors.Is(err, update.ErrHashMismatch) {
			t.Errorf("wrong hash: %v", err)
		}
		short := f.doc("short.raucb")
		short.Size = int64(len(f.files["v3.raucb"]))
		if _, err := u.Prepare(ctx, short, nop); !errors.Is(err, update.ErrTruncated) {
			t.Errorf("truncated bundle: %v", err)
		}
		long := f.doc("v3.raucb")
		long.Size -= 100
		if _, err := u.Prepare(ctx, long, nop); !errors.Is(err, update.ErrOversize) {
			t.Errorf("bundle longer than the job says: %v", err)
		}
		huge := fmt.Sprintf(`{"url":%q,"size":%d,"sha256":%q}`, f.srv.URL+"/v2.raucb", int64(64)<<30, strings.Repeat("0", 64))
		if _, err := update.ParseDoc(huge, 256<<20); !errors.Is(err, update.ErrBadDoc) || !strings.Contains(err.Error(), "max_bundle_size") {
			t.Errorf("huge size: %v", err)
		}
		if got := f.slots(t); got != before {
			t.Errorf("slots changed:\n%s\n%s", before, got)
		}
	})

	t.Run("refused before install", func(t *testing.T) {
		for _, c := range []struct{ name, reason string }{
			{"tampered.raucb", update.ReasonBadSignature},
			{"rogue.raucb", update.ReasonBadSignature},
			{"v1.raucb", update.ReasonDowngrade}, // the running version: not newer
		} {
			_, err := u.Prepare(ctx, f.doc(c.name), nop)
			var r *update.Refusal
			if !errors.As(err, &r) || r.Reason != c.reason {
				t.Errorf("%s: %v, want refusal %s", c.name, err, c.reason)
			} else {
				t.Logf("%s refused: %v", c.name, err)
			}
		}
		if got := f.slots(t); got != before {
			t.Errorf("slots changed:\n%s\n%s", before, got)
		}
	})

	t.Run("download cut off or killed resumes", func(t *testing.T) {
		// The link drops after a third: the same run resumes.
		f.cutOnce.Store("v3.raucb", true)
		ranges := f.ranges.Load()
		b, err := u.Prepare(ctx, f.doc("v3.raucb"), nop)
		must(t, err)
		if f.ranges.Load() == ranges {
			t.Error("the download restarted instead of resuming with a Range request")
		}
		if b.Info.Version != "3.0.0" || b.Info.Compatible != rauctest.Compatible {
			t.Errorf("bundle info %+v", b.Info)
		}
		// kioskd killed at 30 %: the next process (a new Updater on the
		// same directory) resumes the partial file.
		kctx, kill := context.WithCancel(ctx)
		_, err = u.Prepare(kctx, f.doc("v2.raucb"), func(p update.Progress) {
			if p.Phase == "downloading" && p.Percent >= 30 {
				kill()
			}
		})
		kill()
		if err == nil {
			t.Fatal("the download was not interrupted")
		}
		ranges = f.ranges.Load()
		var firstPercent = -1
		b, err = f.updater(t).Prepare(ctx, f.doc("v2.raucb"), func(p update.Progress) {
			if firstPercent < 0 {
				firstPercent = p.Percent
			}
		})
		must(t, err)
		if f.ranges.Load() == ranges || firstPercent < 30 {
			t.Errorf("not resumed: %d Range requests, started at %d %%", f.ranges.Load()-ranges, firstPercent)
		}
		if b.Info.Version != "2.0.0" {
			t.Errorf("bundle info %+v", b.Info)
		}
	})

	t.Run("install cut off leaves the old slot booting", func(t *testing.T) {
		b, err := u.Prepare(ctx, f.doc("v2.raucb"), nop)
		must(t, err)
		sb, err := superblock(f.sys.Devices["B"])
		must(t, err)
		done := make(chan error, 1)
		ictx, icancel := context.WithCancel(ctx)
		defer icancel()
		go func() { _, err := u.Install(ictx, "job-cut", b, nop); done <- err }()
		// Cut rauc service off (SIGKILL, as a power loss) as soon as it
		// starts writing slot B.
		deadline := time.Now().Add(30 * time.Second)
		for {
			now, err := superblock(f.sys.Devices["B"])
			must(t, err)
			if !bytes.Equal(now, sb) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("rauc never started writing slot B")
			}
			time.Sleep(2 * time.Millisecond)
		}
		f.sys.KillService(syscall.SIGKILL)
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			icancel() // the rauc client waits for a service that is gone
			err = <-done
		}
		if err == nil {
			t.Fatal("the install was not cut off (it finished first)")
		}
		t.Logf("install cut off: %v", err)
		if p, _ := u.LoadPending(); p != nil {
			t.Fatalf("pending update recorded for a cut-off install: %+v", p)
		}
		st, err := f.sys.State()
		must(t, err)
		t.Logf("boot state after the cut: %+v", st)
		f.boot(t, "A") // the old slot still boots
	})

	var p update.Pending
	t.Run("good update committed", func(t *testing.T) {
		b, err := u.Prepare(ctx, f.doc("v2.raucb"), nop)
		must(t, err)
		var phases []string
		p, err = u.Install(ctx, "job-v2", b, func(pr update.Progress) { phases = append(phases, pr.Phase) })
		must(t, err)
		if p.Slot != "B" || p.FromSlot != "A" || p.Version != "2.0.0" || p.From != "1.0.0" {
			t.Fatalf("pending %+v", p)
		}
		if bt, err := u.CheckBoot(ctx); err != nil || bt.Kind != update.BootNotRebooted {
			t.Fatalf("before the reboot: %+v %v", bt, err)
		}
		f.boot(t, "B")
		bt, err := u.CheckBoot(ctx)
		if err != nil || bt.Kind != update.BootTrial || bt.Pending.JobID != "job-v2" {
			t.Fatalf("first boot of B: %+v %v", bt, err)
		}
		must(t, u.MarkGood(ctx))
		must(t, u.ClearPending())
		st, err := f.sys.State()
		must(t, err)
		if st.Left["B"] != rauctest.Attempts || st.Order[0] != "B" {
			t.Errorf("after commit: %+v", st)
		}
		f.setVersion(t, "2.0.0")
		t.Logf("phases %v", phases)
	})

	t.Run("older version refused unless allowed", func(t *testing.T) {
		_, err := u.Prepare(ctx, f.doc("v1.raucb"), nop)
		var r *update.Refusal
		if !errors.As(err, &r) || r.Reason != update.ReasonDowngrade {
			t.Fatalf("downgrade: %v", err)
		}
		d := f.doc("v1.raucb")
		d.AllowDowngrade = true
		if _, err := u.Prepare(ctx, d, nop); err != nil {
			t.Errorf("downgrade allowed by the job: %v", err)
		}
	})

	t.Run("broken update rolled back after its attempts", func(t *testing.T) {
		b, err := u.Prepare(ctx, f.doc("v3.raucb"), nop)
		must(t, err)
		p, err := u.Install(ctx, "job-v3", b, nop)
		must(t, err)
		if p.Slot != "A" {
			t.Fatalf("v3 went to %s", p.Slot)
		}
		// Its kioskd never becomes ready: nothing marks A good.
		for range rauctest.Attempts {
			f.boot(t, "A")
			if bt, _ := u.CheckBoot(ctx); bt.Kind != update.BootTrial {
				t.Fatalf("trial boot: %+v", bt)
			}
		}
		f.boot(t, "B")
		bt, err := u.CheckBoot(ctx)
		if err != nil || bt.Kind != update.BootRolledBack || bt.Pending.Version != "3.0.0" {
			t.Fatalf("after the attempts: %+v %v", bt, err)
		}
		must(t, u.MarkGood(ctx))
		must(t, u.ClearPending())
	})

	t.Run("unhealthy update gives up on itself", func(t *testing.T) {
		b, err := u.Prepare(ctx, f.doc("v3.raucb"), nop)
		must(t, err)
		_, err = u.Install(ctx, "job-v3b", b, nop)
		must(t, err)
		f.boot(t, "A")
		bt, err := u.CheckBoot(ctx)
		if err != nil || bt.Kind != update.BootTrial {
			t.Fatalf("trial boot: %+v %v", bt, err)
		}
		must(t, u.GiveUp(ctx, *bt.Pending, "health not ok within 5m0s: camera down"))
		f.boot(t, "B")
		bt, err = u.CheckBoot(ctx)
		if err != nil || bt.Kind != update.BootRolledBack || !strings.Contains(bt.Pending.Reason, "camera down") {
			t.Fatalf("after giving up: %+v %v", bt, err)
		}
	})
}

// superblock reads the ext4 superblock region of a device.
func superblock(dev string) ([]byte, error) {
	fh, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b := make([]byte, 2048)
	_, err = fh.ReadAt(b, 0)
	return b, err
}

func TestParseDoc(t *testing.T) {
	sum := strings.Repeat("0a", 32)
	for _, c := range []struct {
		doc string
		ok  bool
	}{
		{fmt.Sprintf(`{"url":"https://bank.example/fw/2.0.0.raucb","size":1000,"sha256":%q}`, sum), true},
		{fmt.Sprintf(`{"url":"http://10.0.0.1:8000/b","size":1,"sha256":%q,"allow_downgrade":true}`, sum), true},
		{fmt.Sprintf(`{"url":"ftp://x/b","size":1,"sha256":%q}`, sum), false},
		{fmt.Sprintf(`{"url":"https://u:p@x/b","size":1,"sha256":%q}`, sum), false},
		{fmt.Sprintf(`{"url":"https://x/b","size":0,"sha256":%q}`, sum), false},
		{fmt.Sprintf(`{"url":"https://x/b","size":2000,"sha256":%q}`, sum), false},
		{`{"url":"https://x/b","size":1,"sha256":"ABCD"}`, false},
		{fmt.Sprintf(`{"url":"https://x/b","size":1,"sha256":%q}`, strings.ToUpper(sum)), false},
		{fmt.Sprintf(`{"url":"https://x/b","size":1,"sha256":%q,"extra":1}`, sum), false},
		{`not json`, false},
	} {
		_, err := update.ParseDoc(c.doc, 1000)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.doc, err)
		}
	}
}

func FuzzParseDoc(f *testing.F) {
	f.Add(`{"url":"https://bank.example/fw.raucb","size":1000,"sha256":"` + strings.Repeat("0a", 32) + `"}`)
	f.Add(`{"url":"http://h/","size":-1}`)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := update.ParseDoc(s, 1<<30)
		if err != nil {
			return
		}
		if d.Size <= 0 || d.Size > 1<<30 || len(d.SHA256) != 64 {
			t.Fatalf("accepted %+v", d)
		}
	})
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0.0", "2.0.0", -1}, {"2.0.0", "1.0.0", 1}, {"2.0", "2.0.0", 0}, {"2.10.0", "2.9.9", 1},
		{"3.0.0-rc1", "3.0.0", -1}, {"3.0.0", "3.0.0-rc1", 1}, {"3.0.0-rc1", "3.0.0-rc2", -1},
	} {
		got, err := update.CompareVersions(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("%s vs %s: %d %v, want %d", c.a, c.b, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "v2", "1..0", "01.0", "1.x", "-1"} {
		if _, err := update.CompareVersions(bad, "1.0"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWindow(t *testing.T) {
	w, err := update.ParseWindow("23:00-02:00")
	must(t, err)
	at := func(h, m int) time.Time { return time.Date(2026, 12, 7, h, m, 0, 0, time.Local) }
	if w.Wait(at(23, 30)) != 0 || w.Wait(at(1, 0)) != 0 {
		t.Error("inside the window")
	}
	if got := w.Wait(at(22, 0)); got != time.Hour {
		t.Errorf("22:00 waits %s", got)
	}
	if got := w.Wait(at(3, 0)); got != 20*time.Hour {
		t.Errorf("03:00 waits %s", got)
	}
	for _, bad := range []string{"2:00-3:00", "25:00-01:00", "01:00-01:00", "x"} {
		if _, err := update.ParseWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
