package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/quota"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// ProviderRouting is a provider's quota and health check (part of
// ProviderConfig).
type ProviderRouting struct {
	// RPM and TPM are the requests and tokens per minute the provider
	// granted this account: the gateway paces what it sends within them
	// (shared by every gateway on the same Redis), so that the provider
	// never has to refuse. Default: no quota.
	RPM int64 `json:"rpm,omitempty"`
	TPM int64 `json:"tpm,omitempty"`

	// Queue is how long a request may wait for quota when every target
	// of its model is at its quota; beyond it the client gets 429 with a
	// Retry-After from the pacer. A target's own queue wins. Default: 0
	// (no wait).
	Queue caddy.Duration `json:"queue,omitempty"`

	// HealthCheck, when set, probes the provider at this interval with a
	// cheap GET <base_url>/models; a failed probe takes the provider's
	// targets out of rotation (for two intervals, renewed while probes
	// fail) before a client request fails on them. Default: off.
	HealthCheck caddy.Duration `json:"health_check,omitempty"`
}

// TargetRouting is one target's own quota (part of TargetConfig): an
// Azure deployment's or a model's at its provider.
type TargetRouting struct {
	// RPM and TPM are the target's requests and tokens per minute (see
	// ProviderRouting). Default: no quota of its own.
	RPM int64 `json:"rpm,omitempty"`
	TPM int64 `json:"tpm,omitempty"`
	// Queue is how long a request may wait for the target's quota.
	// Default: the provider's queue.
	Queue caddy.Duration `json:"queue,omitempty"`
}

// ModelRouting is how a model chooses its targets (part of ModelConfig).
type ModelRouting struct {
	// Policy chooses among the targets: weighted (random by weight),
	// least_latency (lowest moving average time to first token),
	// least_busy (fewest requests in flight), cost (cheapest by the
	// pricing table) or headroom (most quota left); ties go by weight.
	// Default: weighted.
	Policy string `json:"policy,omitempty"`

	// HedgeAfter hedges slow attempts: a duration ("200ms"), or "p95" for
	// the chosen target's estimated 95th percentile time to first token.
	// When a target has sent no first byte after that long, the next
	// target starts too; the first to send a first byte wins and the
	// other is cancelled at once. Default: no hedging.
	HedgeAfter string `json:"hedge_after,omitempty"`

	// MaxHedges bounds the extra attempts one request may start. Default: 1.
	MaxHedges int `json:"max_hedges,omitempty"`
}

// apply sets the route's policy and hedging.
func (m *ModelRouting) apply(r *route.Route) error {
	p, err := route.ParsePolicy(m.Policy)
	if err != nil {
		return err
	}
	r.Policy = p
	switch h := m.HedgeAfter; {
	case h == "":
	case h == "p95":
		r.HedgeP95 = true
	default:
		d, err := caddy.ParseDuration(h)
		if err != nil || d <= 0 {
			return fmt.Errorf("hedge_after: want a positive duration or p95, got %q", h)
		}
		r.HedgeAfter = d
	}
	if m.MaxHedges < 0 {
		return fmt.Errorf("max_hedges must not be negative")
	}
	r.MaxHedges = m.MaxHedges
	return nil
}

// routingPool keeps what routing learns (targets' loads, quota pacers)
// across config reloads.
var routingPool = caddy.NewUsagePool()

type routingState struct {
	loads  *route.Loads
	quotas *quota.Registry
}

func (routingState) Destruct() error { return nil }

const routingKey = "ai_gateway.routing"

// routing is the app's routing state.
type routing struct {
	ref      bool
	loads    *route.Loads
	registry *quota.Registry
	quotas   map[string]*quota.Target // by target key
	// byProvider is each provider's own quota, for answers outside an
	// attempt's context.
	byProvider map[string]*quota.Target
	probes     []probe
	metrics    *routingMetrics
}

type probe struct {
	name     string
	prober   interface{ Probe(context.Context) error }
	interval time.Duration
	keys     []string // the provider's targets
}

