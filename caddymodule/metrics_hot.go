package caddymodule

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
)

// A routed request that an upstream answered touches about ten series
// (requests, attempts, tokens, the latency histograms, the GenAI
// instruments, spend); looking each up by its label values hashes and
// checks every value. hotSeries remembers them, resolved, by what picks
// them: one map lookup a request. An entry resolves exactly the series
// its requests observe, so that no series appears before a request
// observes it. Requests through RAG or the guardrails, and those not
// routed or answered, go the labelled way (metrics.observe); the cache's
// verdicts are few, and its series are remembered too.

// hotKey picks the series of a request.
type hotKey struct {
	route, provider, respModel, spendKey string
	op                                   openai.Op
	status                               int
	outcome                              gateway.Outcome
	stream, attempts, known, cached      bool
	ttft, spend                          bool
	// cache is the cache's verdict ("" without a cache); saved and
	// savedUSD whether it saved tokens and spend.
	cache           string
	saved, savedUSD bool
}

// hot is the resolved series of one hotKey (nil: not observed by its
// requests).
type hot struct {
	requests, attempts, tokIn, tokOut, tokCached prometheus.Counter
	ttft, duration                               prometheus.Observer
	genIn, genOut, opDuration, genTTFT           prometheus.Observer
	spend                                        prometheus.Counter
	cacheReqs, cacheIn, cacheOut, cacheUSD       prometheus.Counter
	// tpot's labels (its observation depends on the values).
	op, prov string
}

// maxHotSeries bounds the remembered keys (every label is bounded; this
// bounds their combinations): past it, requests go the labelled way.
const maxHotSeries = 4096

type hotSeries struct {
	mu    sync.RWMutex
	m     map[hotKey]*hot
	limit int // the keys remembered at most: maxHotSeries when 0
}

// observeHot observes info through the remembered series and reports
// whether it did; otherwise the caller observes it the labelled way.
func (m *metrics) observeHot(info *gateway.Info, seconds, costUSD float64) bool {
	o := &m.observability
	if o.tokenUsage == nil || info.Route == "" || info.Provider == "" || info.RAG != "" || info.Guardrails != "" {
		return false
	}
	k := hotKey{route: info.Route, provider: info.Provider, respModel: o.responseModel(info), op: info.Op,
		status: info.Status, outcome: info.Outcome, stream: info.Stream, attempts: info.Attempts > 0,
		known: info.Usage.Known, cached: info.Usage.Known && info.Usage.CachedTokens > 0,
		ttft: info.Stream && info.Outcome == gateway.OutcomeCompleted && info.TTFT > 0, spend: costUSD > 0}
	if k.spend && o.keyLabel {
		k.spendKey = info.Key
	}
	if info.Cache != "" {
		k.cache, k.saved, k.savedUSD = boundedLabel(info.Cache), savedTokens(info), info.CacheSavedUSD > 0
	}
	h := m.hot.lookup(k)
	if h == nil {
		if h = m.resolveHot(k); h == nil {
			return false
		}
	}
	if info.Usage.Known {
		u := info.Usage
		h.genIn.Observe(float64(u.InputTokens))
		h.genOut.Observe(float64(u.OutputTokens))
	}
	h.opDuration.Observe(seconds)
	if h.genTTFT != nil {
		ttft := info.TTFT.Seconds()
		h.genTTFT.Observe(ttft)
		if n := info.Usage.OutputTokens; n > 1 && seconds > ttft {
			o.tpot.WithLabelValues(h.op, h.prov, k.route, k.respModel).Observe((seconds - ttft) / float64(n-1))
		}
	}
	if h.spend != nil {
		h.spend.Add(costUSD)
	}
	if h.cacheReqs != nil {
		h.cacheReqs.Inc()
		if h.cacheIn != nil {
			h.cacheIn.Add(float64(info.CacheSaved.InputTokens))
			h.cacheOut.Add(float64(info.CacheSaved.OutputTokens))
		}
		if h.cacheUSD != nil {
			h.cacheUSD.Add(info.CacheSavedUSD)
		}
	}
	h.requests.Inc()
	if info.Limited != "" {
		m.limited.WithLabelValues(info.Limited).Inc()
	}
	if h.attempts != nil {
		h.attempts.Add(float64(info.Attempts))
	}
	m.routing.observe(info)
	if info.Usage.Known {
		h.tokIn.Add(float64(info.Usage.InputTokens))
		h.tokOut.Add(float64(info.Usage.OutputTokens))
		if h.tokCached != nil {
			h.tokCached.Add(float64(info.Usage.CachedTokens))
		}
	}
	if h.ttft != nil {
		h.ttft.Observe(info.TTFT.Seconds())
		h.duration.Observe(seconds)
	}
	return true
}

func (s *hotSeries) lookup(k hotKey) *hot {
	s.mu.RLock()
	h := s.m[k]
	s.mu.RUnlock()
	return h
}

// resolveHot resolves and remembers k's series; nil when too many are
// remembered.
func (m *metrics) resolveHot(k hotKey) *hot {
	s := &m.hot
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.m[k]; h != nil {
		return h
	}
	limit := s.limit
	if limit == 0 {
		limit = maxHotSeries
	}
	if len(s.m) >= limit {
		return nil
	}
	o := &m.observability
	h := &hot{op: telemetry.OperationName(k.op), prov: k.provider}
	if up, ok := o.upstreams[k.provider]; ok && up.Name != "" {
		h.prov = up.Name
	}
	model, prov := k.route, k.provider
	if k.known {
		h.genIn = o.tokenUsage.WithLabelValues(h.op, h.prov, model, k.respModel, telemetry.TokenInput)
		h.genOut = o.tokenUsage.WithLabelValues(h.op, h.prov, model, k.respModel, telemetry.TokenOutput)
	}
	errType := ""
	if k.outcome != gateway.OutcomeCompleted {
		errType = k.outcome.String()
	}
	h.opDuration = o.opDuration.WithLabelValues(h.op, h.prov, model, k.respModel, errType)
	if k.ttft {
		h.genTTFT = o.ttft.WithLabelValues(h.op, h.prov, model, k.respModel)
	}
	if k.spend {
		h.spend = o.spend.WithLabelValues(model, prov, k.spendKey)
	}
	if k.cache != "" {
		h.cacheReqs = o.cacheRequests.WithLabelValues(model, k.cache)
		if k.saved {
			h.cacheIn = o.cacheTokens.WithLabelValues(model, "input")
			h.cacheOut = o.cacheTokens.WithLabelValues(model, "output")
		}
		if k.savedUSD {
			h.cacheUSD = o.cacheUSD.WithLabelValues(model)
		}
	}
	h.requests = m.requests.WithLabelValues(model, prov, statusLabel(k.status))
	if k.attempts {
		h.attempts = m.attempts.WithLabelValues(prov)
	}
	if k.known {
		h.tokIn = m.tokens.WithLabelValues(model, prov, "input")
		h.tokOut = m.tokens.WithLabelValues(model, prov, "output")
		if k.cached {
			h.tokCached = m.tokens.WithLabelValues(model, prov, "cached")
		}
	}
	if k.status == 200 {
		stream := strconv.FormatBool(k.stream)
		h.ttft = m.ttft.WithLabelValues(model, prov, stream)
		h.duration = m.duration.WithLabelValues(model, prov, stream)
	}
	if s.m == nil {
		s.m = make(map[hotKey]*hot)
	}
	s.m[k] = h
	return h
}
