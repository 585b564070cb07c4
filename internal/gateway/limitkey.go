package gateway

import (
	"sync"
	"sync/atomic"
)

// Scope is whose limit a limiter key counts.
type Scope string

// The scopes.
const (
	// ScopeKey: a gateway key's own limits, by key name.
	ScopeKey Scope = "key"
	// ScopeModel: a model's totals across all keys, by routing table pattern.
	ScopeModel Scope = "model"
)

// Limit is what a limiter key counts.
type Limit string

// The limits.
const (
	LimitRPM         Limit = "rpm"
	LimitTPM         Limit = "tpm"
	LimitConcurrency Limit = "concurrency"
	LimitBudget      Limit = "budget"
)

// LimiterKey names the limiter state of one limit: "key:team-a:rpm",
// "model:gpt-*:tpm". Shared limiter state (Redis) is stored under these
// names, so they must stay stable across versions.
func LimiterKey(s Scope, name string, l Limit) string {
	return string(s) + ":" + name + ":" + string(l)
}

// limiterKeys are the limiter keys of one scope's limits.
type limiterKeys struct {
	rpm, tpm, concurrency, budget string
}

type scopedName struct {
	scope Scope
	name  string
}

// limiterKeyCache remembers the limiter keys of the keys and models seen,
// so that a request does not build its keys' names again: reads are one
// atomic load and a map lookup; a name not seen yet copies the map. It
// forgets everything past maxCachedNames names (keys created and revoked
// at run time).
type limiterKeyCache struct {
	m  atomic.Pointer[map[scopedName]*limiterKeys]
	mu sync.Mutex // serializes writers
}

const maxCachedNames = 4096

// limiterKeys returns the limiter keys of name's limits in scope s.
func (gd *Guard) limiterKeys(s Scope, name string) *limiterKeys {
	c := &gd.names
	sn := scopedName{s, name}
	if m := c.m.Load(); m != nil {
		if lk := (*m)[sn]; lk != nil {
			return lk
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var next map[scopedName]*limiterKeys
	if m := c.m.Load(); m != nil && len(*m) < maxCachedNames {
		if lk := (*m)[sn]; lk != nil {
			return lk
		}
		next = make(map[scopedName]*limiterKeys, len(*m)+1)
		for k, v := range *m {
			next[k] = v
		}
	} else {
		next = make(map[scopedName]*limiterKeys, 1)
	}
	lk := &limiterKeys{rpm: LimiterKey(s, name, LimitRPM), tpm: LimiterKey(s, name, LimitTPM),
		concurrency: LimiterKey(s, name, LimitConcurrency), budget: LimiterKey(s, name, LimitBudget)}
	next[sn] = lk
	c.m.Store(&next)
	return lk
}
