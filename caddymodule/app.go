// Package caddymodule is the Caddy glue of Caddy AI Gateway: the ai_gateway
// app (global settings, providers, routing table), the
// http.handlers.ai_gateway handler, their Caddyfile syntax, admin API and
// CLI. It is the only package that imports Caddy.
package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/registry"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the ai_gateway app: the providers, the routing table and the
// gateway-wide settings every ai_gateway handler uses.
type App struct {
	// Providers by name. A provider's name doubles as its type when it
	// names a preset (openai, azure, mistral, groq, together, deepseek,
	// openrouter, ollama, vllm).
	Providers map[string]*ProviderConfig `json:"providers,omitempty"`

	// Models is the routing table, in declaration order (ties between
	// equally specific globs go to the first declared).
	Models []*ModelConfig `json:"models,omitempty"`

	// MaxBodySize bounds request bodies in bytes. Default: 8 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// MaxMessages bounds the messages of one request. Default: 2048.
	MaxMessages int `json:"max_messages,omitempty"`

	// MaxTokens caps the max_tokens a client may ask for. Default: no cap.
	MaxTokens int64 `json:"max_tokens,omitempty"`

	// MaxJSONDepth bounds how deeply a request body's JSON may nest (400
	// above). Upstream answers, admin API bodies and keys files are held to
	// 128 levels. Default: 128; at most 1024.
	MaxJSONDepth int `json:"max_json_depth,omitempty"`

	// Deadline bounds attempts, backoff and fallbacks before the first byte
	// of an answer: no new attempt or wait starts after it (one under way
	// runs to its first_byte_timeout). It never cuts a healthy stream.
	// Default: 2m.
	Deadline caddy.Duration `json:"deadline,omitempty"`

	// RetryBackoff is the base of the exponential retry backoff (full
	// jitter). Default: 250ms.
	RetryBackoff caddy.Duration `json:"retry_backoff,omitempty"`

	// MaxBackoff caps one backoff wait. Default: 5s.
	MaxBackoff caddy.Duration `json:"max_backoff,omitempty"`

	// MaxRetryAfter caps how long the gateway waits on an upstream's
	// Retry-After before retrying the same target; a longer hint cools the
	// target down and moves on. Default: 10s.
	MaxRetryAfter caddy.Duration `json:"max_retry_after,omitempty"`

	// MaxFails consecutive failures of a target open its circuit breaker.
	// Default: 3.
	MaxFails int `json:"max_fails,omitempty"`

	// Cooldown is how long an open breaker keeps a target out of rotation.
	// Default: 30s.
	Cooldown caddy.Duration `json:"cooldown,omitempty"`

	// Keys declares gateway keys. As soon as one is declared (or
	// RequireKey is set) every request needs a valid key.
	Keys []*KeyConfig `json:"keys,omitempty"`

	// RequireKey demands a gateway key even when none is declared here
	// (keys created at run time through the admin API).
	RequireKey bool `json:"require_key,omitempty"`

	// KeysFile persists keys created through the admin API when no Redis
	// is configured (JSON with hashes only, mode 0600).
	KeysFile string `json:"keys_file,omitempty"`

	// Redis shares keys, rate limits, budgets and usage between gateways.
	// Without it all state is in process.
	Redis *RedisConfig `json:"redis,omitempty"`

	// ReserveOutputTokens is reserved against TPM limits and budgets for the
	// answer of a request that sets no max_tokens; settled to the real
	// usage afterwards. Default: 1024.
	ReserveOutputTokens int64 `json:"reserve_output_tokens,omitempty"`

	// Prices override or extend the shipped pricing table (USD per 1M
	// tokens), by model name or glob.
	Prices map[string]PriceConfig `json:"prices,omitempty"`

	// Telemetry configures OpenTelemetry traces (see TelemetryConfig).
	Telemetry *TelemetryConfig `json:"telemetry,omitempty"`

	// Metrics configures the Prometheus metrics (see MetricsConfig).
	Metrics *MetricsConfig `json:"metrics,omitempty"`
	// Collections are the RAG collections handlers retrieve from (see
	// rag.go).
	Collections []*CollectionConfig `json:"collections,omitempty"`
	// Cache turns the response cache on for every route (see CacheConfig).
	Cache *CacheConfig `json:"cache,omitempty"`

	providers map[string]provider.Provider
	clients   []*provider.HTTP
	// secrets are the credentials the gateway holds (provider keys, extra
	// header values, declared key secrets), for redactor.
	secrets   []string
	redactor  *provider.Redactor
	routes    *route.Table
	health    *route.Health
	healthRef bool // holds a healthPool reference
	logger    *zap.Logger
	created   int64

	calibrationState // the token estimate's learned ratios (calibration.go)

	ctx        caddy.Context
	drain      *gateway.Drain // shared across reloads (drainPool)
	drainRef   bool
	grace      time.Duration // the http app's grace period
	graceKnown bool

	mem      *memoryState
	poolKeys []string
	keys     auth.Store
	limiter  ratelimit.Limiter
	ledger   usage.Ledger
	// settlements takes settlements off the response path (Redis); the
	// config's own, flushed by Cleanup.
	settlements *ratelimit.Queue
	pricing     *usage.Pricing

	metrics *metrics

	routing     routing               // quotas, loads, probes (routing.go)
	redisClient redis.UniversalClient // with Redis: shares cooldowns
	tracer      *telemetry.Tracer
	tracerKey   string // holds a tracerPool reference
	rollups     usage.Rollups
	rollupRef   bool // holds a rollupPool reference
	rag         *ragState
	redisPrefix string // with Redis: the cache's keys start with it
	cache       *responseCache
}

