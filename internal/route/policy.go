package route

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is how a route chooses among its targets.
type Policy uint8

// The policies.
const (
	// PolicyWeighted picks at random by weight (the default).
	PolicyWeighted Policy = iota
	// PolicyLeastLatency picks the target with the lowest moving average
	// time to first token; a target without a sample yet goes first, so
	// every target is measured once.
	PolicyLeastLatency
	// PolicyLeastBusy picks the target with the fewest requests in flight.
	PolicyLeastBusy
	// PolicyCost picks the cheapest target by the pricing table (Target.Cost).
	PolicyCost
	// PolicyHeadroom picks the target with the most quota left
	// (Target.Quota).
	PolicyHeadroom
)

var policyNames = [...]string{"weighted", "least_latency", "least_busy", "cost", "headroom"}

func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy reads a policy's name; "" is PolicyWeighted.
func ParsePolicy(s string) (Policy, error) {
	if s == "" {
		return PolicyWeighted, nil
	}
	for i, n := range policyNames {
		if n == s {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown policy %q (want weighted, least_latency, least_busy, cost or headroom)", s)
}

// Headroom reports the share of a target's quota left now, in [0, 1]
// (1 without a quota).
type Headroom interface {
	Headroom(now time.Time) float64
}

// Bind gives every target of the table its Load from loads, before the
// table serves.
func (t *Table) Bind(loads *Loads) {
	t.Each(func(r *Route) {
		for i := range r.Targets {
			r.Targets[i].load = loads.Get(r.Targets[i].Key())
		}
	})
}

// Each calls f with every route of the table, exact names first, for
// setting up targets (Cost, Quota) before the table serves.
func (t *Table) Each(f func(r *Route)) {
	for _, n := range t.names {
		f(t.exact[n])
	}
	for _, r := range t.globs {
		f(r)
	}
}

// Load is the target's Load (nil before Table.Bind).
func (t *Target) Load() *Load { return t.load }

// Choose picks a target by the route's policy among those the breaker
// allows, preferring targets not in tried; ties go by weight (at random,
// in proportion to it). It returns -1 when every target is cooling down.
// It does not allocate.
func (r *Route) Choose(h *Health, now time.Time, tried []int) int {
	if r.Policy == PolicyWeighted {
		return r.Pick(h, now, tried)
	}
	avail := r.availability(h, now)
	if i := r.best(avail, now, tried, true); i >= 0 {
		return i
	}
	// Every untried target is cooling down or was tried: a retry on a
	// tried target that is still healthy.
	return r.best(avail, now, nil, false)
}

func (r *Route) best(avail availability, now time.Time, tried []int, skipTried bool) int {
	best, tie := -1, 0
	var bestScore float64
	for i := range r.Targets {
		if skipTried && contains(tried, i) || !avail.has(i) {
			continue
		}
		s, w := r.score(i, now), r.Targets[i].Weight
		switch {
		case best < 0 || s < bestScore:
			best, bestScore, tie = i, s, w
		case s == bestScore:
			// Weighted reservoir sampling among the tied targets.
			tie += w
			if rand.IntN(tie) < w {
				best = i
			}
		}
	}
	return best
}

// score is lower for a better target.
func (r *Route) score(i int, now time.Time) float64 {
	tg := &r.Targets[i]
	switch r.Policy {
	case PolicyLeastLatency:
		if tg.load != nil {
			return float64(tg.load.TTFT())
		}
	case PolicyLeastBusy:
		if tg.load != nil {
			return float64(tg.load.InFlight())
		}
	case PolicyCost:
		return tg.Cost
	case PolicyHeadroom:
		if tg.Quota != nil {
			return -tg.Quota.Headroom(now)
		}
		return -1
	}
	return 0
}

// availability is which targets of a route the breaker allows now: a bit
// per target for the first 64, read under one lock of the breaker; the
// rest are asked one by one.
type availability struct {
	bits uint64
	r    *Route
	h    *Health
	now  time.Time
}

func (r *Route) availability(h *Health, now time.Time) availability {
	a := availability{r: r, h: h, now: now}
	if h == nil {
		a.bits = ^uint64(0)
		return a
	}
	h.mu.Lock()
	for i := range min(len(r.Targets), 64) {
		if h.available(r.Targets[i].Key(), now) {
			a.bits |= 1 << i
		}
	}
	h.mu.Unlock()
	return a
}

func (a *availability) has(i int) bool {
	if i < 64 {
		return a.bits&(1<<i) != 0
	}
	return a.r.available(a.h, a.now, i)
}