// provisionRouting binds the routing table to the targets' loads, prices
// and quotas, and readies the health probes. It runs after the guard (the
// shared limiter).
func (a *App) provisionRouting(ctx caddy.Context) error {
	v, _, err := routingPool.LoadOrNew(routingKey, func() (caddy.Destructor, error) {
		return routingState{loads: route.NewLoads(), quotas: quota.NewRegistry()}, nil
	})
	if err != nil {
		return err
	}
	st := v.(routingState)
	a.routing.ref, a.routing.loads, a.routing.registry = true, st.loads, st.quotas
	a.routing.quotas = make(map[string]*quota.Target)
	a.routing.byProvider = make(map[string]*quota.Target)
	a.routes.Bind(st.loads)
	var shared quota.Limiter
	if a.Redis != nil {
		shared = a.limiter
	}
	models := make(map[string]*ModelConfig, len(a.Models))
	for _, m := range a.Models {
		if m != nil {
			models[m.Name] = m
		}
	}
	quoted := make(map[string]bool) // providers with a quota somewhere
	var errs []error
	a.routes.Each(func(r *route.Route) {
		mc := models[r.Pattern]
		for i := range r.Targets {
			tg := &r.Targets[i]
			upstream := tg.UpstreamModel(r.Pattern)
			if price, ok := a.pricing.Lookup(upstream, r.Pattern); ok {
				tg.Cost = price.Input + price.Output
			}
			var tc TargetRouting
			if mc != nil && i < len(mc.Targets) {
				tc = mc.Targets[i].TargetRouting
			}
			qt, err := a.targetQuota(tg, tc, shared)
			if err != nil {
				errs = append(errs, fmt.Errorf("model %q: target %d: %v", r.Pattern, i, err))
				continue
			}
			if qt != nil {
				tg.Quota = qt
				quoted[tg.Provider] = true
			}
		}
	})
	if len(errs) > 0 {
		return errs[0]
	}
	for _, h := range a.clients {
		if quoted[h.Provider] {
			pp := a.routing.byProvider[h.Provider]
			h.Client.Transport = &quotaObserver{next: h.Client.Transport, provider: pp}
		}
	}
	for name, pc := range a.Providers {
		if pc == nil || pc.HealthCheck <= 0 {
			continue
		}
		pr, ok := a.providers[name].(interface{ Probe(context.Context) error })
		if !ok {
			return fmt.Errorf("provider %q: health_check is not supported by its type", name)
		}
		pb := probe{name: name, prober: pr, interval: time.Duration(pc.HealthCheck)}
		seen := map[string]bool{}
		a.routes.Each(func(r *route.Route) {
			for i := range r.Targets {
				if k := r.Targets[i].Key(); r.Targets[i].Provider == name && !seen[k] {
					seen[k] = true
					pb.keys = append(pb.keys, k)
				}
			}
		})
		a.routing.probes = append(a.routing.probes, pb)
	}
	m, err := newRoutingMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	a.routing.metrics = m
	if a.metrics != nil {
		a.metrics.routing = m
	}
	return nil
}

// targetQuota is the quotas that pace a target: its provider's and its
// own; nil when it has none. Targets naming the same provider and model
// share their pacer (it is one deployment).
func (a *App) targetQuota(tg *route.Target, tc TargetRouting, shared quota.Limiter) (*quota.Target, error) {
	key := tg.Key()
	if qt := a.routing.quotas[key]; qt != nil {
		if tc.RPM > 0 || tc.TPM > 0 {
			if l := qt.Pacers[1]; l == nil || l.Limits().RPM != tc.RPM || l.Limits().TPM != tc.TPM {
				return nil, fmt.Errorf("%s/%s: a different quota is declared for the same target elsewhere", tg.Provider, tg.Model)
			}
		}
		return qt, nil
	}
	pc := a.Providers[tg.Provider]
	if tc.RPM < 0 || tc.TPM < 0 || pc != nil && (pc.RPM < 0 || pc.TPM < 0) {
		return nil, fmt.Errorf("rpm and tpm must not be negative")
	}
	qt := &quota.Target{Queue: time.Duration(tc.Queue)}
	if pc != nil && (pc.RPM > 0 || pc.TPM > 0) {
		qt.Pacers[0] = a.routing.providerPacer(tg.Provider, pc, shared)
		if qt.Queue == 0 {
			qt.Queue = time.Duration(pc.Queue)
		}
		a.routing.byProvider[tg.Provider] = &quota.Target{Pacers: [2]*quota.Pacer{qt.Pacers[0]}}
	}
	if tc.RPM > 0 || tc.TPM > 0 {
		name := "target:" + tg.Provider + "/" + tg.Model
		qt.Pacers[1] = a.routing.registry.Get(name, quota.Limits{RPM: tc.RPM, TPM: tc.TPM}, shared, "quota:")
		if qt.Queue == 0 && pc != nil {
			qt.Queue = time.Duration(pc.Queue)
		}
	}
	if qt.Pacers[0] == nil && qt.Pacers[1] == nil {
		return nil, nil
	}
	a.routing.quotas[key] = qt
	return qt, nil
}

