package usage

// DefaultPricing returns a new table with list prices of common models, to
// be overridden by configuration.
//
// Source: the public API pricing pages of OpenAI, Anthropic, Google (Gemini
// API), Mistral and Cohere, standard (non-batch) tier, as of 2026-03. Not
// modeled: long-context tiers (Gemini 2.5 Pro and 1.5 prices are those of
// prompts up to 200k/128k tokens), cache writes (Anthropic charges them above
// the input price; usage only reports cache reads), audio and image tokens.
// Prices change: configure them for anything that matters.
func DefaultPricing() *Pricing {
	p := NewPricing()
	for _, d := range defaultPrices {
		p.Set(d.pattern, d.price)
	}
	return p
}

// defaultPrices in USD per 1M tokens: input, output, cached input.
// OpenAI models are listed as the alias plus "-20*" for dated snapshots
// (e.g. gpt-4.1-2025-04-14), so that other variants (o3-pro, gpt-4o-audio…)
// are not silently priced as the base model.
var defaultPrices = []struct {
	pattern string
	price   Price
}{
	// OpenAI
	{"gpt-4o", Price{2.50, 10.00, 1.25}},
	{"gpt-4o-20*", Price{2.50, 10.00, 1.25}},
	{"gpt-4o-2024-05-13", Price{5.00, 15.00, 0}},
	{"chatgpt-4o-latest", Price{5.00, 15.00, 0}},
	{"gpt-4o-mini", Price{0.15, 0.60, 0.075}},
	{"gpt-4o-mini-20*", Price{0.15, 0.60, 0.075}},
	{"gpt-4.1", Price{2.00, 8.00, 0.50}},
	{"gpt-4.1-20*", Price{2.00, 8.00, 0.50}},
	{"gpt-4.1-mini", Price{0.40, 1.60, 0.10}},
	{"gpt-4.1-mini-20*", Price{0.40, 1.60, 0.10}},
	{"gpt-4.1-nano", Price{0.10, 0.40, 0.025}},
	{"gpt-4.1-nano-20*", Price{0.10, 0.40, 0.025}},
	{"gpt-5", Price{1.25, 10.00, 0.125}},
	{"gpt-5-20*", Price{1.25, 10.00, 0.125}},
	{"gpt-5-mini", Price{0.25, 2.00, 0.025}},
	{"gpt-5-mini-20*", Price{0.25, 2.00, 0.025}},
	{"gpt-5-nano", Price{0.05, 0.40, 0.005}},
	{"gpt-5-nano-20*", Price{0.05, 0.40, 0.005}},
	{"o3", Price{2.00, 8.00, 0.50}},
	{"o3-20*", Price{2.00, 8.00, 0.50}},
	{"o3-mini", Price{1.10, 4.40, 0.275}},
	{"o3-mini-20*", Price{1.10, 4.40, 0.275}},
	{"o4-mini", Price{1.10, 4.40, 0.275}},
	{"o4-mini-20*", Price{1.10, 4.40, 0.275}},
	{"text-embedding-3-small", Price{0.02, 0, 0}},
	{"text-embedding-3-large", Price{0.13, 0, 0}},
	{"text-embedding-ada-002", Price{0.10, 0, 0}},

	// Anthropic (cached = cache read)
	{"claude-3-haiku*", Price{0.25, 1.25, 0.03}},
	{"claude-3-5-haiku*", Price{0.80, 4.00, 0.08}},
	{"claude-haiku-4-5*", Price{1.00, 5.00, 0.10}},
	{"claude-3-5-sonnet*", Price{3.00, 15.00, 0.30}},
	{"claude-3-7-sonnet*", Price{3.00, 15.00, 0.30}},
	{"claude-sonnet-4*", Price{3.00, 15.00, 0.30}},
	{"claude-opus-4*", Price{15.00, 75.00, 1.50}},
	{"claude-opus-4-5*", Price{5.00, 25.00, 0.50}}, // 4.5 and later: new lower Opus price
	{"claude-opus-4-6*", Price{5.00, 25.00, 0.50}},

	// Google Gemini
	{"gemini-2.5-pro*", Price{1.25, 10.00, 0.31}},
	{"gemini-2.5-flash*", Price{0.30, 2.50, 0.075}},
	{"gemini-2.5-flash-lite*", Price{0.10, 0.40, 0.025}},
	{"gemini-2.0-flash*", Price{0.10, 0.40, 0.025}},
	{"gemini-2.0-flash-lite*", Price{0.075, 0.30, 0}},
	{"gemini-1.5-flash*", Price{0.075, 0.30, 0}},
	{"gemini-1.5-pro*", Price{1.25, 5.00, 0}},

	// Mistral
	{"mistral-large*", Price{2.00, 6.00, 0}},
	{"mistral-small*", Price{0.20, 0.60, 0}},
	{"codestral*", Price{0.30, 0.90, 0}},

	// Cohere
	{"command-r-plus*", Price{2.50, 10.00, 0}},
	{"command-r*", Price{0.15, 0.60, 0}},
}
