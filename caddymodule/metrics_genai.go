package caddymodule

import (
	"errors"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
)

// MetricsConfig configures the gateway's Prometheus metrics.
type MetricsConfig struct {
	// KeyLabel labels spend by gateway key name
	// (caddy_ai_gateway_spend_usd_total{key}). Key names are bounded by
	// the declared and created keys, never a secret. Default: off (key="").
	KeyLabel bool `json:"key_label,omitempty"`
}

// observability holds the semantic-convention instruments (in Prometheus
// naming: internal/telemetry's table), spend, and what the cache, RAG and
// guardrail stages did. Every model label comes from the routing table
// (the matched pattern, or a target's configured upstream model), never
// from a client's string.
type observability struct {
	tokenUsage, opDuration, ttft, tpot *prometheus.HistogramVec

	spend                        *prometheus.CounterVec
	cacheRequests, cacheTokens   *prometheus.CounterVec
	cacheUSD                     *prometheus.CounterVec
	ragDuration                  *prometheus.HistogramVec
	ragChunks, guardrailsActions *prometheus.CounterVec

	// The config's (configure): gen_ai.provider.name by provider, the
	// configured upstream models by provider, whether keys label spend.
	upstreams    map[string]telemetry.Upstream
	targetModels map[string]bool // provider + "\x00" + model
	keyLabel     bool
}

func (o *observability) register(reg prometheus.Registerer) error {
	genai := []string{telemetry.LabelOperation, telemetry.LabelProvider, telemetry.LabelRequestModel, telemetry.LabelResponseModel}
	o.tokenUsage = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: telemetry.MetricTokenUsage,
		Help:    "Number of input and output tokens used (GenAI semantic conventions).",
		Buckets: telemetry.BucketsTokenUsage}, append(genai[:4:4], telemetry.LabelTokenType))
	o.opDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: telemetry.MetricOperationDuration,
		Help:    "GenAI operation duration, from the request to the end of the answer (GenAI semantic conventions).",
		Buckets: telemetry.BucketsDuration}, append(genai[:4:4], "error_type"))
	o.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: telemetry.MetricTimeToFirstToken,
		Help:    "Time to the first token of successful streamed answers (GenAI semantic conventions).",
		Buckets: telemetry.BucketsTTFT}, genai)
	o.tpot = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: telemetry.MetricTimePerOutputTok,
		Help:    "Time per output token after the first, of successful streamed answers (GenAI semantic conventions).",
		Buckets: telemetry.BucketsTPOT}, genai)
	o.spend = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "spend_usd_total",
		Help: "Spend in USD by the pricing table, by model route, provider and key name (key only with metrics { key_label })."},
		[]string{"model", "provider", "key"})
	o.cacheRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "cache_requests_total",
		Help: "Requests the response cache looked up, by model route and result (hit, semantic-hit, miss, bypass, refresh)."},
		[]string{"model", "result"})
	o.cacheTokens = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "cache_saved_tokens_total",
		Help: "Tokens cache hits did not spend, by model route and direction (input, output)."}, []string{"model", "direction"})
	o.cacheUSD = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "cache_saved_usd_total",
		Help: "USD cache hits did not spend, by model route."}, []string{"model"})
	o.ragDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "rag_retrieval_duration_seconds",
		Help:    "RAG retrieval latency, by model route and result (used, skipped).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"model", "result"})
	o.ragChunks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rag_chunks_injected_total",
		Help: "Retrieved chunks injected into prompts, by model route."}, []string{"model"})
	o.guardrailsActions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "guardrail_actions_total",
		Help: "What the guardrails did, by action (masked, blocked, …) and detector (email, card, …); never the values."},
		[]string{"action", "detector"})
	return errors.Join(register(reg, &o.tokenUsage), register(reg, &o.opDuration), register(reg, &o.ttft), register(reg, &o.tpot),
		register(reg, &o.spend), register(reg, &o.cacheRequests), register(reg, &o.cacheTokens), register(reg, &o.cacheUSD),
		register(reg, &o.ragDuration), register(reg, &o.ragChunks), register(reg, &o.guardrailsActions))
}

// configure sets what the config's labels come from.
func (o *observability) configure(upstreams map[string]telemetry.Upstream, models []*ModelConfig, keyLabel bool) {
	o.upstreams, o.keyLabel = upstreams, keyLabel
	o.targetModels = map[string]bool{}
	for _, m := range models {
		if m == nil {
			continue
		}
		for _, t := range m.Targets {
			if t.Model != "" {
				o.targetModels[t.Provider+"\x00"+t.Model] = true
			}
		}
	}
}

// responseModel is the bounded gen_ai.response.model label: the upstream
// model when a target names it, else the route's pattern.
func (o *observability) responseModel(info *gateway.Info) string {
	if o.targetModels[info.Provider+"\x00"+info.UpstreamModel] {
		return info.UpstreamModel
	}
	return info.Route
}

