package usage

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"

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

	// memo remembers the glob verdict (a globMemo) of names looked up, so a
	// model priced by a glob or not priced at all costs one map read instead
	// of a scan of every glob. At most memoMax names are remembered (the
	// names come from the routing table and upstream answers, but nothing
	// bounds them there); past that, names are scanned.
	memo  sync.Map
	memoN atomic.Int32
}

// memoMax bounds the names Pricing.memo remembers.
const memoMax = 1024

type globMemo struct {
	price Price
	ok    bool
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
	p.forget()
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

// forget drops the remembered glob verdicts (Set changes them).
func (p *Pricing) forget() {
	p.memo.Clear()
	p.memoN.Store(0)
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
		if pr, ok := p.matchGlob(m); ok {
			return pr, true
		}
	}
	return Price{}, false
}

// matchGlob returns the price of the first glob matching m, remembering the
// verdict while fewer than memoMax names are remembered.
func (p *Pricing) matchGlob(m string) (Price, bool) {
	if v, ok := p.memo.Load(m); ok {
		g := v.(*globMemo)
		return g.price, g.ok
	}
	g := &globMemo{}
	for i := range p.globs {
		if glob.Match(p.globs[i].pattern, m) {
			g.price, g.ok = p.globs[i].price, true
			break
		}
	}
	if p.memoN.Load() < memoMax {
		// A clone: m may be a slice of a request or answer body.
		if _, loaded := p.memo.LoadOrStore(strings.Clone(m), g); !loaded {
			p.memoN.Add(1)
		}
	}
	return g.price, g.ok
}
