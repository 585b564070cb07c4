package usage_test

import (
	"fmt"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

func TestDefaultPricing(t *testing.T) {
	t.Parallel()
	p := usage.DefaultPricing()
	for model, want := range map[string]usage.Price{
		"gpt-4o":                       {2.50, 10, 1.25},
		"gpt-4o-2024-08-06":            {2.50, 10, 1.25},
		"gpt-4o-2024-05-13":            {5, 15, 0}, // exact beats the dated glob
		"gpt-4o-mini":                  {0.15, 0.60, 0.075},
		"gpt-4o-mini-2024-07-18":       {0.15, 0.60, 0.075}, // more specific glob than gpt-4o-20*
		"gpt-4.1-nano-2025-04-14":      {0.10, 0.40, 0.025},
		"o3":                           {2, 8, 0.5},
		"o3-mini":                      {1.10, 4.40, 0.275},
		"o3-mini-2025-01-31":           {1.10, 4.40, 0.275},
		"text-embedding-3-small":       {0.02, 0, 0},
		"claude-3-5-haiku-20241022":    {0.80, 4, 0.08},
		"claude-3-haiku-20240307":      {0.25, 1.25, 0.03},
		"claude-sonnet-4-20250514":     {3, 15, 0.30},
		"claude-3-7-sonnet-latest":     {3, 15, 0.30},
		"claude-opus-4-1-20250805":     {15, 75, 1.50},
		"claude-opus-4-5-20251101":     {5, 25, 0.50}, // more specific than claude-opus-4*
		"gemini-2.5-flash":             {0.30, 2.50, 0.075},
		"gemini-2.5-flash-lite":        {0.10, 0.40, 0.025},
		"gemini-2.5-pro-preview-06-05": {1.25, 10, 0.31},
		"mistral-large-latest":         {2, 6, 0},
		"command-r-plus-08-2024":       {2.5, 10, 0},
		"command-r-08-2024":            {0.15, 0.6, 0},
	} {
		got, ok := p.Lookup(model)
		if !ok || got != want {
			t.Errorf("%s: %+v, %v; want %+v", model, got, ok, want)
		}
	}
	for _, model := range []string{"o3-pro", "gpt-4o-audio-preview", "llama-3", ""} {
		if got, ok := p.Lookup(model); ok {
			t.Errorf("%s priced %+v, want unknown", model, got)
		}
	}
}

func TestPricingSpecificityAndOverrides(t *testing.T) {
	t.Parallel()
	a, b, c, d := usage.Price{Input: 1}, usage.Price{Input: 2}, usage.Price{Input: 3}, usage.Price{Input: 4}
	p := usage.NewPricing()
	p.Set("*", a)
	p.Set("gpt-*", b)
	p.Set("gpt-4o*", c)
	p.Set("gpt-4o", d)
	for model, want := range map[string]usage.Price{"x": a, "gpt-3.5": b, "gpt-4o-mini": c, "gpt-4o": d} {
		if got, ok := p.Lookup(model); !ok || got != want {
			t.Errorf("%s: %+v, want %+v", model, got, want)
		}
	}
	// Overrides replace a pattern in place; among equally specific globs the
	// one set last wins.
	p.Set("gpt-*", c)
	p.Set("gpt-4o", a)
	p.Set("gpt?4o-*", b) // as specific as gpt-4o*, set later
	for model, want := range map[string]usage.Price{"gpt-3.5": c, "gpt-4o": a, "gpt-4o-mini": b} {
		if got, _ := p.Lookup(model); got != want {
			t.Errorf("after overrides %s: %+v, want %+v", model, got, want)
		}
	}
	// Lookup takes the first model that has a price.
	q := usage.NewPricing()
	q.Set("claude-*", a)
	if got, ok := q.Lookup("", "my-alias", "claude-x"); !ok || got != a {
		t.Errorf("Lookup(upstream, requested) = %+v, %v", got, ok)
	}
	if _, ok := q.Lookup(); ok {
		t.Error("Lookup() found a price")
	}
	// Config overrides of the defaults.
	def := usage.DefaultPricing()
	def.Set("claude-sonnet-4*", d)
	if got, _ := def.Lookup("claude-sonnet-4-5"); got != d {
		t.Errorf("override of a default glob: %+v", got)
	}
}

// TestPricingMemo: a remembered glob verdict (priced or not) is the scan's,
// a Set after lookups changes the verdicts, and past the memo's bound names
// are still priced right.
func TestPricingMemo(t *testing.T) {
	t.Parallel()
	a, b := usage.Price{Input: 1}, usage.Price{Input: 2}
	p := usage.NewPricing()
	p.Set("gpt-*", a)
	for range 3 {
		if got, ok := p.Lookup("gpt-x"); !ok || got != a {
			t.Fatalf("gpt-x: %+v, %v; want %+v", got, ok, a)
		}
		if got, ok := p.Lookup("llama"); ok {
			t.Fatalf("llama priced %+v before a glob matches it", got)
		}
	}
	p.Set("gpt-x*", b)
	p.Set("ll*", b)
	if got, ok := p.Lookup("gpt-x"); !ok || got != b {
		t.Errorf("gpt-x after Set: %+v, %v; want %+v", got, ok, b)
	}
	if got, ok := p.Lookup("llama"); !ok || got != b {
		t.Errorf("llama after Set: %+v, %v; want %+v", got, ok, b)
	}
	for i := range 3000 {
		m := fmt.Sprintf("gpt-%d", i)
		if got, ok := p.Lookup(m); !ok || got != a {
			t.Fatalf("%s: %+v, %v; want %+v", m, got, ok, a)
		}
		if _, ok := p.Lookup(fmt.Sprintf("none-%d", i)); ok {
			t.Fatalf("none-%d priced", i)
		}
	}
}

// BenchmarkPricingLookup: an exact name, a glob-priced name and an unpriced
// name against the default table.
func BenchmarkPricingLookup(b *testing.B) {
	p := usage.DefaultPricing()
	for _, m := range []string{"gpt-4o", "gpt-4o-2024-08-06", "fake-model"} {
		b.Run(m, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Lookup(m)
			}
		})
	}
}
