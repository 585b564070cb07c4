// Package usage prices the tokens of a request and keeps the per-key spend
// and usage ledger.
//
// Money is counted in micro-USD (int64), so sums are exact and a ledger can
// be incremented atomically by Redis.
package usage

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Price is USD per 1M tokens. Prices are used with a resolution of 1e-6 USD
// per 1M tokens (one pico-USD per token).
type Price struct {
	Input  float64 `json:"input"`
	Output float64 `json:"output"`
	// Cached is the price of cached input tokens (prompt cache reads);
	// 0 means the Input price.
	Cached float64 `json:"cached,omitempty"`
}

// maxPrice bounds each price (USD per 1M tokens) so that per-token amounts
// stay far from overflowing.
const maxPrice = 1e6

// Validate checks that every price is finite and in [0, 1e6].
func (p Price) Validate() error {
	for _, v := range [...]float64{p.Input, p.Output, p.Cached} {
		if !(v >= 0 && v <= maxPrice) { // also rejects NaN
			return fmt.Errorf("usage: price %v must be between 0 and %v USD per 1M tokens", v, maxPrice)
		}
	}
	return nil
}

// CostMicros returns the cost of u in micro-USD, rounded up:
// ((input-cached)*Input + cached*Cached + output*Output) / 1M tokens.
// Cached tokens are counted within the input tokens (as OpenAI reports them);
// negative counts are treated as 0 and cached as at most input. The result
// saturates at math.MaxInt64.
//
// One token at P USD per 1M tokens costs P micro-USD, so the sum is computed
// exactly in pico-USD (prices rounded to 1e-6) and only the total is rounded.
func (p Price) CostMicros(u openai.Usage) int64 {
	in, out, cached := max(u.InputTokens, 0), max(u.OutputTokens, 0), max(u.CachedTokens, 0)
	cached = min(cached, in)
	cachedPrice := p.Cached
	if cachedPrice == 0 {
		cachedPrice = p.Input
	}
	var hi, lo uint64 // 128-bit sum in pico-USD
	for _, t := range [...]struct {
		tokens int64
		price  float64
	}{{in - cached, p.Input}, {cached, cachedPrice}, {out, p.Output}} {
		h, l := bits.Mul64(uint64(t.tokens), picos(t.price))
		var carry uint64
		lo, carry = bits.Add64(lo, l, 0)
		hi += h + carry
	}
	const perMicro = 1_000_000
	if hi >= perMicro { // quotient would not fit in 64 bits
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, perMicro)
	if r > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// picos converts USD per 1M tokens to pico-USD per token.
func picos(usdPerM float64) uint64 {
	if !(usdPerM > 0) {
		return 0
	}
	return uint64(math.Round(min(usdPerM, maxPrice) * 1e6))
}