func (r *routing) providerPacer(name string, pc *ProviderConfig, shared quota.Limiter) *quota.Pacer {
	return r.registry.Get("provider:"+name, quota.Limits{RPM: pc.RPM, TPM: pc.TPM}, shared, "quota:")
}

// quotaObserver reads the provider's rate-limit headers on every answer
// into the quotas of the attempt's target (or the provider's).
type quotaObserver struct {
	next     http.RoundTripper
	provider *quota.Target
}

func (o *quotaObserver) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	if resp != nil {
		now := time.Now()
		if r := quota.ParseHeaders(resp.Header, now); r.Known() {
			if t := quota.TargetFrom(req.Context()); t != nil {
				t.Observe(now, r)
			} else if o.provider != nil {
				o.provider.Observe(now, r)
			}
		}
	}
	return resp, err
}

// startRouting starts the health probes and, with Redis, the sharing of
// cooldowns; all stop with the app's context.
func (a *App) startRouting() {
	if a.ctx.Context == nil {
		return
	}
	logger := a.logger.Named("routing")
	for _, pb := range a.routing.probes {
		go a.runProbe(pb, logger)
	}
	if a.redisClient != nil {
		prefix := a.Redis.Prefix
		if prefix == "" {
			prefix = "aigw:"
		}
		sc := &route.SharedCooldowns{Client: a.redisClient, Key: prefix + "cooldowns", Logger: logger}
		go sc.Run(a.ctx, a.health)
	}
}

