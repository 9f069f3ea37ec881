package pgstore_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

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
