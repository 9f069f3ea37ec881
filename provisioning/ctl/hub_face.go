package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"kiosk/provisioning/hubd"
	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/pgstore"
)

const hubFaceUsage = "usage: kioskctl hub face %s --identity ID%s [--config FILE | --dsn URL | --db FILE]"

// hubEnrolments opens the bank's enrolment store: a PostgreSQL database
// (--dsn), a bbolt file (--db) or the store of a kioskhub configuration
// (--config, the default).
func hubEnrolments(ctx context.Context, cfgPath, dsn, db string) (hubstore.EnrolmentStore, func() error, error) {
	var s hubstore.Store
	var err error
	switch {
	case dsn != "":
		s, err = pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 2})
	case db != "":
		if _, err = os.Stat(db); err == nil { // never create an empty store by mistake
			s, err = hubstore.OpenBolt(db)
		}
	default:
		var cfg hubd.Config
		if cfg, err = hubd.Load(cfgPath); err == nil {
			s, _, err = hubd.OpenStore(ctx, cfg.Store)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	e, ok := s.(hubstore.EnrolmentStore)
	if !ok {
		s.Close()
		return nil, nil, fmt.Errorf("store %T holds no face enrolments", s)
	}
	return e, s.Close, nil
}

// hubFace is `hub face enroll` (photo != nil) and `hub face remove`.
func hubFace(e *env, args []string, enroll bool) int {
	name, extra := "remove", ""
	if enroll {
		name, extra = "enroll", " --photo FILE.jpg"
	}
	fs := flag.NewFlagSet("hub face "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	identity := fs.String("identity", "", "the customer's eID identity (eID number, as `kioskctl eid read` prints it)")
	photo := fs.String("photo", "", "the customer's face photo: a JPEG of at most 40 KiB (enroll)")
	cfgPath := fs.String("config", "/etc/kioskhub/kioskhub.toml", "kioskhub configuration (its store holds the enrolments)")
	dsn := fs.String("dsn", "", "the hub's PostgreSQL database instead (postgres:// URL)")
	db := fs.String("db", "", "a reference hub's bbolt file instead")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *identity == "" || (enroll != (*photo != "")) ||
		(*dsn != "" && *db != "") {
		fmt.Fprintf(e.stderr, hubFaceUsage+"\n", name, extra)
		return ExitUsage
	}
	prefix := "kioskctl hub face " + name + ":"
	var face []byte
	if enroll {
		st, err := os.Stat(*photo)
		if err != nil {
			fmt.Fprintln(e.stderr, prefix, err)
			return ExitUsage
		}
		if !st.Mode().IsRegular() || st.Size() > 1<<20 {
			fmt.Fprintln(e.stderr, prefix, *photo, "is not a photo file (a JPEG of at most 40 KiB)")
			return ExitUsage
		}
		if face, err = os.ReadFile(*photo); err != nil {
			fmt.Fprintln(e.stderr, prefix, err)
			return ExitUsage
		}
		defer clear(face)
		// Checked before the store is opened: bad input changes nothing.
		if err := hubstore.CheckEnrolment(*identity, face); err != nil {
			fmt.Fprintln(e.stderr, prefix, *photo+":", err)
			return ExitUsage
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, closeFn, err := hubEnrolments(ctx, *cfgPath, *dsn, *db)
	if err != nil {
		fmt.Fprintln(e.stderr, prefix, err)
		return ExitFail
	}
	defer closeFn()
	if enroll {
		if err := store.EnrolFace(ctx, *identity, face, time.Now()); err != nil {
			fmt.Fprintln(e.stderr, prefix, err)
			return ExitFail
		}
		// Never the face itself: the identity and the size only.
		fmt.Fprintf(e.stdout, "enrolled the face of %s (%d bytes)\n", *identity, len(face))
		return ExitOK
	}
	if err := store.RemoveFace(ctx, *identity); errors.Is(err, hubstore.ErrNotFound) {
		fmt.Fprintln(e.stderr, prefix, "no face enrolled for", *identity)
		return ExitFail
	} else if err != nil {
		fmt.Fprintln(e.stderr, prefix, err)
		return ExitFail
	}
	fmt.Fprintln(e.stdout, "removed the face of", *identity)
	return ExitOK
}
