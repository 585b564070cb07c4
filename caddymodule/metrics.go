package caddymodule

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
)

// Prometheus metrics, registered in Caddy's metrics registry (served by the
// `metrics` handler and the admin endpoint /metrics). Labels are bounded:
// the routing table's pattern (never a client-chosen string), provider
// names from the config, statuses. Never a key.
type metrics struct {
	requests   *prometheus.CounterVec
	tokens     *prometheus.CounterVec
	ttft       *prometheus.HistogramVec
	duration   *prometheus.HistogramVec
	attempts   *prometheus.CounterVec
	limited    *prometheus.CounterVec
	redisDowns prometheus.Counter
	lost       prometheus.Counter
	routing    *routingMetrics // hedges and probes (routing.go)
	hot        hotSeries       // the series of answered requests, resolved (metrics_hot.go)

	observability // semantic-convention instruments, spend, cache, RAG, guardrails (metrics_genai.go)
}

const ns, sub = "caddy", "ai_gateway"

// newMetrics registers the gateway's metrics in reg, a config's registry.
// A collector reg already has (the same config provisioning the app
// again) is shared rather than refused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests answered by the gateway, by model route, provider and status."}, []string{"model", "provider", "status"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tokens_total",
			Help: "Tokens reported by upstreams, by model route, provider and direction (input, output, cached)."}, []string{"model", "provider", "direction"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "time_to_first_token_seconds",
			Help:    "Time from request to the first streamed event (or the whole answer).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 16, 32}}, []string{"model", "provider", "stream"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Time to answer a request completely, streams included.",
			Buckets: []float64{.1, .25, .5, 1, 2, 4, 8, 16, 32, 64, 128}}, []string{"model", "provider", "stream"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_attempts_total",
			Help: "Upstream attempts, by provider (retries and fallbacks included)."}, []string{"provider"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejected_total",
			Help: "Requests refused by the guard, by reason (error code)."}, []string{"reason"}),
		redisDowns: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "redis_failures_total",
			Help: "Times the shared Redis state became unavailable (limits then follow on_failure)."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "settlements_lost_total",
			Help: "Request settlements (refunds, releases, spend, usage) that could not reach Redis."}),
	}
	if err := errors.Join(register(reg, &m.requests), register(reg, &m.tokens), register(reg, &m.ttft),
		register(reg, &m.duration), register(reg, &m.attempts), register(reg, &m.limited), register(reg, &m.redisDowns),
		register(reg, &m.lost), m.observability.register(reg)); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers *c in reg; when reg already has an equal collector,
// *c becomes that one.
func register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return err
}

func (m *metrics) redisDown() {
	if m != nil {
		m.redisDowns.Inc()
	}
}

func (m *metrics) settlementsLost(n int) {
	if m != nil {
		m.lost.Add(float64(n))
	}
}

func (m *metrics) observe(info *gateway.Info, seconds, costUSD float64) {
	if m == nil || m.observeHot(info, seconds, costUSD) {
		return
	}
	m.observability.observe(info, seconds, costUSD)
	model, prov := info.Route, info.Provider
	m.requests.WithLabelValues(model, prov, statusLabel(info.Status)).Inc()
	if info.Limited != "" {
		m.limited.WithLabelValues(info.Limited).Inc()
	}
	if info.Attempts > 0 {
		m.attempts.WithLabelValues(prov).Add(float64(info.Attempts))
	}
	m.routing.observe(info)
	if info.Usage.Known {
		m.tokens.WithLabelValues(model, prov, "input").Add(float64(info.Usage.InputTokens))
		m.tokens.WithLabelValues(model, prov, "output").Add(float64(info.Usage.OutputTokens))
		if info.Usage.CachedTokens > 0 {
			m.tokens.WithLabelValues(model, prov, "cached").Add(float64(info.Usage.CachedTokens))
		}
	}
	if info.Provider != "" && info.Status == 200 {
		stream := strconv.FormatBool(info.Stream)
		m.ttft.WithLabelValues(model, prov, stream).Observe(info.TTFT.Seconds())
		m.duration.WithLabelValues(model, prov, stream).Observe(seconds)
	}
}

func zapName(name string) zap.Field { return zap.String("key", name) }

// statusLabels spell the HTTP status codes, so that labelling a request by
// its status allocates nothing.
var statusLabels = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// statusLabel is code in decimal.
func statusLabel(code int) string {
	if code >= 0 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}
