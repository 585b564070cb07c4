package tokens

import "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"

// Input is the prompt tokens of req for model (the upstream model name), for
// reservations: counted exactly for OpenAI's models, estimated per family
// for the others (see estimate.go) and scaled by r, what the upstream's
// reported usage taught (nil: no calibration); the byte-based openai
// estimate for a model of no known family that has no calibration yet.
// Counting costs time, so it runs only when needed is true (a TPM limit or
// a budget reserves on it); otherwise the byte-based estimate, which costs
// one scan, is returned.
func Input(req *openai.Request, model string, needed bool, r *Ratio) int64 {
	if !needed {
		return openai.EstimateInputTokens(req)
	}
	c := For(model)
	if c.Family == "other" && r.Samples() == 0 {
		return openai.EstimateInputTokens(req)
	}
	return int64(c.Calibrated(r).Prompt(req.Body))
}
