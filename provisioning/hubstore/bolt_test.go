package hubstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"kiosk/provisioning/hubstore"
	"kiosk/provisioning/hubstore/storetest"
)

func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) hubstore.Store {
		s, err := hubstore.OpenBolt(filepath.Join(t.TempDir(), "hub.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestFileMissing(t *testing.T) {
	if _, err := (&hubstore.File{Path: filepath.Join(t.TempDir(), "missing.db")}).List(context.Background(), hubstore.ListQuery{}); err == nil {
		t.Fatal("ListFile of a missing file")
	}
}
