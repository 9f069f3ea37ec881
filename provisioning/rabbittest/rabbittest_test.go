package rabbittest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestCluster launches three nodes, kills one, restarts it, and checks
// that no process the harness started outlives Close, nor its directory.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs RabbitMQ")
	}
	c, err := Launch(3, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.MQTTURLs()) != 3 || len(c.AMQPURLs()) != 3 {
		t.Fatalf("URLs: %v %v", c.MQTTURLs(), c.AMQPURLs())
	}
	for _, n := range c.Nodes() {
		if err := mqttConnect(n.MQTTPort, 2*time.Second); err != nil {
			t.Errorf("%s: %v", n.Name, err)
		}
	}
	if n := len(inDir(c.dir)); n < 4 { // epmd, 3 VMs and their helpers
		t.Fatalf("%d processes in the cluster's directory", n)
	}
	begin := time.Now()
	c.Kill(1)
	t.Logf("kill: %s", time.Since(begin).Round(time.Millisecond))
	if dialOK(c.Node(1).AMQPPort) {
		t.Fatal("killed node still listening")
	}
	conn, err := amqp.Dial(c.Node(0).AMQPURL()) // the others go on
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	begin = time.Now()
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart: %s", time.Since(begin).Round(time.Millisecond))
	if err := mqttConnect(c.Node(1).MQTTPort, 2*time.Second); err != nil {
		t.Errorf("after restart: %v", err)
	}
	out, err := c.Ctl(0, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatalf("cluster_status: %v\n%s", err, out)
	}
	for _, n := range c.Nodes() {
		if !strings.Contains(out, n.Name) {
			t.Fatalf("%s not in cluster status %s", n.Name, out)
		}
	}
	begin = time.Now()
	c.Close()
	t.Logf("stop: %s", time.Since(begin).Round(time.Millisecond))
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("directory left: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := inDir(c.dir)
		left = append(left, inDir(c.dir+" (deleted)")...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after Stop: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inDir lists the processes whose working directory is dir: every process
// the harness starts runs there, and so do their children.
func inDir(dir string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/")) {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			pids = append(pids, e.Name()+":"+strings.TrimSpace(string(cmd)))
		}
	}
	return pids
}
