package usage

import (
	"sort"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/glob"
)

// Pricing maps model names to prices. Patterns are exact names or globs with
// the semantics of glob.Match ('*' any run, '?' one byte). An exact name
// wins; otherwise the most specific matching glob (most non-wildcard bytes),
// and among equally specific globs the one Set last, so configured overrides
// beat the defaults.
//
// Lookup is safe for concurrent use; Set is not (configure, then share).
type Pricing struct {
	exact map[string]Price
	globs []globPrice // most specific first, then most recently set
	seq   int
}

type globPrice struct {
	pattern     string
	price       Price
	specificity int
	seq         int
}

// NewPricing returns an empty table.
func NewPricing() *Pricing { return &Pricing{exact: make(map[string]Price)} }

// Set prices the models matching pattern, replacing an earlier price of the
// same pattern.
func (p *Pricing) Set(pattern string, price Price) {
	p.seq++
	if !glob.Is(pattern) {
		p.exact[pattern] = price
		return
	}
	g := globPrice{
		pattern:     pattern,
		price:       price,
		specificity: glob.Specificity(pattern),
		seq:         p.seq,
	}
	for i := range p.globs {
		if p.globs[i].pattern == pattern {
			p.globs[i] = g
			p.sort()
			return
		}
	}
	p.globs = append(p.globs, g)
	p.sort()
}

func (p *Pricing) sort() {
	sort.Slice(p.globs, func(i, j int) bool {
		a, b := &p.globs[i], &p.globs[j]
		if a.specificity != b.specificity {
			return a.specificity > b.specificity
		}
		return a.seq > b.seq
	})
}

// Lookup returns the price of the first of models that has one (callers pass
// the upstream model, then the requested model). Empty names are skipped.
func (p *Pricing) Lookup(models ...string) (Price, bool) {
	for _, m := range models {
		if m == "" {
			continue
		}
		if pr, ok := p.exact[m]; ok {
			return pr, true
		}
		for i := range p.globs {
			if glob.Match(p.globs[i].pattern, m) {
				return p.globs[i].price, true
			}
		}
	}
	return Price{}, false
}
