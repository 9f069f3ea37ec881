// Package rabbittest runs a real RabbitMQ cluster (Debian's
// rabbitmq-server 3.10 with the MQTT plugin) on free loopback ports for
// tests: every node a child process of the test, every file in the test's
// temporary directory, nothing shared with a RabbitMQ or epmd the machine
// may be running.
//
// Layout of an N-node cluster:
//   - one private epmd on its own port (ERL_EPMD_PORT), started and
//     stopped by the harness; without it the first node would start a
//     daemonised epmd on 4369 that outlives the test, or register with
//     the system's;
//   - nodes rabbit1@localhost … rabbitN@localhost, each with its own AMQP,
//     MQTT and Erlang distribution port, all bound to 127.0.0.1, one
//     Erlang cookie in a temporary HOME;
//   - node 1 seeds the cluster; the others name it in
//     cluster_formation.classic_config and join it while booting, so no
//     rabbitmqctl call is needed. Nodes start one after the other, each
//     once the previous one serves AMQP and MQTT: nodes booting together
//     race to join 3.10's MQTT client-id Raft cluster (see startNode);
//   - durable MQTT subscriptions (clean session false, QoS 1) are quorum
//     queues (mqtt.durable_queue_type = quorum, 3.10 and later).
//
// The server scripts are run from /usr/lib/rabbitmq/bin, not the /usr/sbin
// wrappers, which switch to the rabbitmq user: the nodes run as whoever
// runs the test, root included.
package rabbittest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Bin is where Debian keeps the unwrapped RabbitMQ scripts.
const Bin = "/usr/lib/rabbitmq/bin"

// startTimeout bounds a cluster start (and a node restart) on a loaded
// two-core machine; a 3-node start takes about 20 s there.
const startTimeout = 120 * time.Second

// Cluster is a running RabbitMQ cluster.
type Cluster struct {
	// StartTime is how long Start took, from the first process to a
	// verified cluster.
	StartTime time.Duration

	logf     func(format string, args ...any)
	dir      string
	home     string
	cookie   string
	epmdPort int
	epmd     *proc
	nodes    []*Node
	mu       sync.Mutex
}

// Node is one cluster member.
type Node struct {
	Name     string // rabbit<i>@localhost
	AMQPPort int
	MQTTPort int
	DistPort int

	c    *Cluster
	dir  string
	proc *proc // nil while the node is down
}

// proc is a child process and its exit.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// AMQPURL is the node's AMQP 0-9-1 address (the default guest user, which
// RabbitMQ accepts from loopback only).
func (n *Node) AMQPURL() string {
	return "amqp://guest:guest@127.0.0.1:" + strconv.Itoa(n.AMQPPort) + "/"
}

// MQTTURL is the node's MQTT address in paho's form.
func (n *Node) MQTTURL() string { return "tcp://127.0.0.1:" + strconv.Itoa(n.MQTTPort) }

