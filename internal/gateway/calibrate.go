package gateway

import "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"

// maxCalibrateBytes bounds the prompts calibration estimates again when a
// request ends (the estimate is one scan of the texts; larger prompts are
// rare and teach what smaller ones do).
const maxCalibrateBytes = 256 << 10

// calibrate teaches the token estimate of the upstream model that
// answered what it reported: the uncalibrated estimate of the prompt it
// was sent (after every stage's rewrite) against its usage's prompt
// tokens. Only completed answers with usage teach, not cache hits, and
// past the warmup one in 16 (Ratio.Want); models counted exactly
// (OpenAI's) have no ratio and cost nothing here.
func (x *Exchange) calibrate(o Outcome) {
	cal := x.g.cfg.Calibration
	info := x.Info
	if cal == nil || o != OutcomeCompleted || !info.Usage.Known || info.Usage.InputTokens <= 0 || info.Cache == "hit" || info.Cache == "semantic-hit" {
		return
	}
	r := cal.Lookup(info.UpstreamModel, info.Route)
	if !r.Want() || x.Req == nil || x.Req.OpenAI == nil || len(x.Req.OpenAI.Body) > maxCalibrateBytes {
		return
	}
	c := tokens.For(info.UpstreamModel)
	if c.Exact() {
		return
	}
	r.Observe(int64(c.Prompt(x.Req.OpenAI.Body)), info.Usage.InputTokens)
}