func (o *observability) observe(info *gateway.Info, seconds, costUSD float64) {
	if o.tokenUsage == nil || info.Route == "" {
		return // not a routed request (models list, refused before routing)
	}
	model := info.Route
	if info.Provider != "" {
		op := telemetry.OperationName(info.Op)
		prov := info.Provider
		if up, ok := o.upstreams[prov]; ok && up.Name != "" {
			prov = up.Name
		}
		resp := o.responseModel(info)
		if u := info.Usage; u.Known {
			o.tokenUsage.WithLabelValues(op, prov, model, resp, telemetry.TokenInput).Observe(float64(u.InputTokens))
			o.tokenUsage.WithLabelValues(op, prov, model, resp, telemetry.TokenOutput).Observe(float64(u.OutputTokens))
		}
		errType := ""
		if info.Outcome != gateway.OutcomeCompleted {
			errType = info.Outcome.String()
		}
		o.opDuration.WithLabelValues(op, prov, model, resp, errType).Observe(seconds)
		if info.Stream && info.Outcome == gateway.OutcomeCompleted && info.TTFT > 0 {
			ttft := info.TTFT.Seconds()
			o.ttft.WithLabelValues(op, prov, model, resp).Observe(ttft)
			if n := info.Usage.OutputTokens; n > 1 && seconds > ttft {
				o.tpot.WithLabelValues(op, prov, model, resp).Observe((seconds - ttft) / float64(n-1))
			}
		}
	}
	if costUSD > 0 {
		key := ""
		if o.keyLabel {
			key = info.Key
		}
		o.spend.WithLabelValues(model, info.Provider, key).Add(costUSD)
	}
	if info.Cache != "" {
		o.cacheRequests.WithLabelValues(model, boundedLabel(info.Cache)).Inc()
		if savedTokens(info) {
			o.cacheTokens.WithLabelValues(model, "input").Add(float64(info.CacheSaved.InputTokens))
			o.cacheTokens.WithLabelValues(model, "output").Add(float64(info.CacheSaved.OutputTokens))
		}
		if info.CacheSavedUSD > 0 {
			o.cacheUSD.WithLabelValues(model).Add(info.CacheSavedUSD)
		}
	}
	if info.RAG != "" {
		o.ragDuration.WithLabelValues(model, boundedLabel(info.RAG)).Observe(info.RAGTime.Seconds())
		if n := len(info.RAGSources); n > 0 {
			o.ragChunks.WithLabelValues(model).Add(float64(n))
		}
	}
	if info.Guardrails != "" {
		forEachGuardrail(info.Guardrails, func(action, detector string, n int) {
			o.guardrailsActions.WithLabelValues(action, detector).Add(float64(n))
		})
	}
}

// savedTokens reports whether the cache saved info's request tokens (it
// knows the usage it did not spend).
func savedTokens(info *gateway.Info) bool {
	s := info.CacheSaved
	return s.Known || s.InputTokens > 0 || s.OutputTokens > 0
}

// cacheHit reports whether a cache verdict answered from the cache.
func cacheHit(verdict string) bool { return verdict == "hit" || verdict == "semantic-hit" }

// forEachGuardrail parses Info.Guardrails ("masked=email:2,card:1", several
// actions separated by spaces or semicolons) and calls fn for each count.
// A detector without a count counts 1; malformed parts are skipped.
func forEachGuardrail(s string, fn func(action, detector string, n int)) {
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ';' }) {
		action, dets, ok := strings.Cut(part, "=")
		if !ok || !validLabel(action) {
			continue
		}
		for _, d := range strings.Split(dets, ",") {
			name, count, hasCount := strings.Cut(d, ":")
			n := 1
			if hasCount {
				var err error
				if n, err = strconv.Atoi(count); err != nil || n < 0 {
					continue
				}
			}
			if validLabel(name) {
				fn(action, name, n)
			}
		}
	}
}

// validLabel reports whether s is a short name fit for a label value
// (letters, digits, '_', '-', '.'; at most 64 bytes).
func validLabel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// boundedLabel is s when it is a valid label, else "other".
func boundedLabel(s string) string {
	if validLabel(s) {
		return s
	}
	return "other"
}

// costUSD is the spend of a request by the pricing table: nothing for an
// answer from the cache.
func (a *App) costUSD(info *gateway.Info) float64 {
	if !info.Usage.Known || cacheHit(info.Cache) || a.pricing == nil {
		return 0
	}
	p, ok := a.pricing.Lookup(info.UpstreamModel, info.Model)
	if !ok {
		return 0
	}
	return float64(p.CostMicros(info.Usage)) / 1e6
}

// unmarshal reads a metrics block:
//
//	metrics {
//		key_label
//	}
func (mc *MetricsConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := seen.check(d, "metrics", d.Val()); err != nil {
			return err
		}
		switch d.Val() {
		case "key_label":
			if d.NextArg() {
				return d.ArgErr()
			}
			mc.KeyLabel = true
		default:
			return d.Errf("metrics: unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}
