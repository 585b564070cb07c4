package gateway

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
