package quota

import (
	"context"
	"sync"
	"time"
)

// Target is what paces one routing target: its provider's quota, its own,
// or both (nil entries are none), and how long a request may wait for
// them. It implements route.Headroom.
type Target struct {
	Pacers [2]*Pacer
	// Queue is how long a request may wait for room. 0: no wait.
	Queue time.Duration
}

// Headroom is the lowest headroom of the target's quotas.
func (t *Target) Headroom(now time.Time) float64 {
	h := 1.0
	for _, p := range t.Pacers {
		if p != nil {
			h = min(h, p.Headroom(now))
		}
	}
	return h
}

// Observe gives a provider's report on an answer of the target to the
// target's own quota, or to its provider's when it has none: providers
// report the quota of the model (deployment) that answered.
func (t *Target) Observe(now time.Time, r Report) {
	if p := t.Pacers[1]; p != nil {
		p.Observe(now, r)
	} else if p := t.Pacers[0]; p != nil {
		p.Observe(now, r)
	}
}

// Registry keeps pacers by name across config reloads: a reload that
// keeps a quota's limits keeps its state.
type Registry struct {
	mu     sync.Mutex
	pacers map[string]*Pacer
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{pacers: make(map[string]*Pacer)} }

// Get returns the pacer named name with limits, paced in process or on
// shared (under keyPrefix), reusing the one it has when nothing changed.
func (r *Registry) Get(name string, limits Limits, shared Limiter, keyPrefix string) *Pacer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if limits.Burst <= 0 {
		limits.Burst = max(1, limits.RPM/10)
	}
	if p := r.pacers[name]; p != nil && p.limits == limits && p.shared == shared && p.prefix == keyPrefix {
		return p
	}
	p := New(name, limits, shared, keyPrefix)
	r.pacers[name] = p
	return p
}

// Each calls f for every pacer, in no particular order.
func (r *Registry) Each(f func(*Pacer)) {
	r.mu.Lock()
	ps := make([]*Pacer, 0, len(r.pacers))
	for _, p := range r.pacers {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		f(p)
	}
}

type targetKey struct{}

// WithTarget returns ctx carrying t, for the provider's transport to
// report the rate-limit headers of the attempt's answer to (Observe).
func WithTarget(ctx context.Context, t *Target) context.Context {
	return context.WithValue(ctx, targetKey{}, t)
}

// TargetFrom is the Target WithTarget put in ctx, or nil.
func TargetFrom(ctx context.Context) *Target {
	t, _ := ctx.Value(targetKey{}).(*Target)
	return t
}
