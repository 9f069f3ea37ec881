package outbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t testing.TB, path string, o Options) *Outbox {
	t.Helper()
	ob, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

func TestPutPendingAckReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob := open(t, path, Options{})
	for i := range 5 {
		if err := ob.Put(fmt.Sprintf("tx-%d", i), []byte(fmt.Sprintf("payload-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Put("tx-2", []byte("different")); err != nil {
		t.Fatal(err)
	}
	recs, err := ob.Pending(0, 100)
	if err != nil || len(recs) != 5 || recs[2].TxID != "tx-2" || string(recs[2].Payload) != "payload-2" {
		t.Fatalf("pending: %+v %v", recs, err)
	}
	more, _ := ob.Pending(recs[2].Seq, 100)
	if len(more) != 2 || more[0].TxID != "tx-3" {
		t.Fatalf("pending after seq: %+v", more)
	}
	if ok, err := ob.Ack("tx-1"); !ok || err != nil {
		t.Fatalf("ack: %v %v", ok, err)
	}
	if ok, _ := ob.Ack("tx-1"); ok {
		t.Fatal("second ack found the record")
	}
	st := ob.Stats()
	if st.Depth != 4 || st.Bytes != 4*9 || st.Oldest.IsZero() {
		t.Fatalf("stats %+v", st)
	}
	ob.Close()
	ob = open(t, path, Options{})
	defer ob.Close()
	if st2 := ob.Stats(); st2.Depth != 4 || st2.Bytes != st.Bytes {
		t.Fatalf("after reopen %+v", st2)
	}
	recs, _ = ob.Pending(0, 100)
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.TxID)
	}
	if strings.Join(ids, ",") != "tx-0,tx-2,tx-3,tx-4" {
		t.Fatalf("order after reopen: %v", ids)
	}
}

func TestBoundsAndAlarm(t *testing.T) {
	var mu sync.Mutex
	var alarms []Level
	ob := open(t, filepath.Join(t.TempDir(), "o.db"), Options{MaxRecords: 5, OnAlarm: func(l Level, _ Stats) {
		mu.Lock()
		alarms = append(alarms, l)
		mu.Unlock()
	}})
	defer ob.Close()
	for i := range 5 {
		if err := ob.Put(strconv.Itoa(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Put("5", []byte("x")); !errors.Is(err, ErrFull) {
		t.Fatalf("put beyond bound: %v", err)
	}
	if ob.Level() != Full {
		t.Fatalf("level %v", ob.Level())
	}
	for _, id := range []string{"0", "1", "2"} {
		if _, err := ob.Ack(id); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	got := fmt.Sprint(alarms)
	mu.Unlock()
	// 4 of 5 = 80 % → high; 5 → full; ack to 4 → high; to 3 → normal.
	if got != "[high full high normal]" {
		t.Fatalf("alarms %s", got)
	}
	byteBound := open(t, filepath.Join(t.TempDir(), "b.db"), Options{MaxBytes: 10})
	defer byteBound.Close()
	if err := byteBound.Put("a", make([]byte, 11)); !errors.Is(err, ErrFull) {
		t.Fatalf("byte bound: %v", err)
	}
}

// The kill -9 test: a child process writes records and prints each id
// after Put returned; the parent SIGKILLs it mid-stream. Every id the
// child announced must be in the reopened outbox.
func TestSurvivesKill9(t *testing.T) {
	if os.Getenv("OUTBOX_CHILD") != "" {
		ob, err := Open(os.Getenv("OUTBOX_CHILD"), Options{MaxRecords: 1 << 20})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			id := fmt.Sprintf("tx-%06d", i)
			if err := ob.Put(id, []byte(strings.Repeat("r", 300))); err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			fmt.Println(id)
		}
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSurvivesKill9$")
		cmd.Env = append(os.Environ(), "OUTBOX_CHILD="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var written []string
		stopAt := 50 + round*37
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ERR") {
				t.Fatal(line)
			}
			if strings.HasPrefix(line, "tx-") {
				written = append(written, line)
			}
			if len(written) == stopAt {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		_ = cmd.Wait()
		if len(written) < stopAt {
			t.Fatalf("child wrote only %d records", len(written))
		}
		ob := open(t, path, Options{MaxRecords: 1 << 20})
		for _, id := range written {
			if ok, err := ob.Has(id); !ok || err != nil {
				t.Fatalf("round %d: %s announced but missing after kill -9 (%v)", round, id, err)
			}
		}
		recs, err := ob.Pending(0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if ob.Stats().Depth != len(recs) {
			t.Fatalf("depth %d, records %d", ob.Stats().Depth, len(recs))
		}
		// Child restarts numbering each round, so ids repeat: idempotent puts.
		ob.Close()
		t.Logf("round %d: %d announced, %d in outbox", round, len(written), len(recs))
	}
}

func BenchmarkPutFsync(b *testing.B) {
	ob := open(b, filepath.Join(b.TempDir(), "bench.db"), Options{MaxRecords: 1 << 30, MaxBytes: 1 << 40})
	defer ob.Close()
	payload := []byte(strings.Repeat("r", 1200)) // a signed report is about 1 KiB
	i := 0
	start := time.Now()
	for b.Loop() {
		if err := ob.Put("tx-"+strconv.Itoa(i), payload); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(i), "µs/put")
}

// A killed process cannot tell fsync on from off; power loss can. The
// outbox kioskd opens (default options) syncs every commit to disk, and
// keeps bbolt's freelist syncing as well.
func TestFsyncOn(t *testing.T) {
	ob, err := Open(filepath.Join(t.TempDir(), "outbox.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if ob.db.NoSync || ob.db.NoFreelistSync {
		t.Fatalf("outbox opened with NoSync %v, NoFreelistSync %v: a power cut could lose committed reports", ob.db.NoSync, ob.db.NoFreelistSync)
	}
}