// ProviderConfig configures one upstream provider.
type ProviderConfig struct {
	// Type selects the wire format and defaults: openai (default, any
	// OpenAI-compatible server), azure, mistral, groq, together, deepseek,
	// openrouter, ollama, vllm; or, translated from and to OpenAI's format,
	// anthropic, gemini, cohere. Default: the provider's name if it names a
	// type, else openai.
	Type string `json:"type,omitempty"`

	// BaseURL of the API, e.g. https://api.openai.com/v1. Default: the
	// type's public endpoint. For azure: https://NAME.openai.azure.com.
	BaseURL string `json:"base_url,omitempty"`

	// APIKey sent upstream. Placeholders such as {env.OPENAI_API_KEY} are
	// expanded at load time. Default: the type's conventional environment
	// variable (OPENAI_API_KEY, MISTRAL_API_KEY, …) when set.
	APIKey string `json:"api_key,omitempty"`

	// APIVersion is Azure's api-version query parameter (default
	// 2024-10-21) or Anthropic's anthropic-version header (default
	// 2023-06-01).
	APIVersion string `json:"api_version,omitempty"`

	// DropUnsupported makes translated providers (anthropic, gemini,
	// cohere) drop OpenAI parameters they cannot honour instead of
	// answering 400 naming the parameter.
	DropUnsupported bool `json:"drop_unsupported_params,omitempty"`

	// Headers are extra request headers sent upstream (placeholders
	// expanded at load time). The values of those whose name holds auth,
	// key, token, secret, password, cookie, session or signature are
	// credentials: redacted from upstream error text like api_key.
	Headers map[string]string `json:"headers,omitempty"`

	// ConnectTimeout bounds dialing and TLS. Default: 10s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	// FirstByteTimeout bounds the wait for response headers. Default: 60s.
	FirstByteTimeout caddy.Duration `json:"first_byte_timeout,omitempty"`

	// IdleTimeout bounds the silence between two stream chunks. A healthy
	// stream has no total cap. Default: 60s.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// H2C speaks HTTP/2 without TLS (prior knowledge) to an http://
	// base_url, for servers that accept it (Envoy, a Go server with h2c):
	// streams share connections instead of holding one each. Over https
	// HTTP/2 is negotiated by TLS and needs no switch.
	H2C bool `json:"h2c,omitempty"`

	// Trust is local (data sent to it stays on the operator's machines) or
	// third_party, for the guardrails' privacy rules. Default: local for
	// the ollama and vllm types, third_party for every other.
	Trust string `json:"trust,omitempty"`
	// Quota (rpm, tpm, queue) and health_check (see ProviderRouting).
	ProviderRouting
}

