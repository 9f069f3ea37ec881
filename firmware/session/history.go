package session

// history keeps the last sessions for the till's status queries; the
// durable copy is the outbox.
type history struct {
	max   int
	order []string
	byKey map[string]Status
}

func newHistory(max int) *history { return &history{max: max, byKey: map[string]Status{}} }

func (h *history) add(s Status) {
	if s.Request == nil {
		return
	}
	keys := []string{s.Request.ID}
	if s.Request.MerchantRef != "" {
		keys = append(keys, s.Request.MerchantRef)
	}
	for _, k := range keys {
		if _, ok := h.byKey[k]; !ok {
			h.order = append(h.order, k)
		}
		h.byKey[k] = s
	}
	for len(h.order) > 2*h.max {
		delete(h.byKey, h.order[0])
		h.order = h.order[1:]
	}
}

func (h *history) get(k string) (Status, bool) {
	s, ok := h.byKey[k]
	return s, ok
}
