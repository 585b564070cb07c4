package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves the OpenAI-compatible API (/v1/chat/completions,
// /v1/completions, /v1/embeddings, /v1/responses, /v1/models) through the
// ai_gateway app's routing table. It answers every request itself.
//
// It sets these placeholders, for logs and later handlers:
//
//	{http.ai_gateway.key}            the gateway key's name (never the secret)
//	{http.ai_gateway.model}          the model the client asked for
//	{http.ai_gateway.provider}       the provider that answered (or was last tried)
//	{http.ai_gateway.upstream_model} the model name sent to that provider
//	{http.ai_gateway.attempts}       upstream attempts made
//	{http.ai_gateway.hedges}         hedged attempts (in attempts too)
//	{http.ai_gateway.tokens.input}   prompt tokens reported by the upstream
//	{http.ai_gateway.tokens.output}  completion tokens reported by the upstream
//	{http.ai_gateway.ttft_ms}        time to the first streamed event (or the answer), ms
//	{http.ai_gateway.status}         the status the gateway answered (599: stream broke after 200)
//	{http.ai_gateway.cost_usd}       the request's spend by the pricing table, USD
//	{http.ai_gateway.cache}          the response cache's verdict (hit, semantic-hit, miss, bypass, refresh; empty when not cached)
//	{http.ai_gateway.rag}            used, none or skipped when the route retrieves (rag)
//	{http.ai_gateway.rag.sources}    the injected chunks, <source>#<chunk index>, comma-separated
//	{http.ai_gateway.rag.ms}         the retrieval's duration, ms
type Handler struct {
	// MaxBodySize overrides the app's request body limit for this route.
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// MaxMessages overrides the app's messages limit for this route.
	MaxMessages int `json:"max_messages,omitempty"`
	// MaxTokens overrides the app's max_tokens cap for this route.
	MaxTokens int64 `json:"max_tokens,omitempty"`
	// MaxJSONDepth overrides the app's request nesting bound for this
	// route (at most 1024).
	MaxJSONDepth int `json:"max_json_depth,omitempty"`
	// Models restricts the models this route serves (names or globs).
	// Others answer 404 model_not_found. Default: all.
	Models []string `json:"models,omitempty"`
	// Cache "off" keeps this route out of the app's response cache.
	// Default: cached when the app has a cache.
	Cache string `json:"cache,omitempty"`

	// Truncate fits chat requests into their model's context window.
	Truncate *TruncateConfig `json:"truncate,omitempty"`
	// Privacy masks, blocks or reroutes personal data and secrets.
	Privacy *PrivacyConfig `json:"privacy,omitempty"`
	// Policy adds system messages and refuses denied prompts.
	Policy *PolicyConfig `json:"policy,omitempty"`
	// RAG injects retrieved context into each request's prompt (see
	// RAGConfig).
	RAG *RAGConfig `json:"rag,omitempty"`

	gw      *gateway.Gateway
	metrics *metrics
	app     *App
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ai_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision wires the handler to the ai_gateway app.
func (h *Handler) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("ai_gateway")
	if err != nil {
		return fmt.Errorf("loading ai_gateway app: %v", err)
	}
	app := appIface.(*App)
	if app.routes == nil || len(app.Models) == 0 {
		return fmt.Errorf("ai_gateway: no models configured; declare providers and models in the ai_gateway global option")
	}
	h.metrics = app.metrics
	h.app = app
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		srv.RegisterOnShutdown(app.drainOnExit)
	}
	h.gw, err = app.newGateway(h, ctx.Logger())
	return err
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. The gateway answers every
// request; next is never called.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	var info gateway.Info
	start := time.Now()
	h.gw.Serve(w, r, &info)
	cost := h.app.costUSD(&info)
	h.metrics.observe(&info, time.Since(start).Seconds(), cost)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// Resolved when a log or a later handler asks, not set one by one
		// on every request.
		repl.Map(func(key string) (any, bool) {
			name, ok := strings.CutPrefix(key, "http.ai_gateway.")
			if !ok {
				return nil, false
			}
			return placeholder(name, &info, cost)
		})
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// placeholder is the value of {http.ai_gateway.<name>} for a request that
// ended as info says.
func placeholder(name string, info *gateway.Info, cost float64) (any, bool) {
	switch name {
	case "key":
		return info.Key, true
	case "model":
		return info.Model, true
	case "provider":
		return info.Provider, true
	case "upstream_model":
		return info.UpstreamModel, true
	case "attempts":
		return info.Attempts, true
	case "hedges":
		return info.Hedges, true
	case "tokens.input":
		return info.Usage.InputTokens, true
	case "tokens.output":
		return info.Usage.OutputTokens, true
	case "ttft_ms":
		return strconv.FormatInt(info.TTFT.Milliseconds(), 10), true
	case "status":
		return info.Status, true
	case "cost_usd":
		return strconv.FormatFloat(cost, 'f', -1, 64), true
	case "cache":
		return info.Cache, true
	}
	return ragPlaceholder(name, info)
}
