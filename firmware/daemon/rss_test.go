package daemon

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiosk/firmware/session"
	"kiosk/internal/testmedia"
)

// Measured: kioskd's peak resident memory (VmHWM) as its own process, in
// simulation with every face model loaded, through one whole payment
// (chip read, face match, smile, authorization). Target ≤ 300 MB.
func BenchmarkKioskdPeakRSS(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "kioskd")
	if out, err := exec.Command("go", "build", "-o", bin, "kiosk/firmware/cmd/kioskd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "kioskd.toml")
	if err := os.WriteFile(cfg, []byte(simConfig(b, testmedia.Path(b, "franck.mp4"))+"\n[policy]\nface_timeout = \"60s\"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var peak []float64
	for b.Loop() {
		peak = append(peak, kioskdPayment(b, bin, cfg))
	}
	b.ReportMetric(median(peak), "peak-MiB")
}

// kioskdPayment runs kioskd, pays once through its HTTP API, stops it and
// returns its VmHWM in MiB.
func kioskdPayment(b *testing.B, bin, cfg string) float64 {
	cmd := exec.Command(bin, "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`status_page=(http://127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	var base string
	select {
	case base = <-addr:
	case <-time.After(30 * time.Second):
		b.Fatal("kioskd did not start")
	}
	post := func(path, body string) { postOK(b, base+path, body) }
	state := func() session.Status {
		var st session.Status
		resp, err := http.Get(base + "/api/session")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	waitState := func(want session.State, within time.Duration) session.Status {
		deadline := time.Now().Add(within)
		for {
			if st := state(); st.State == want {
				return st
			}
			if time.Now().After(deadline) {
				b.Fatalf("kioskd never reached %s (at %s)", want, state().State)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Wait until a session can start (camera and reader up).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Post(base+"/api/sim/pay", "application/json", strings.NewReader(`{"amount_minor":2350,"currency":"CNY"}`))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("kioskd never took a payment")
		}
	}
	waitState(session.AwaitCard, 10*time.Second)
	post("/api/sim/card", `{"action":"insert"}`)
	waitState(session.AwaitPassword, 10*time.Second)
	post("/api/session/password", `{"kind":"can","digits":"123456"}`)
	if st := waitState(session.RemoveCard, 60*time.Second); st.Outcome == nil || !st.Outcome.Approved {
		b.Fatalf("payment not approved: %+v", st.Outcome)
	}
	return vmHWM(b, cmd.Process.Pid)
}

func vmHWM(b *testing.B, pid int) float64 {
	s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// postOK posts JSON and fails the benchmark on any answer but 2xx.
func postOK(b *testing.B, url, body string) {
	b.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		b.Fatalf("%s: %d", url, resp.StatusCode)
	}
}
