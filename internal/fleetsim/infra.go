package fleetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"kiosk/provisioning/devkey"
	"kiosk/provisioning/hubd"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
)

// HubProc is one kioskhub process.
type HubProc struct {
	Name   string
	bin    string
	conf   string
	health string
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
}

// HubSpec is what every hub process of a run shares.
type HubSpec struct {
	Bin       string
	Dir       string
	DSN       string
	Brokers   []string // MQTT shared subscriptions (mosquitto)
	AMQPURLs  []string // or RabbitMQ's shared quorum queue
	Devices   string
	Key       devkey.Files // the hubs' signing key
	MaxConns  int
	Workers   int
	LimitsMax int64
}

// StartHub writes hub i's configuration and starts it; it returns once the
// hub reports healthy.
func StartHub(ctx context.Context, s HubSpec, i int) (*HubProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	name := fmt.Sprintf("hub-%d", i)
	q := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	brokers := make([]string, len(s.Brokers))
	for j, b := range s.Brokers {
		brokers[j] = q(b)
	}
	source := fmt.Sprintf("[mqtt]\nbrokers = [%s]\nworkers = %d", strings.Join(brokers, ", "), max(s.Workers, 4))
	if len(s.AMQPURLs) > 0 {
		urls := make([]string, len(s.AMQPURLs))
		for j, u := range s.AMQPURLs {
			urls[j] = q(u)
		}
		source = fmt.Sprintf("[mqtt]\nworkers = %d\n[amqp]\nurls = [%s]", max(s.Workers, 4), strings.Join(urls, ", "))
	}
	conf := fmt.Sprintf(`instance = %s
mode = "simulation"
[log]
format = "text"
level = "warn"
[store]
kind = "postgres"
dsn = %s
max_conns = %d
%s
[keys]
auth_key = %s
auth_cert = %s
devices = %s
[limits]
max_tx = %d
[http]
listen = %s
`, q(name), q(s.DSN), max(s.MaxConns, 4), source, q(s.Key.Key), q(s.Key.Cert), q(s.Devices), s.LimitsMax, q(addr))
	path := filepath.Join(s.Dir, name+".toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	h := &HubProc{Name: name, bin: s.Bin, conf: path, health: "http://" + addr + "/healthz"}
	return h, h.Restart(ctx)
}

// Restart starts the (stopped or killed) hub again and waits for health.
func (h *HubProc) Restart(ctx context.Context) error {
	logf, err := os.OpenFile(strings.TrimSuffix(h.conf, ".toml")+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(h.bin, "--config", h.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	h.mu.Lock()
	h.cmd, h.done = cmd, done
	h.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if hl, err := h.Health(ctx); err == nil && hl.Status == "ok" {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited at start:\n%s", h.Name, tail(strings.TrimSuffix(h.conf, ".toml")+".log", 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after 30s", h.Name)
		}
	}
}

// Health reads the hub's /healthz.
func (h *HubProc) Health(ctx context.Context) (hubd.Health, error) {
	var hl hubd.Health
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.health, nil)
	if err != nil {
		return hl, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return hl, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&hl)
	return hl, err
}

// Kill ends the hub with SIGKILL (a crash: in-flight work is unacked).
func (h *HubProc) Kill() { h.signal(syscall.SIGKILL) }

// Stall freezes the hub (SIGSTOP) for d, then lets it go on (SIGCONT): a
// long GC pause, a stalled VM or a partition. Work it had taken is
// resent by the kiosks meanwhile and applied by another instance; when
// it wakes, it handles its stale copies, which the store deduplicates.
func (h *HubProc) Stall(d time.Duration) {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(d)
	_ = cmd.Process.Signal(syscall.SIGCONT)
}

// Stop ends the hub with SIGTERM.
func (h *HubProc) Stop() { h.signal(syscall.SIGTERM) }

func (h *HubProc) signal(sig syscall.Signal) {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Verdict compares what the kiosks committed with what the hub's
// database holds.
type Verdict struct {
	Committed    int
	AtHub        int // committed reports found at the hub
	Lost         int // committed, not at the hub
	Duplicates   int // committed reports held more than once (the keys forbid it)
	Redeliveries int // copies the hub received again and deduplicated
	Extra        int // rows at the hub nobody committed
}

// Check reads every transaction from the hub's database.
func Check(ctx context.Context, dsn string, committed []TxRef) (Verdict, error) {
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 2})
	if err != nil {
		return Verdict{}, err
	}
	defer s.Close()
	txs, err := hubstore.All(ctx, s, hubstore.ListQuery{Limit: hubstore.MaxPage}, 1<<24)
	if err != nil {
		return Verdict{}, err
	}
	held := map[TxRef]int{}
	v := Verdict{Committed: len(committed)}
	for _, t := range txs {
		held[TxRef{t.Terminal, t.TxID}]++
		v.Redeliveries += t.Duplicates
	}
	want := map[TxRef]bool{}
	for _, c := range committed {
		want[c] = true
		switch n := held[c]; {
		case n == 0:
			v.Lost++
		default:
			v.AtHub++
			v.Duplicates += n - 1
		}
	}
	for ref := range held {
		if !want[ref] {
			v.Extra++
		}
	}
	return v, nil
}

// tail returns the end of a log file, for error messages.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
