// Package route maps requested model names to upstream targets: exact names
// and globs (most specific wins), weighted targets, ordered fallbacks and a
// per-target circuit breaker.
package route

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/glob"
)

// Target is one place a model can be served: a provider and the model name
// to ask it for. An empty Model passes the requested name through.
type Target struct {
	Provider string
	Model    string
	Weight   int
	// Cost is the target's price per token, for PolicyCost (the caller
	// fills it from its pricing table).
	Cost float64
	// Quota reports the target's quota headroom, for PolicyHeadroom (set
	// by Table.Bind).
	Quota Headroom

	key  string // Key, precomputed by New
	load *Load  // set by Table.Bind
}

// UpstreamModel is the model name sent to the provider for a request that
// asked for requested.
func (t *Target) UpstreamModel(requested string) string {
	if t.Model == "" {
		return requested
	}
	return t.Model
}

// Route is one entry of the routing table.
type Route struct {
	// Pattern is an exact model name or a glob ('*' any run, '?' one byte).
	Pattern   string
	Targets   []Target
	Fallbacks []string // model names tried in order when every target failed
	Retries   int      // extra attempts on this route before falling back
	// MaxTokens is the default max_tokens sent to providers that require one
	// (Anthropic); 0 leaves the provider's own default.
	MaxTokens int64
	// Policy chooses among the targets (Choose). Default: PolicyWeighted.
	Policy Policy
	// HedgeAfter, when > 0, starts the next target too when the chosen one
	// has sent no first byte after that long; HedgeP95 uses the chosen
	// target's estimated p95 time to first token instead (HedgeAfter is
	// then the wait before the first sample). MaxHedges bounds the extra
	// attempts per request (default 1).
	HedgeAfter time.Duration
	HedgeP95   bool
	MaxHedges  int

	glob        bool
	specificity int
	order       int
	totalWeight int
}

// Table is an immutable routing table. Build it with New.
type Table struct {
	exact map[string]*Route
	globs []*Route // most specific first
	names []string // exact names in declaration order
}

// New validates routes and builds a table. knownProvider reports whether a
// provider name exists.
func New(routes []Route, knownProvider func(string) bool) (*Table, error) {
	t := &Table{exact: make(map[string]*Route)}
	seen := make(map[string]bool)
	for i := range routes {
		r := routes[i]
		if r.Pattern == "" {
			return nil, fmt.Errorf("route %d: empty model name", i)
		}
		if seen[r.Pattern] {
			return nil, fmt.Errorf("model %q declared twice", r.Pattern)
		}
		seen[r.Pattern] = true
		if len(r.Targets) == 0 {
			return nil, fmt.Errorf("model %q: no targets", r.Pattern)
		}
		if r.Retries < 0 {
			return nil, fmt.Errorf("model %q: negative retries", r.Pattern)
		}
		r.glob = glob.Is(r.Pattern)
		r.order = i
		for j, tg := range r.Targets {
			if knownProvider != nil && !knownProvider(tg.Provider) {
				return nil, fmt.Errorf("model %q: target %d: unknown provider %q", r.Pattern, j, tg.Provider)
			}
			if tg.Weight < 0 {
				return nil, fmt.Errorf("model %q: target %d: negative weight", r.Pattern, j)
			}
			if tg.Weight == 0 {
				r.Targets[j].Weight = 1
			}
			r.Targets[j].key = targetKey(tg.Provider, tg.Model)
			r.totalWeight += r.Targets[j].Weight
		}
		if r.glob {
			r.specificity = glob.Specificity(r.Pattern)
			t.globs = append(t.globs, &r)
		} else {
			t.exact[r.Pattern] = &r
			t.names = append(t.names, r.Pattern)
		}
	}
	sort.SliceStable(t.globs, func(i, j int) bool { return t.globs[i].specificity > t.globs[j].specificity })
	for _, r := range routes {
		for _, fb := range r.Fallbacks {
			if _, ok := t.Lookup(fb); !ok {
				return nil, fmt.Errorf("model %q: fallback %q matches no model", r.Pattern, fb)
			}
		}
	}
	return t, nil
}

// Lookup finds the route for a model name: an exact entry, else the most
// specific matching glob (ties go to the one declared first).
func (t *Table) Lookup(model string) (*Route, bool) {
	if r, ok := t.exact[model]; ok {
		return r, true
	}
	for _, r := range t.globs {
		if glob.Match(r.Pattern, model) {
			return r, true
		}
	}
	return nil, false
}

// Names lists the exact model names in declaration order.
func (t *Table) Names() []string { return t.names }

// Pick chooses a target by weight among those the breaker allows, preferring
// targets not in tried. It returns -1 when every target is cooling down.
func (r *Route) Pick(h *Health, now time.Time, tried []int) int {
	avail := r.availability(h, now)
	total := 0
	for i := range r.Targets {
		if avail.has(i) && !contains(tried, i) {
			total += r.Targets[i].Weight
		}
	}
	if total == 0 {
		// Every untried target is cooling down or was tried: allow a retry on
		// a tried target that is still healthy.
		for i := range r.Targets {
			if avail.has(i) {
				total += r.Targets[i].Weight
			}
		}
		if total == 0 {
			return -1
		}
		tried = nil
	}
	n := rand.IntN(total)
	for i := range r.Targets {
		if !avail.has(i) || contains(tried, i) {
			continue
		}
		if n < r.Targets[i].Weight {
			return i
		}
		n -= r.Targets[i].Weight
	}
	return -1
}

func (r *Route) available(h *Health, now time.Time, i int) bool {
	return h == nil || h.Available(r.Targets[i].Key(), now)
}

// Key identifies a target in the breaker. Tables built by New precompute it,
// so the attempt loop does not build a string per call.
func (t *Target) Key() string {
	// The comparison (no allocation) keeps Key right for a Target built or
	// edited outside New.
	if k := t.key; len(k) == len(t.Provider)+1+len(t.Model) &&
		k[:len(t.Provider)] == t.Provider && k[len(t.Provider)] == 0 && k[len(t.Provider)+1:] == t.Model {
		return k
	}
	return targetKey(t.Provider, t.Model)
}

func targetKey(provider, model string) string { return provider + "\x00" + model }

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
