package session

import "errors"

// ErrOutOfService is returned by Start while the kiosk is out of service
// (enclosure tamper, maintenance): no new transaction may begin.
var ErrOutOfService = errors.New("session: kiosk out of service")

// SetOutOfService takes the kiosk out of service with a reason code
// ("tamper", "maintenance"), or puts it back in service with "". A session
// already running is cancelled (reason "cancelled_out_of_service"): an
// opened enclosure must not finish a payment.
func (m *Machine) SetOutOfService(reason string) {
	m.mu.Lock()
	was := m.outOfService
	m.outOfService = reason
	m.mu.Unlock()
	if reason != "" && was != reason {
		m.log.Warn("kiosk out of service", "reason", reason)
		_ = m.Cancel("", "cancelled_out_of_service") // ErrNoSession when idle
	} else if reason == "" && was != "" {
		m.log.Info("kiosk back in service", "was", was)
	}
}

// OutOfService returns why the kiosk refuses sessions ("" = in service).
func (m *Machine) OutOfService() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outOfService
}
