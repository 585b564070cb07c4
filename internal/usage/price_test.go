package usage_test

import (
	"math"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

func TestCostMicros(t *testing.T) {
	t.Parallel()
	gpt4o := usage.Price{Input: 2.50, Output: 10, Cached: 1.25}
	mini := usage.Price{Input: 0.15, Output: 0.60, Cached: 0.075}
	for _, tc := range []struct {
		name  string
		price usage.Price
		u     openai.Usage
		want  int64
	}{
		{"zero", gpt4o, openai.Usage{}, 0},
		{"input and output", gpt4o, openai.Usage{InputTokens: 1000, OutputTokens: 500}, 2500 + 5000},
		// (1000-400)*2.5 + 400*1.25 + 500*10
		{"cached", gpt4o, openai.Usage{InputTokens: 1000, CachedTokens: 400, OutputTokens: 500}, 1500 + 500 + 5000},
		{"cached defaults to input price", usage.Price{Input: 3, Output: 15}, openai.Usage{InputTokens: 100, CachedTokens: 100}, 300},
		{"cached capped at input", gpt4o, openai.Usage{InputTokens: 10, CachedTokens: 50}, 13}, // 10*1.25 = 12.5
		{"negative counts", gpt4o, openai.Usage{InputTokens: -5, OutputTokens: -1, CachedTokens: -3}, 0},
		// No float artifacts: 0.075*1000 is exactly 75, not 76.
		{"exact decimal", mini, openai.Usage{InputTokens: 1000, CachedTokens: 1000}, 75},
		{"0.1 + 0.2", usage.Price{Input: 0.1, Output: 0.2}, openai.Usage{InputTokens: 10, OutputTokens: 10}, 3},
		// Rounded up, only once over the total: 0.15+0.6 = 0.75 -> 1.
		{"round up total", mini, openai.Usage{InputTokens: 1, OutputTokens: 1}, 1},
		{"round up fraction", mini, openai.Usage{InputTokens: 1_000_001}, 150_001},
		{"embedding", usage.Price{Input: 0.02}, openai.Usage{InputTokens: 8191}, 164}, // 163.82
		{"one million tokens", usage.Price{Input: 15, Output: 75}, openai.Usage{InputTokens: 1e6, OutputTokens: 1e6}, 90e6},
		{"free", usage.Price{}, openai.Usage{InputTokens: 1e9, OutputTokens: 1e9}, 0},
		{"saturates", usage.Price{Input: 1e6, Output: 1e6}, openai.Usage{InputTokens: math.MaxInt64, OutputTokens: math.MaxInt64}, math.MaxInt64},
		{"large but exact", usage.Price{Output: 75}, openai.Usage{OutputTokens: 1e15}, 75e15},
	} {
		if got := tc.price.CostMicros(tc.u); got != tc.want {
			t.Errorf("%s: CostMicros = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPriceValidate(t *testing.T) {
	t.Parallel()
	if err := (usage.Price{Input: 2.5, Output: 10, Cached: 1.25}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []usage.Price{{Input: -1}, {Output: math.NaN()}, {Cached: math.Inf(1)}, {Input: 2e6}} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}
