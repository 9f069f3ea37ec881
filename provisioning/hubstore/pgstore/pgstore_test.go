package pgstore_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"kiosk/provisioning/fleet"
	"kiosk/provisioning/fleet/fleettest"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
	"kiosk/provisioning/hubstore/storetest"
	"kiosk/provisioning/pgtest"
)

// The conformance suite against a real PostgreSQL, each subtest on its own
// database.
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) hubstore.Store {
		s, err := pgstore.Open(context.Background(), srv.NewDatabase(t), pgstore.Options{MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Instances starting together migrate once (tern's advisory lock); every
// Open succeeds and sees the newest schema.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := s.Version(context.Background())
	if err != nil || v != pgstore.SchemaVersion() || v < 1 {
		t.Fatalf("schema version %d (%v), want %d", v, err, pgstore.SchemaVersion())
	}
}

// Connections killed under the store (a database restart, an
// administrator) fail the operation in flight, never half-apply it, and
// the next call works on a fresh connection.
func TestConnectionsKilled(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := srv.TerminateConnections(ctx, dbName(t, dsn))
	if err != nil || n == 0 {
		t.Fatalf("terminated %d connections: %v", n, err)
	}
	// The pool may hand out a dead connection once; pgx then drops it.
	var last error
	for range 3 {
		if _, last = s.List(ctx, hubstore.ListQuery{}); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("store did not recover from killed connections: %v", last)
	}
	srv.Kill()
	if _, err := s.List(ctx, hubstore.ListQuery{}); err == nil {
		t.Fatal("list worked with the server killed")
	}
	if err := srv.Restart(); err != nil {
		t.Fatalf("%v\n%s", err, srv.Log())
	}
	for range 3 {
		if _, last = s.List(ctx, hubstore.ListQuery{}); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("store did not recover after a database restart: %v", last)
	}
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// The fleet job store's conformance suite against a real PostgreSQL.
func TestPostgresJobs(t *testing.T) {
	srv := pgtest.Start(t)
	fleettest.Run(t, func(t *testing.T) fleet.Store {
		s, err := pgstore.Open(context.Background(), srv.NewDatabase(t), pgstore.Options{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Notifications between two stores (two pools, as two instances have) on
// one database: a payload sent by either reaches the listener intact, an
// oversized one is refused with nothing sent, and a listener whose
// backend is terminated reports the loss, comes back and hears again.
func TestNotifyListen(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The listener's connections carry a name, so the test can cut
	// exactly them.
	a, err := pgstore.Open(ctx, dsn+"&application_name=listener_a", pgstore.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const ch = "test_events"
	got := make(chan string, 16)
	ups := make(chan struct{}, 4)
	downs := make(chan error, 4)
	done := make(chan error, 1)
	go func() {
		done <- a.Listen(ctx, ch, hubstore.Listener{
			Notification: func(p []byte) { got <- string(p) },
			Up:           func() { ups <- struct{}{} },
			Down:         func(err error, _ time.Duration) { downs <- err },
		})
	}()
	wait := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case err := <-downs:
			t.Fatalf("%s: listener down: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: timed out", what)
		}
	}
	hear := func(want string) {
		t.Helper()
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("heard %.40q (%d bytes), want %.40q (%d bytes)", p, len(p), want, len(want))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%.40q not heard", want)
		}
	}
	wait("listening", ups)
	if err := b.Notify(ctx, ch, []byte(`{"from":"b"}`)); err != nil {
		t.Fatal(err)
	}
	hear(`{"from":"b"}`)
	// The sender's own listener hears it too (hubd skips its own).
	if err := a.Notify(ctx, ch, []byte("from a")); err != nil {
		t.Fatal(err)
	}
	hear("from a")
	largest := strings.Repeat("x", hubstore.MaxNotifyPayload)
	if err := b.Notify(ctx, ch, []byte(largest)); err != nil {
		t.Fatalf("largest payload: %v", err)
	}
	hear(largest)
	if err := b.Notify(ctx, ch, []byte(largest+"x")); !errors.Is(err, hubstore.ErrPayloadTooLarge) {
		t.Fatalf("oversized payload: %v", err)
	}
	if err := b.Notify(ctx, "Bad-Name", nil); err == nil {
		t.Fatal("a channel name with capitals and a dash was taken")
	}
	// Another channel's notifications are not this listener's.
	if err := b.Notify(ctx, "other_events", []byte("other")); err != nil {
		t.Fatal(err)
	}

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'listener_a') x`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminated %d backends: %v", n, err)
	}
	select {
	case err := <-downs:
		if err == nil {
			t.Fatal("down without a cause")
		}
		t.Logf("listener down: %v", err)
	case p := <-got:
		t.Fatalf("heard %q after the cut", p)
	case <-time.After(10 * time.Second):
		t.Fatal("the lost connection was not reported")
	}
	// The pool's other connections were cut too, and the first attempt
	// may draw one of them: more losses may come before the return.
	for back := false; !back; {
		select {
		case <-ups:
			back = true
		case err := <-downs:
			t.Logf("listener down again: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not come back")
		}
	}
	if err := b.Notify(ctx, ch, []byte("after")); err != nil {
		t.Fatal(err)
	}
	hear("after")

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Listen returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not stop with its context")
	}
}