// Start starts an n-node cluster and stops it when the test ends. It
// skips under -short; a missing rabbitmq-server fails the test.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping test that needs a RabbitMQ cluster")
	}
	c, err := launch(t.TempDir(), n, t.Logf)
	if c != nil {
		t.Cleanup(c.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Launch starts an n-node cluster in a new temporary directory, for
// programs (a fleet simulator, a chaos run); tests use Start. Close stops
// it and removes the directory. logf may be nil.
func Launch(n int, logf func(format string, args ...any)) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "rabbittest-")
	if err != nil {
		return nil, fmt.Errorf("rabbittest: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c, err := launch(dir, n, logf)
	if err != nil {
		if c != nil {
			c.Stop()
		}
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// Close stops the cluster and removes its directory (for Launch).
func (c *Cluster) Close() {
	c.Stop()
	_ = os.RemoveAll(c.dir)
}

// launch starts the cluster in dir. On error the returned cluster, if
// any, holds processes to Stop.
func launch(dir string, n int, logf func(format string, args ...any)) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("rabbittest: %d nodes", n)
	}
	if _, err := os.Stat(filepath.Join(Bin, "rabbitmq-server")); err != nil {
		return nil, fmt.Errorf("rabbittest: rabbitmq-server not installed (%v): run `make deps`", err)
	}
	epmd, err := exec.LookPath("epmd")
	if err != nil {
		return nil, fmt.Errorf("rabbittest: epmd not found (%v): run `make deps` (erlang-base comes with rabbitmq-server)", err)
	}
	begin := time.Now()
	ports, err := freePorts(1 + 3*n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{logf: logf, dir: dir, home: filepath.Join(dir, "home"), epmdPort: ports[0],
		cookie: "rabbittest" + strconv.FormatInt(begin.UnixNano(), 36)}
	if err := os.MkdirAll(c.home, 0o700); err != nil {
		return nil, fmt.Errorf("rabbittest: %w", err)
	}
	// The cookie the nodes and any CLI tool find in $HOME.
	if err := os.WriteFile(filepath.Join(c.home, ".erlang.cookie"), []byte(c.cookie), 0o400); err != nil {
		return nil, fmt.Errorf("rabbittest: %w", err)
	}
	c.epmd, err = c.spawn(filepath.Join(dir, "epmd.log"), nil, epmd, "-port", strconv.Itoa(c.epmdPort))
	if err != nil {
		return nil, fmt.Errorf("rabbittest: start epmd: %w", err)
	}
	if err := waitListening(context.Background(), c.epmdPort, c.epmd, 10*time.Second); err != nil {
		return c, fmt.Errorf("rabbittest: epmd: %w", err)
	}
	for i := range n {
		nd := &Node{
			Name: "rabbit" + strconv.Itoa(i+1) + "@localhost", c: c,
			AMQPPort: ports[1+3*i], MQTTPort: ports[2+3*i], DistPort: ports[3+3*i],
			dir: filepath.Join(dir, "node"+strconv.Itoa(i+1)),
		}
		if err := nd.writeConfig(); err != nil {
			return c, fmt.Errorf("rabbittest: %w", err)
		}
		c.nodes = append(c.nodes, nd)
	}
	// One node after the other: see startNode.
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for i := range c.nodes {
		if err := c.startNode(ctx, i); err != nil {
			return c, fmt.Errorf("rabbittest: cluster not ready after %s: %w", time.Since(begin).Round(time.Millisecond), err)
		}
	}
	if err := c.verifyClustered(ctx); err != nil {
		return c, fmt.Errorf("rabbittest: %w", err)
	}
	c.StartTime = time.Since(begin)
	logf("rabbittest: %d-node cluster ready in %s (epmd port %d)", n, c.StartTime.Round(time.Millisecond), c.epmdPort)
	return c, nil
}

// Nodes are the members, in order (index 0 is rabbit1, the seed).
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node is member i (0-based).
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// MQTTURLs are the nodes' MQTT addresses, in node order.
func (c *Cluster) MQTTURLs() []string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.MQTTURL())
	}
	return u
}

// AMQPURLs are the nodes' AMQP addresses, in node order.
func (c *Cluster) AMQPURLs() []string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.AMQPURL())
	}
	return u
}

// Kill SIGKILLs node i's Erlang VM, as a crash or a power cut would, and waits until it is gone.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.proc == nil {
		return
	}
	n.proc.kill()
	n.proc = nil
}

// Restart starts node i again on its ports and data directory (killing it
// first if it is still running) and waits until it serves AMQP and MQTT
// again, back in the cluster.
func (c *Cluster) Restart(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.startNode(ctx, i); err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	return nil
}

// startNode (re)starts node i and waits until it serves AMQP and completes
// an MQTT CONNECT; an open MQTT port does not imply the latter. RabbitMQ
// 3.10 tracks MQTT client ids in a Raft cluster of its own (mqtt_node),
// which a booting node joins with one membership change. Ra refuses a
// change while another is under way (cluster_change_not_permitted in the
// peer's log) and 3.10 does not retry: of nodes booting together one is
// then left out and every CONNECT to it hangs, or no node gets a leader at
// all. Here that happened in 4 of about 20 3-node starts when all
// nodes booted at once, so nodes start one after the other (a first boot
// of a real cluster should do the same). A node that still does not
// answer CONNECT is restarted once: it then joins a settled cluster.
func (c *Cluster) startNode(ctx context.Context, i int) error {
	n := c.nodes[i]
	for attempt := 1; ; attempt++ {
		c.mu.Lock()
		if n.proc != nil {
			n.proc.kill()
			n.proc = nil
		}
		err := n.start()
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("start %s: %w", n.Name, err)
		}
		if err := n.waitAMQP(ctx); err != nil {
			return fmt.Errorf("start %s: %w", n.Name, err)
		}
		err = n.waitMQTT(ctx, 20*time.Second)
		if err == nil {
			return nil
		}
		if attempt == 2 {
			return fmt.Errorf("start %s: %w\n%s", n.Name, err, c.mqttLog())
		}
		c.logf("rabbittest: %s serves AMQP but no MQTT CONNECT (%v): restarting it", n.Name, err)
	}
}

