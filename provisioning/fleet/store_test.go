package fleet_test

import (
	"testing"

	"kiosk/provisioning/fleet"
	"kiosk/provisioning/fleet/fleettest"
)

func TestMemStore(t *testing.T) {
	fleettest.Run(t, func(*testing.T) fleet.Store { return fleet.NewMemStore() })
}
