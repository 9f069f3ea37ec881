package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"kiosk/provisioning/hubstore"
)

func asRegistry(t *testing.T, s hubstore.Store) hubstore.Registry {
	t.Helper()
	r, ok := s.(hubstore.Registry)
	if !ok {
		t.Fatalf("%T does not implement hubstore.Registry", s)
	}
	return r
}

// registry: tokens are single-use, bound to a device, expire; failed uses
// change nothing; certificates and revocations round-trip.
func registry(t *testing.T, s hubstore.Store) {
	defer s.Close()
	r := asRegistry(t, s)
	ctx := context.Background()
	now := day0
	tok := hubstore.Token{Hash: "h1", Device: "k1", Created: now, Expires: now.Add(30 * time.Minute)}
	if err := r.PutToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := r.PutToken(ctx, tok); !errors.Is(err, hubstore.ErrExists) {
		t.Fatalf("same hash twice: %v", err)
	}
	if err := r.PutToken(ctx, hubstore.Token{Hash: "h2", Device: "k2", Created: now, Expires: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		hash, dev string
		at        time.Time
		want      error
	}{
		{"nope", "k1", now, hubstore.ErrTokenUnknown},
		{"h1", "k2", now, hubstore.ErrTokenDevice},
		{"h1", "k1", now.Add(30 * time.Minute), hubstore.ErrTokenExpired},
		{"h1", "k1", now.Add(time.Minute), nil},
		{"h1", "k1", now.Add(2 * time.Minute), hubstore.ErrTokenUsed},
		{"h2", "k2", now.Add(time.Hour), hubstore.ErrTokenExpired},
		{"h2", "k2", now, nil},
	} {
		if err := r.UseToken(ctx, c.hash, c.dev, c.at); !errors.Is(err, c.want) {
			t.Fatalf("UseToken(%s, %s, %s) = %v, want %v", c.hash, c.dev, c.at, err, c.want)
		}
	}

	c1 := hubstore.DeviceCert{Fingerprint: "fp1", Serial: "a1", Device: "k1", NotAfter: now.Add(365 * 24 * time.Hour), Issued: now, DER: []byte{1, 2, 3}}
	c2 := hubstore.DeviceCert{Fingerprint: "fp2", Serial: "a2", Device: "k1", NotAfter: now.Add(400 * 24 * time.Hour), Issued: now.Add(time.Hour), DER: []byte{4}}
	c3 := hubstore.DeviceCert{Fingerprint: "fp3", Serial: "a3", Device: "k2", NotAfter: now.Add(time.Hour), Issued: now, DER: []byte{5}}
	for _, c := range []hubstore.DeviceCert{c2, c1, c3} {
		if err := r.PutCert(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PutCert(ctx, c1); !errors.Is(err, hubstore.ErrExists) {
		t.Fatalf("same certificate twice: %v", err)
	}
	got, err := r.CertByFingerprint(ctx, "fp1")
	if err != nil || got.Serial != "a1" || got.Device != "k1" || !got.NotAfter.Equal(c1.NotAfter) || string(got.DER) != string(c1.DER) {
		t.Fatalf("CertByFingerprint: %+v %v", got, err)
	}
	if _, err := r.CertByFingerprint(ctx, "none"); !errors.Is(err, hubstore.ErrNotFound) {
		t.Fatalf("missing certificate: %v", err)
	}
	if got, err := r.CertBySerial(ctx, "a3"); err != nil || got.Device != "k2" || got.Fingerprint != "fp3" {
		t.Fatalf("CertBySerial: %+v %v", got, err)
	}
	if _, err := r.CertBySerial(ctx, "ff"); !errors.Is(err, hubstore.ErrNotFound) {
		t.Fatalf("CertBySerial of an unknown serial: %v", err)
	}
	list, err := r.DeviceCerts(ctx, "k1")
	if err != nil || len(list) != 2 || list[0].Serial != "a1" || list[1].Serial != "a2" {
		t.Fatalf("DeviceCerts: %+v %v", list, err)
	}

	if revs, err := r.Revocations(ctx); err != nil || len(revs) != 0 {
		t.Fatalf("revocations of a new store: %v %v", revs, err)
	}
	rv := hubstore.Revocation{Serial: "a1", Device: "k1", Reason: "tamper", Revoked: now}
	if err := r.Revoke(ctx, rv); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke(ctx, hubstore.Revocation{Serial: "a1", Device: "k1", Reason: "again", Revoked: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	revs, err := r.Revocations(ctx)
	if err != nil || len(revs) != 1 || revs[0].Reason != "tamper" || !revs[0].Revoked.Equal(now) {
		t.Fatalf("revocations: %+v %v", revs, err)
	}
}

// Instances presented one token at once: exactly one enrollment wins.
func concurrentUseToken(t *testing.T, s hubstore.Store) {
	defer s.Close()
	r := asRegistry(t, s)
	ctx := context.Background()
	if err := r.PutToken(ctx, hubstore.Token{Hash: "race", Device: "k1", Created: day0, Expires: day0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- r.UseToken(ctx, "race", "k1", day0) })
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, hubstore.ErrTokenUsed):
			t.Fatalf("concurrent use: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d uses succeeded, want 1", ok)
	}
}
