package route

import "time"

// SetOnCool sets the function that learns every cooldown a failure
// starts (key, until), and every breaker a success closes after a
// cooldown (key, zero time), outside the breaker's lock. The returned function
// unsets it, unless another was set since (a reload's).
func (h *Health) SetOnCool(f func(key string, until time.Time)) (unset func()) {
	h.mu.Lock()
	h.onCoolID++
	id := h.onCoolID
	h.onCool = f
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		if h.onCoolID == id {
			h.onCool = nil
		}
		h.mu.Unlock()
	}
}

// Cool cools the target down until until, as if its breaker had opened
// here (a cooldown learned from another gateway). A later cooldown the
// target already has is kept. It does not call the OnCool function.
func (h *Health) Cool(key string, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.targets[key]
	if s == nil {
		s = &targetState{}
		h.targets[key] = s
	}
	if until.After(s.until) {
		s.until = until
		s.probeAt = time.Time{}
	}
}

// Uncool ends a cooldown learned with Cool(key, until) that ended where it
// came from (the target answered there), unless this gateway has cooled
// the target down further since.
func (h *Health) Uncool(key string, until time.Time) {
	h.mu.Lock()
	if s := h.targets[key]; s != nil && s.until.Equal(until) {
		delete(h.targets, key)
	}
	h.mu.Unlock()
}

// State is the target's breaker state now: "closed", "open" (cooling
// down) or "half_open" (the cooldown is over; the next request probes it).
func (h *Health) State(key string, now time.Time) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.targets[key]
	switch {
	case s == nil || s.until.IsZero():
		return "closed"
	case now.Before(s.until):
		return "open"
	}
	return "half_open"
}