// ModelConfig is one routing table entry.
type ModelConfig struct {
	// Name is the model name clients ask for: exact, or a glob with '*'
	// and '?' (the most specific match wins).
	Name string `json:"name"`

	// Targets serve the model, chosen by weight.
	Targets []TargetConfig `json:"targets"`

	// Fallbacks are model names tried in order when every target failed.
	Fallbacks []string `json:"fallbacks,omitempty"`

	// Retries is the number of extra attempts on this model's targets
	// before falling back. Default: 0.
	Retries int `json:"retries,omitempty"`

	// MaxTokens is the default max_tokens for providers that require one
	// (Anthropic). Default: 4096.
	MaxTokens int64 `json:"max_tokens,omitempty"`

	// RPM and TPM limit the model's total requests and tokens per minute
	// across all keys.
	RPM int64 `json:"rpm,omitempty"`
	TPM int64 `json:"tpm,omitempty"`

	// ContextWindow overrides the shipped context window (prompt plus
	// answer, in tokens) of the model's targets, for truncation.
	ContextWindow int `json:"context_window,omitempty"`
	// Policy, hedge_after and max_hedges (see ModelRouting).
	ModelRouting
}

// TargetConfig is one place a model is served.
type TargetConfig struct {
	// Provider is a configured provider's name.
	Provider string `json:"provider"`
	// Model is the upstream model (Azure: deployment). Default: the
	// requested name.
	Model string `json:"model,omitempty"`
	// Weight for weighted random choice among targets. Default: 1.
	Weight int `json:"weight,omitempty"`

	// The target's own quota: rpm, tpm, queue (see TargetRouting).
	TargetRouting
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ai_gateway",
		New: func() caddy.Module { return new(App) },
	}
}

// healthPool keeps circuit breaker state across config reloads.
var healthPool = caddy.NewUsagePool()

type healthValue struct{ *route.Health }

func (healthValue) Destruct() error { return nil }

const healthKey = "ai_gateway.health"

// Provision sets defaults, builds providers and the routing table.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ctx = ctx
	m, err := newMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	a.metrics = m
	dv, _, err := drainPool.LoadOrNew(drainKey, func() (caddy.Destructor, error) {
		return drainValue{new(gateway.Drain)}, nil
	})
	if err != nil {
		return err
	}
	a.drain, a.drainRef = dv.(drainValue).Drain, true
	a.created = time.Now().Unix()
	repl := caddy.NewReplacer()
	a.providers = make(map[string]provider.Provider, len(a.Providers))
	for name, pc := range a.Providers {
		if pc == nil {
			return fmt.Errorf("provider %q: empty config", name)
		}
		p, h, secrets, err := buildProvider(name, pc, repl)
		if err != nil {
			return err
		}
		a.secrets = append(a.secrets, secrets...)
		a.providers[name] = p
		a.clients = append(a.clients, h)
	}
	routes := make([]route.Route, 0, len(a.Models))
	for _, m := range a.Models {
		if m == nil {
			continue
		}
		r := route.Route{Pattern: m.Name, Fallbacks: m.Fallbacks, Retries: m.Retries, MaxTokens: m.MaxTokens}
		for _, t := range m.Targets {
			r.Targets = append(r.Targets, route.Target{Provider: t.Provider, Model: t.Model, Weight: t.Weight})
		}
		if err := m.ModelRouting.apply(&r); err != nil {
			return fmt.Errorf("model %q: %v", m.Name, err)
		}
		routes = append(routes, r)
	}
	tbl, err := route.New(routes, func(p string) bool { _, ok := a.providers[p]; return ok })
	if err != nil {
		return fmt.Errorf("routing table: %v", err)
	}
	a.routes = tbl
	v, _, err := healthPool.LoadOrNew(healthKey, func() (caddy.Destructor, error) {
		return healthValue{route.NewHealth(a.MaxFails, time.Duration(a.Cooldown))}, nil
	})
	if err != nil {
		return err
	}
	a.health, a.healthRef = v.(healthValue).Health, true
	a.health.Configure(a.MaxFails, time.Duration(a.Cooldown))
	if err := a.provisionCalibration(ctx); err != nil {
		return err
	}
	if err := a.provisionGuard(ctx, repl); err != nil {
		return err
	}
	if err := a.provisionRouting(ctx); err != nil {
		return err
	}
	if err := a.provisionObservability(ctx); err != nil {
		return err
	}
	a.redactor = provider.NewRedactor(a.secrets...)
	if err := a.provisionRAG(ctx); err != nil {
		return err
	}
	return a.provisionCache(ctx)
}

