package route

import (
	"sync"
	"time"
)

// Health is a circuit breaker over targets: after MaxFails consecutive
// failures a target cools down for Cooldown, then one request may probe it
// (half-open); a success closes the breaker again. It lives in a usage pool
// so that config reloads keep what it learned.
type Health struct {
	mu      sync.Mutex
	targets map[string]*targetState
	// MaxFails consecutive failures open the breaker. Default 3.
	MaxFails int
	// Cooldown is how long an open breaker rejects a target. Default 30s.
	Cooldown time.Duration
	// onCool, when set (SetOnCool), learns every cooldown a failure
	// starts, to share it with other gateways.
	onCool   func(key string, until time.Time)
	onCoolID uint64
}

type targetState struct {
	fails int
	until time.Time // cooling down until
	// probeAt is when the half-open probe started; a probe whose outcome
	// never came (the client went away) expires after Cooldown.
	probeAt time.Time
}

// NewHealth returns a breaker with the given thresholds (zero = defaults).
func NewHealth(maxFails int, cooldown time.Duration) *Health {
	h := &Health{targets: make(map[string]*targetState)}
	h.Configure(maxFails, cooldown)
	return h
}

// Configure updates the thresholds, keeping learned state.
func (h *Health) Configure(maxFails int, cooldown time.Duration) {
	if maxFails <= 0 {
		maxFails = 3
	}
	if cooldown <= 0 {
		cooldown = 30 * time.Second
	}
	h.mu.Lock()
	h.MaxFails, h.Cooldown = maxFails, cooldown
	h.mu.Unlock()
}

// Available reports whether a request may go to the target now.
func (h *Health) Available(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.available(key, now)
}

// available is Available with h.mu held.
func (h *Health) available(key string, now time.Time) bool {
	s := h.targets[key]
	if s == nil || s.until.IsZero() {
		return true
	}
	if now.Before(s.until) {
		return false
	}
	// Half-open: let exactly one probe through at a time.
	return s.probeAt.IsZero() || now.Sub(s.probeAt) >= h.Cooldown
}

// Begin marks the start of a request to the target; a request that starts
// after the cooldown is the half-open probe.
func (h *Health) Begin(key string, now time.Time) {
	h.mu.Lock()
	if s := h.targets[key]; s != nil && !s.until.IsZero() && !now.Before(s.until) {
		s.probeAt = now
	}
	h.mu.Unlock()
}

// Abort forgets a request whose outcome says nothing about the target (the
// client went away), so a half-open probe slot is freed at once.
func (h *Health) Abort(key string) {
	h.mu.Lock()
	if s := h.targets[key]; s != nil {
		s.probeAt = time.Time{}
	}
	h.mu.Unlock()
}

// Success closes the breaker for the target (telling the SetOnCool
// function, with a zero time, when it had been cooling down).
func (h *Health) Success(key string) {
	h.mu.Lock()
	s := h.targets[key]
	delete(h.targets, key)
	notify := h.onCool
	h.mu.Unlock()
	if notify != nil && s != nil && !s.until.IsZero() {
		notify(key, time.Time{})
	}
}

// Failure records a failure; coolFor > 0 (a Retry-After beyond what the
// gateway waits) opens the breaker for at least that long.
func (h *Health) Failure(key string, now time.Time, coolFor time.Duration) {
	h.mu.Lock()
	until, notify := h.failure(key, now, coolFor), h.onCool
	h.mu.Unlock()
	if notify != nil && !until.IsZero() {
		notify(key, until)
	}
}

// failure records a failure and returns the cooldown it started (zero:
// none). h.mu is held.
func (h *Health) failure(key string, now time.Time, coolFor time.Duration) time.Time {
	s := h.targets[key]
	if s == nil {
		s = &targetState{}
		h.targets[key] = s
	}
	s.fails++
	s.probeAt = time.Time{}
	if s.fails >= h.MaxFails || !s.until.IsZero() {
		coolFor = max(coolFor, h.Cooldown)
	}
	if coolFor > 0 {
		s.until = now.Add(coolFor)
		return s.until
	}
	return time.Time{}
}

// CoolingDown lists targets whose breaker is open now (for the admin API).
func (h *Health) CoolingDown(now time.Time) map[string]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]time.Time)
	for k, s := range h.targets {
		if now.Before(s.until) {
			out[k] = s.until
		}
	}
	return out
}
