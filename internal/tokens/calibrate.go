package tokens

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// Run-time calibration of the estimate. The estimate (estimate.go) is
// calibrated offline against o200k_base and scaled per family; what a
// real upstream counts still differs (its tokenizer, its hidden framing).
// A Ratio learns, for one upstream model, how the upstream's reported
// prompt tokens compare with the estimate of the prompt it was sent, as an
// exponentially weighted moving average of reported/estimated over the
// answered requests, each sample clamped to [MinRatio, MaxRatio]. The
// calibrated estimate is the estimate times the ratio.
//
// Ratios are kept per routing-table name (a target's upstream model, or the
// pattern of a route whose target passes the requested name through), so
// their number is bounded by the configuration. Reading a ratio is one
// atomic load; learning one is a compare-and-swap: no lock, no allocation.
const (
	MinRatio = 0.5
	MaxRatio = 2.0
	// ratioAlpha is the moving average's weight of a new sample once
	// ratioWarmup samples were seen (before, it is 1/n: a plain mean).
	ratioAlpha  = 0.1
	ratioWarmup = 10
	// sampleEvery: past the warmup, one answered request in sampleEvery
	// teaches (Want), so that estimating the prompt again costs a
	// sixteenth of an estimate per request.
	sampleEvery = 16
	// minSample: prompts estimated below it are mostly framing, whose
	// share differs between upstreams; they teach nothing.
	minSample = 16
)

// Ratio is one model's learned correction of the estimate. The zero value
// is the factor 1 with no sample.
type Ratio struct {
	bits    atomic.Uint64 // float64 bits; 0: no sample yet
	samples atomic.Int64
	seen    atomic.Int64 // answers offered (Want)
}

// Want reports whether the next answer should teach the ratio: every one
// during the warmup, then one in sampleEvery.
func (r *Ratio) Want() bool {
	if r == nil {
		return false
	}
	n := r.seen.Add(1)
	return n <= ratioWarmup || n%sampleEvery == 0
}

// Value is the ratio (1 before any sample; 1 for a nil Ratio).
func (r *Ratio) Value() float64 {
	if r == nil {
		return 1
	}
	if b := r.bits.Load(); b != 0 {
		return math.Float64frombits(b)
	}
	return 1
}

// Samples is how many requests the ratio learned from.
func (r *Ratio) Samples() int64 {
	if r == nil {
		return 0
	}
	return r.samples.Load()
}

// Observe learns from one answered request: estimated is the uncalibrated
// estimate of the prompt sent (Counter.Prompt of For(model)), reported the
// upstream's prompt tokens.
func (r *Ratio) Observe(estimated, reported int64) {
	if r == nil || estimated < minSample || reported <= 0 {
		return
	}
	s := min(max(float64(reported)/float64(estimated), MinRatio), MaxRatio)
	n := r.samples.Add(1)
	alpha := ratioAlpha
	if n <= ratioWarmup {
		alpha = 1 / float64(n)
	}
	for {
		old := r.bits.Load()
		cur := 1.0
		if old != 0 {
			cur = math.Float64frombits(old)
		} else {
			alpha = 1
		}
		next := cur + alpha*(s-cur)
		if r.bits.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// Calibration is the ratios of one configuration's models. It is built
// once (Calibrations.Table) and only read after: safe for concurrent use.
type Calibration struct {
	ratios map[string]*Ratio
}

// Lookup returns the ratio of an upstream model, else of the routing
// entry (pattern) whose target passed the requested name through; nil
// when neither is calibrated (an exact encoding, or no configuration).
func (c *Calibration) Lookup(model, pattern string) *Ratio {
	if c == nil {
		return nil
	}
	if r, ok := c.ratios[model]; ok {
		return r
	}
	return c.ratios[pattern]
}

// Each calls fn for every ratio, by name.
func (c *Calibration) Each(fn func(name string, r *Ratio)) {
	if c == nil {
		return
	}
	names := make([]string, 0, len(c.ratios))
	for n := range c.ratios {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fn(n, c.ratios[n])
	}
}

// Calibrations keeps ratios across configurations (a config reload keeps
// what was learned for the names it still has).
type Calibrations struct {
	mu     sync.Mutex
	ratios map[string]*Ratio
}

// Table returns the calibration of names (routing-table names whose
// prompts are estimated: see Estimated), reusing the ratios learned for
// them and forgetting the others.
func (cs *Calibrations) Table(names []string) *Calibration {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	next := make(map[string]*Ratio, len(names))
	for _, n := range names {
		r := cs.ratios[n]
		if r == nil {
			r = new(Ratio)
		}
		next[n] = r
	}
	cs.ratios = next
	return &Calibration{ratios: next}
}

// Estimated reports whether model's prompts are estimated (not counted
// with its own tokenizer), so worth calibrating. A routing pattern that
// passes names through is estimated unless it names OpenAI's models.
func Estimated(model string) bool { return !For(model).Exact() }

// Calibrated returns c with its estimate scaled by r (exact counters are
// unchanged).
func (c Counter) Calibrated(r *Ratio) Counter {
	if c.Exact() || r == nil {
		return c
	}
	if c.factor == 0 {
		c.factor = 1
	}
	c.factor *= r.Value()
	return c
}

// Scale is what the counter multiplies the estimate by (1 for an exact
// encoding).
func (c Counter) Scale() float64 {
	if c.Exact() || c.factor == 0 {
		return 1
	}
	return c.factor
}

// Each calls fn for the ratios of the last Table, by name.
func (cs *Calibrations) Each(fn func(name string, r *Ratio)) {
	cs.mu.Lock()
	c := &Calibration{ratios: cs.ratios}
	cs.mu.Unlock()
	c.Each(fn)
}