// buildProvider returns the provider, its HTTP client and the secrets it
// sends upstream (its key and extra header values). The provider's type is
// looked up in registry.Types.
func buildProvider(name string, pc *ProviderConfig, repl *caddy.Replacer) (provider.Provider, *provider.HTTP, []string, error) {
	typ := strings.ToLower(pc.Type)
	if typ == "" {
		typ = "openai"
		if _, ok := registry.Lookup(name); ok {
			typ = name
		}
	}
	t, ok := registry.Lookup(typ)
	if !ok {
		return nil, nil, nil, fmt.Errorf("provider %q: unknown type %q", name, pc.Type)
	}
	key := repl.ReplaceKnown(pc.APIKey, "")
	if pc.APIKey == "" {
		key = t.DefaultKey()
	}
	secrets := []string{key}
	headers := make(http.Header, len(pc.Headers))
	for k, v := range pc.Headers {
		v = repl.ReplaceKnown(v, "")
		headers.Set(k, v)
		if secretHeader(k) {
			secrets = append(secrets, v)
		}
	}
	p, tr, err := t.Build(typ, &registry.Settings{
		Name: name, BaseURL: repl.ReplaceKnown(pc.BaseURL, ""), APIKey: key, APIVersion: pc.APIVersion,
		DropUnsupported: pc.DropUnsupported, Headers: headers, H2C: pc.H2C,
		Timeouts: provider.Timeouts{
			Connect:   time.Duration(pc.ConnectTimeout),
			FirstByte: time.Duration(pc.FirstByteTimeout),
			Idle:      time.Duration(pc.IdleTimeout),
		},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return p, tr.HTTP(), secrets, nil
}

// secretHeader reports whether an extra header's value is a credential, by
// its name: one holding auth, key, token, secret, password, cookie, session
// or signature.
func secretHeader(name string) bool {
	name = strings.ToLower(name)
	for _, w := range [...]string{"auth", "key", "token", "secret", "password", "cookie", "session", "signature"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// Validate checks the configuration.
func (a *App) Validate() error {
	if a.MaxBodySize < 0 || a.MaxMessages < 0 || a.MaxTokens < 0 || a.MaxJSONDepth < 0 {
		return fmt.Errorf("limits must not be negative")
	}
	if a.MaxJSONDepth > jsonraw.MaxDepthLimit {
		return fmt.Errorf("max_json_depth must be at most %d", jsonraw.MaxDepthLimit)
	}
	return nil
}

// Start implements caddy.App.
func (a *App) Start() error {
	a.warnOpenRelay()
	if app, err := a.ctx.AppIfConfigured("http"); err == nil {
		if h, ok := app.(*caddyhttp.App); ok {
			a.grace, a.graceKnown = time.Duration(h.GracePeriod), true
		}
	}
	a.startRouting()
	return nil
}

// warnOpenRelay logs once when the gateway holds a provider key, lets
// anonymous clients in and listens beyond loopback: anyone who can reach
// the port spends the key.
func (a *App) warnOpenRelay() {
	if a.RequireKey || len(a.Keys) > 0 || a.ctx.Context == nil {
		return
	}
	keyed := false
	for _, s := range a.secrets {
		keyed = keyed || s != ""
	}
	if !keyed {
		return
	}
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	for name, srv := range httpApp.(*caddyhttp.App).Servers {
		for _, l := range srv.Listen {
			if exposed(l) {
				a.logger.Warn("the gateway is an open relay: it holds provider keys, accepts clients without a gateway key and listens beyond loopback; declare keys or set require_key, or listen on 127.0.0.1",
					zap.String("server", name), zap.String("listen", l))
				return
			}
		}
	}
}

// exposed reports whether a listen address reaches beyond loopback.
func exposed(listen string) bool {
	na, err := caddy.ParseNetworkAddress(listen)
	if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() {
		return false
	}
	if na.Host == "" || na.Host == "localhost" {
		return na.Host == ""
	}
	ip := net.ParseIP(na.Host)
	return ip == nil || !ip.IsLoopback()
}

// drainPool shares one gateway.Drain across reloads, so that the process
// exit also ends the streams still served by older configurations.
var drainPool = caddy.NewUsagePool()

type drainValue struct{ *gateway.Drain }

func (drainValue) Destruct() error { return nil }

const drainKey = "ai_gateway.drain"

// drainOnExit is registered with every server that runs an ai_gateway
// handler, which calls it when it begins to shut down. On a config reload
// it does nothing: streams run to their end on the old server. When the
// process exits, live streams end with a gateway_shutting_down error event
// shortly before the http app's grace period runs out (a quarter of it
// before, at most 1s), where Caddy would cut their connections; at once if
// the grace period is unknown; never with the eternal default grace period,
// with which Caddy waits for every stream to end.
func (a *App) drainOnExit() {
	if !caddy.Exiting() {
		return
	}
	switch {
	case !a.graceKnown:
		a.drain.DrainIn(0)
	case a.grace > 0:
		a.drain.DrainIn(a.grace - min(a.grace/4, time.Second))
	}
}

// Stop implements caddy.App.
func (a *App) Stop() error {
	return nil
}

// Cleanup releases pooled state and connections.
func (a *App) Cleanup() error {
	if a.drainRef {
		a.drainRef = false
		_, _ = drainPool.Delete(drainKey)
	}
	for _, h := range a.clients {
		h.Close()
	}
	if a.settlements != nil {
		a.settlements.Close() // before the Redis client may close
		if st := a.settlements.Stats(); st.Lost > 0 {
			a.logger.Warn("settlements lost while Redis was unavailable", zap.Int64("lost", st.Lost))
		}
	}
	a.cleanupCache()
	for _, k := range a.poolKeys {
		_, _ = statePool.Delete(k)
	}
	a.cleanupRouting()
	a.cleanupObservability()
	a.cleanupRAG()
	a.cleanupCalibration()
	if !a.healthRef {
		return nil // Provision failed before taking a reference
	}
	a.healthRef = false
	_, err := healthPool.Delete(healthKey)
	return err
}

// newGateway builds a gateway over the app's shared parts with a handler's
// refinements.
func (a *App) newGateway(h *Handler, logger *zap.Logger) (*gateway.Gateway, error) {
	cfg := gateway.Config{
		Providers:     a.providers,
		Routes:        a.routes,
		Health:        a.health,
		MaxBodyBytes:  a.MaxBodySize,
		MaxMessages:   a.MaxMessages,
		MaxTokens:     a.MaxTokens,
		MaxJSONDepth:  a.MaxJSONDepth,
		Redactor:      a.redactor,
		Deadline:      time.Duration(a.Deadline),
		RetryBackoff:  time.Duration(a.RetryBackoff),
		MaxBackoff:    time.Duration(a.MaxBackoff),
		MaxRetryAfter: time.Duration(a.MaxRetryAfter),
		Logger:        logger,
		Created:       a.created,
		Models:        h.Models,
		Guard:         a.guard(logger),
		Drain:         a.drain,
		Telemetry:     a.tracer,
		Stages:        a.cacheStages(h, logger),
		Calibration:   a.calibration,
	}
	if h.MaxBodySize > 0 {
		cfg.MaxBodyBytes = h.MaxBodySize
	}
	if h.MaxMessages > 0 {
		cfg.MaxMessages = h.MaxMessages
	}
	if h.MaxTokens > 0 {
		cfg.MaxTokens = h.MaxTokens
	}
	if h.MaxJSONDepth > 0 {
		cfg.MaxJSONDepth = h.MaxJSONDepth
	}
	// Stages in order: RAG, then the guardrails (which see the rewritten
	// prompt).
	if st, err := h.ragStage(a, logger); err != nil {
		return nil, err
	} else if st != nil {
		cfg.Stages = append(cfg.Stages, st)
	}
	if st, err := a.guardrails(h); err != nil {
		return nil, err
	} else if st != nil {
		cfg.Stages = append(cfg.Stages, st)
	}
	cfg.Stages = placeCache(h, cfg.Stages)
	linkCacheVersions(cfg.Stages)
	return gateway.New(cfg)
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