// runProbe probes one provider every interval until the app stops. A
// failed probe cools the provider's targets down for two intervals (so
// that they stay out while probes keep failing); the first probe that
// succeeds after a failure closes their breakers.
func (a *App) runProbe(pb probe, logger *zap.Logger) {
	t := time.NewTicker(pb.interval)
	defer t.Stop()
	down := false
	for {
		ctx, cancel := context.WithTimeout(a.ctx, max(pb.interval, time.Second))
		err := pb.prober.Probe(ctx)
		cancel()
		if a.ctx.Err() != nil {
			return
		}
		now := time.Now()
		switch {
		case err != nil:
			if !down {
				cause := zap.Skip()
				if pe := (*provider.Error)(nil); errors.As(err, &pe) && pe.Cause != "" {
					cause = zap.String("cause", a.redactor.String(pe.Cause))
				}
				logger.Warn("health check failed: the provider's targets are out of rotation", zap.String("provider", pb.name), zap.String("error", a.redactor.String(err.Error())), cause)
			}
			down = true
			for _, k := range pb.keys {
				a.health.Failure(k, now, 2*pb.interval)
			}
			a.routing.metrics.probeFailed(pb.name)
		case down:
			down = false
			logger.Info("health check passed: the provider's targets are back", zap.String("provider", pb.name))
			for _, k := range pb.keys {
				a.health.Success(k)
			}
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cleanupRouting releases the pooled routing state.
func (a *App) cleanupRouting() {
	if a.routing.ref {
		a.routing.ref = false
		_, _ = routingPool.Delete(routingKey)
	}
}

// TargetStatus is one target in GET /ai_gateway/status.
type TargetStatus struct {
	// TTFTms is the moving average time to first token, TTFTp95ms its
	// estimated 95th percentile (0: no sample yet).
	TTFTms    float64 `json:"ttft_ms"`
	TTFTp95ms float64 `json:"ttft_p95_ms"`
	InFlight  int64   `json:"in_flight"`
	// Breaker is closed, open or half_open.
	Breaker string `json:"breaker"`
	// Quotas are the target's quotas (its provider's, its own).
	Quotas []QuotaStatus `json:"quotas,omitempty"`
}

// QuotaStatus is what is left of one quota.
type QuotaStatus struct {
	Name string `json:"name"`
	RPM  int64  `json:"rpm,omitempty"`
	TPM  int64  `json:"tpm,omitempty"`
	// RemainingRequests and RemainingTokens are what the pacer has left
	// now (-1: no such limit, or not known locally with Redis).
	RemainingRequests int64 `json:"remaining_requests"`
	RemainingTokens   int64 `json:"remaining_tokens"`
	// Headroom is the share of the quota left, 0..1.
	Headroom float64 `json:"headroom"`
	// UpstreamRequests and UpstreamTokens are what the provider's
	// rate-limit headers reported last (-1: nothing yet).
	UpstreamRequests int64 `json:"upstream_remaining_requests"`
	UpstreamTokens   int64 `json:"upstream_remaining_tokens"`
}

// targetStatus reports every target of the routing table by
// "provider/model".
func (a *App) targetStatus() map[string]TargetStatus {
	out := make(map[string]TargetStatus)
	if a.routes == nil {
		return out
	}
	now := time.Now()
	a.routes.Each(func(r *route.Route) {
		for i := range r.Targets {
			tg := &r.Targets[i]
			name := strings.ReplaceAll(tg.Key(), "\x00", "/")
			if _, ok := out[name]; ok {
				continue
			}
			ts := TargetStatus{Breaker: a.health.State(tg.Key(), now)}
			if l := tg.Load(); l != nil {
				ts.TTFTms = float64(l.TTFT().Microseconds()) / 1000
				ts.TTFTp95ms = float64(l.TTFTP95().Microseconds()) / 1000
				ts.InFlight = l.InFlight()
			}
			if qt, ok := tg.Quota.(*quota.Target); ok {
				for _, p := range qt.Pacers {
					if p == nil {
						continue
					}
					rq, tk, ur, ut := p.Remaining(now)
					lim := p.Limits()
					ts.Quotas = append(ts.Quotas, QuotaStatus{Name: p.Name, RPM: lim.RPM, TPM: lim.TPM,
						RemainingRequests: rq, RemainingTokens: tk, Headroom: p.Headroom(now), UpstreamRequests: ur, UpstreamTokens: ut})
				}
			}
			out[name] = ts
		}
	})
	return out
}

// routingMetrics are the routing's metrics.
type routingMetrics struct {
	hedges *prometheus.CounterVec
	probes *prometheus.CounterVec
}

func newRoutingMetrics(reg prometheus.Registerer) (*routingMetrics, error) {
	m := &routingMetrics{
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "hedged_attempts_total",
			Help: "Attempts started beside a slow one (hedged requests), by model route."}, []string{"model"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "health_check_failures_total",
			Help: "Failed provider health checks, by provider."}, []string{"provider"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := register(reg, &m.hedges); err != nil {
		return nil, err
	}
	if err := register(reg, &m.probes); err != nil {
		return nil, err
	}
	return m, nil
}

// observe counts a request's hedges.
func (m *routingMetrics) observe(info *gateway.Info) {
	if m != nil && info.Hedges > 0 {
		m.hedges.WithLabelValues(info.Route).Add(float64(info.Hedges))
	}
}

func (m *routingMetrics) probeFailed(provider string) {
	if m != nil {
		m.probes.WithLabelValues(provider).Inc()
	}
}

// Interface guards
var _ http.RoundTripper = (*quotaObserver)(nil)

// CloseIdleConnections closes the wrapped transport's idle connections
// (http.Client.CloseIdleConnections reaches them through it).
func (o *quotaObserver) CloseIdleConnections() {
	if c, ok := o.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