// Stop stops every node (SIGTERM, then SIGKILL after 15 s) and the
// private epmd. It is idempotent and runs at the end of the test.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if p := n.proc; p != nil {
			n.proc = nil
			wg.Go(func() { p.stop(15 * time.Second) })
		}
	}
	wg.Wait()
	if c.epmd != nil {
		c.epmd.stop(5 * time.Second)
		c.epmd = nil
	}
}

// Ctl runs rabbitmqctl against node i (for diagnostics in tests; each call
// starts an Erlang VM, about a second) and returns its combined output.
func (c *Cluster) Ctl(i int, args ...string) (string, error) {
	n := c.nodes[i]
	cmd := exec.Command(filepath.Join(Bin, "rabbitmqctl"), append([]string{"-n", n.Name}, args...)...)
	cmd.Env = n.env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// LogTail is the end of node i's log, for failure messages.
func (c *Cluster) LogTail(i int, max int) string {
	n := c.nodes[i]
	b, _ := os.ReadFile(filepath.Join(n.dir, "log", n.Name+".log"))
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// writeConfig writes the node's rabbitmq.conf and enabled_plugins.
func (n *Node) writeConfig() error {
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listeners.tcp.default = 127.0.0.1:%d\n", n.AMQPPort)
	fmt.Fprintf(&b, "mqtt.listeners.tcp.default = 127.0.0.1:%d\n", n.MQTTPort)
	b.WriteString(`mqtt.allow_anonymous = true
# Durable MQTT subscriptions (clean session false, QoS 1) as quorum queues:
# replicated, so a subscriber's queued messages survive a node. Clean
# sessions keep classic auto-delete queues (quorum queues cannot be
# auto-delete).
mqtt.durable_queue_type = quorum
mqtt.tcp_listen_options.nodelay = true
tcp_listen_options.nodelay = true
log.console = false
log.file.level = info
disk_free_limit.absolute = 8MB
`)
	if n.Name != "rabbit1@localhost" {
		// Join the seed while booting; keep retrying while it boots
		// (default 10 × 500 ms is too short on a loaded machine, and a
		// node that gives up forms a cluster of its own).
		b.WriteString(`cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = rabbit1@localhost
cluster_formation.discovery_retry_limit = 240
cluster_formation.discovery_retry_interval = 500
`)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "rabbitmq.conf"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.dir, "enabled_plugins"), []byte("[rabbitmq_mqtt].\n"), 0o600)
}

// env is the environment of the node's scripts and of rabbitmqctl for it.
func (n *Node) env() []string {
	c := n.c
	var env []string
	for _, kv := range os.Environ() {
		// Nothing of a RabbitMQ or Erlang set-up the caller may have.
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+c.home,
		"ERL_EPMD_PORT="+strconv.Itoa(c.epmdPort),
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.AMQPPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.DistPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(n.dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.dir, "rabbitmq-env.conf"), // absent: not /etc's
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		// Three VMs share two cores with other builds: no scheduler binding.
		"RABBITMQ_SCHEDULER_BIND_TYPE=u",
		// Distribution on loopback only.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		// With input allowed the script execs erl instead of running it
		// in the background and waiting; -noinput keeps the shell off. So
		// the child process is the Erlang VM itself, which Kill signals.
		"RABBITMQ_ALLOW_INPUT=true",
		"RABBITMQ_SERVER_START_ARGS=-noinput",
	)
}

func (n *Node) start() error {
	if err := os.MkdirAll(filepath.Join(n.dir, "log"), 0o700); err != nil {
		return err
	}
	p, err := n.c.spawn(filepath.Join(n.dir, "stdout.log"), n.env(), filepath.Join(Bin, "rabbitmq-server"))
	if err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.proc = p
	return nil
}

// waitAMQP waits until the node accepts AMQP connections: RabbitMQ opens
// its client listeners last, after clustering and plugins.
func (n *Node) waitAMQP(ctx context.Context) error {
	for {
		n.c.mu.Lock()
		p := n.proc
		n.c.mu.Unlock()
		if p == nil {
			return fmt.Errorf("%s is not running", n.Name)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting\n%s", n.Name, n.logTail())
		default:
		}
		conn, err := amqp.DialConfig(n.AMQPURL(), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err == nil {
			conn.Close()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: no AMQP: %w\n%s", n.Name, ctx.Err(), n.logTail())
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// waitMQTT waits up to d until an MQTT CONNECT to the node succeeds.
func (n *Node) waitMQTT(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := mqttConnect(n.MQTTPort, 2*time.Second)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: no MQTT CONNECT: %w", n.Name, err)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// mqttLog is what the nodes logged about MQTT client-id tracking.
func (c *Cluster) mqttLog() string {
	var b strings.Builder
	for _, n := range c.nodes {
		log, _ := os.ReadFile(filepath.Join(n.dir, "log", n.Name+".log"))
		for l := range strings.SplitSeq(string(log), "\n") {
			if strings.Contains(l, "mqtt_node") || strings.Contains(l, "MQTT:") {
				b.WriteString(n.Name + ": " + l + "\n")
			}
		}
	}
	return b.String()
}

// mqttConnect performs an MQTT 3.1.1 CONNECT (clean session) and
// DISCONNECT on port.
func mqttConnect(port int, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	id := "rabbittest-probe-" + strconv.Itoa(port)
	// 3.1.1 §3.1: protocol name "MQTT", level 4, flags clean session,
	// keep alive 10 s, payload the client id.
	pkt := []byte{0x10, byte(10 + 2 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, byte(len(id))}
	pkt = append(pkt, id...)
	if _, err := conn.Write(pkt); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fmt.Errorf("no CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		return fmt.Errorf("CONNACK % x", ack)
	}
	_, err = conn.Write([]byte{0xe0, 0}) // DISCONNECT
	return err
}

func (n *Node) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "log", n.Name+".log"))
	out, _ := os.ReadFile(filepath.Join(n.dir, "stdout.log"))
	b = append(out, b...)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// verifyClustered proves the nodes share one metadata store: a durable
// queue declared through node 1 must be visible through every other node.
// A node that failed to join would have formed a cluster of its own.
func (c *Cluster) verifyClustered(ctx context.Context) error {
	if len(c.nodes) < 2 {
		return nil
	}
	const probe = "rabbittest-cluster-probe"
	for {
		err := c.probe(probe)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("nodes did not form one cluster: %w", err)
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

func (c *Cluster) probe(q string) error {
	conn, err := amqp.Dial(c.nodes[0].AMQPURL())
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return err
	}
	for _, n := range c.nodes[1:] {
		if err := passiveDeclare(n.AMQPURL(), q); err != nil {
			return fmt.Errorf("%s does not see %s's queue: %w", n.Name, c.nodes[0].Name, err)
		}
	}
	_, err = ch.QueueDelete(q, false, false, false)
	return err
}

func passiveDeclare(url, q string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	_, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
	return err
}

// spawn starts a child that dies with the test binary.
func (c *Cluster) spawn(logPath string, env []string, name string, args ...string) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	if env != nil {
		cmd.Env = env
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// kill SIGKILLs the child (os.Process signals through a pidfd, so never
// another process that got its pid) and waits for it. An Erlang VM's
// helpers (erl_child_setup, inet_gethost, the disk monitor's shell) exit
// by themselves when their pipes to the VM close.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop asks the child to end (SIGTERM: an Erlang VM stops cleanly) and
// kills its group after grace.
func (p *proc) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// freePorts reserves n distinct free loopback ports by listening on all of
// them at once, then releases them for the nodes.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("rabbittest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func dialOK(port int) bool {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 500*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func waitListening(ctx context.Context, port int, p *proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !dialOK(port) {
		select {
		case <-p.done:
			return errors.New("exited at start")
		case <-ctx.Done():
			return fmt.Errorf("not listening on %d: %w", port, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
