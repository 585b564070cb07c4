package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache/semantic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
)

// CacheConfig turns the response cache on for every ai_gateway route (a
// route opts out with `cache off`).
type CacheConfig struct {
	// Backend is memory (in process, bounded by MaxMemory) or redis (the
	// app's redis connection, shared by every gateway on it). Default:
	// memory.
	Backend string `json:"backend,omitempty"`
	// TTL is how long an answer is kept. Default: 1h.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// MaxEntrySize bounds a stored answer in bytes: larger answers are
	// served, not stored. Default: 1 MiB.
	MaxEntrySize int64 `json:"max_entry_size,omitempty"`
	// MaxMemory bounds the memory backend in bytes. Default: 256 MiB.
	MaxMemory int64 `json:"max_memory,omitempty"`
	// Namespace is per_key (each gateway key its own entries) or shared
	// (all keys share entries). A key's own `cache <namespace>` names a
	// namespace several keys share either way. Default: per_key.
	Namespace string `json:"namespace,omitempty"`
	// Semantic configures the semantic cache (off when absent).
	Semantic *SemanticCacheConfig `json:"semantic,omitempty"`
}

// SemanticCacheConfig configures the semantic cache.
type SemanticCacheConfig struct {
	// Embed is the embedding model (from the routing table) that embeds
	// the last user message.
	Embed string `json:"embed"`
	// Threshold is the cosine similarity a stored question must reach.
	// Default: 0.95.
	Threshold float64 `json:"threshold,omitempty"`
}

// cachePool keeps the memory store, the flights in progress and the
// counters across config reloads.
var cachePool = caddy.NewUsagePool()

const cacheStateKey = "ai_gateway.cache"

type cacheState struct {
	memory  *cache.Memory
	flights *cache.Flights
	stats   *cache.Stats

	mu        sync.Mutex
	index     *semantic.Index // the semantic cache's, for its threshold
	threshold float32
}

// semanticIndex returns the pooled index for threshold (a new one when
// the threshold changed).
func (c *cacheState) semanticIndex(threshold float32) *semantic.Index {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index == nil || c.threshold != threshold {
		c.index, c.threshold = semantic.New(semantic.Options{Threshold: threshold}), threshold
	}
	return c.index
}

func (c *cacheState) Destruct() error {
	if c.memory != nil {
		c.memory.Close()
	}
	return nil
}

// responseCache is the app's cache: its store and settings.
type responseCache struct {
	cfg   *CacheConfig
	state *cacheState
	store cache.Store
	redis *cache.Redis // closed in Cleanup
	// semantic is the semantic cache, nil when off.
	semantic *cache.Semantic
}

func (cc *CacheConfig) validate() error {
	switch cc.Backend {
	case "", "memory", "redis":
	default:
		return fmt.Errorf("cache: backend must be memory or redis, not %q", cc.Backend)
	}
	switch cc.Namespace {
	case "", "per_key", "shared":
	default:
		return fmt.Errorf("cache: namespace must be per_key or shared, not %q", cc.Namespace)
	}
	if cc.TTL < 0 || cc.MaxEntrySize < 0 || cc.MaxMemory < 0 {
		return errors.New("cache: ttl, max_entry_size and max_memory must not be negative")
	}
	if s := cc.Semantic; s != nil {
		if s.Embed == "" {
			return errors.New("cache: semantic needs an embed model")
		}
		if s.Threshold < 0 || s.Threshold > 1 {
			return errors.New("cache: semantic threshold must be between 0 and 1")
		}
	}
	return nil
}

// provisionCache builds the cache when the app configures one (after the
// guard, whose Redis client it shares).
func (a *App) provisionCache(ctx caddy.Context) error {
	cc := a.Cache
	if cc == nil {
		return nil
	}
	if err := cc.validate(); err != nil {
		return err
	}
	maxMem := cc.MaxMemory
	if maxMem <= 0 {
		maxMem = cache.DefaultMaxMemory
	}
	v, loaded, err := cachePool.LoadOrNew(cacheStateKey, func() (caddy.Destructor, error) {
		return &cacheState{memory: cache.NewMemory(maxMem), flights: cache.NewFlights(), stats: new(cache.Stats)}, nil
	})
	if err != nil {
		return err
	}
	st := v.(*cacheState)
	if loaded {
		st.memory.SetMaxBytes(maxMem)
	}
	rc := &responseCache{cfg: cc, state: st, store: st.memory}
	a.cache = rc
	if cc.Backend == "redis" {
		if a.redisClient == nil {
			return errors.New("cache: backend redis needs the app's redis connection")
		}
		if rc.redis, err = cache.NewRedis(a.redisClient, a.redisPrefix+"cache:"); err != nil {
			return fmt.Errorf("cache: %v", err)
		}
		rc.store = rc.redis
	}
	if sc := cc.Semantic; sc != nil {
		emb, err := a.embedder(sc.Embed)
		if err != nil {
			return err
		}
		thr := float32(sc.Threshold)
		if thr <= 0 {
			thr = semantic.DefaultThreshold
		}
		rc.semantic = &cache.Semantic{Index: st.semanticIndex(thr), Embed: emb, Model: sc.Embed}
	}
	var mem *cache.Memory
	if rc.redis == nil {
		mem = st.memory
	}
	return registerCacheMetrics(ctx.GetMetricsRegistry(), st.stats, mem)
}

// cleanupCache releases the cache's pool reference.
func (a *App) cleanupCache() {
	if a.cache == nil {
		return
	}
	if a.cache.redis != nil {
		a.cache.redis.Close()
	}
	_, _ = cachePool.Delete(cacheStateKey)
	a.cache = nil
}

// cacheStages returns the cache stage for a handler (none when the app
// has no cache or the route opts out).
func (a *App) cacheStages(h *Handler, logger *zap.Logger) []gateway.Stage {
	rc := a.cache
	if rc == nil || strings.EqualFold(h.Cache, "off") {
		return nil
	}
	cc := rc.cfg
	return []gateway.Stage{cache.New(cache.Config{
		Store:        rc.store,
		Flights:      rc.state.flights,
		Stats:        rc.state.stats,
		TTL:          time.Duration(cc.TTL),
		MaxEntrySize: int(cc.MaxEntrySize),
		Shared:       cc.Namespace == "shared",
		Routes:       a.routes,
		Pricing:      a.pricing,
		Semantic:     rc.semantic,
		Masked:       h.Privacy != nil,
		Logger:       logger.Named("cache"),
	})}
}

// placeCache moves the cache stage after the guardrails on a route with
// privacy rules: the key is then over the masked request and an entry
// holds the upstream's answer to it, placeholders and no values (each
// replay goes through the request's own restorer). Elsewhere the cache
// runs first, before RAG and the guardrails, so that a hit costs no
// retrieval.
func placeCache(h *Handler, stages []gateway.Stage) []gateway.Stage {
	if h.Privacy == nil || len(stages) < 2 {
		return stages
	}
	i := slices.IndexFunc(stages, func(st gateway.Stage) bool { _, ok := st.(*cache.Stage); return ok })
	if i < 0 {
		return stages
	}
	cs := stages[i]
	return append(slices.Delete(stages, i, i+1), cs)
}

// registerCacheMetrics exports the cache's counters (read at scrape time).
func registerCacheMetrics(reg prometheus.Registerer, st *cache.Stats, mem *cache.Memory) error {
	if reg == nil {
		return nil
	}
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: labels}, f)
	}
	// Requests by result and the saved tokens and USD are counted per
	// request from gateway.Info (metrics.go); these are the cache's own.
	cs := []prometheus.CounterFunc{
		counter("cache_coalesced_total", "Requests answered by an identical request in flight.", nil, func() float64 { return float64(st.Coalesced.Load()) }),
		counter("cache_stored_total", "Answers stored by the response cache.", nil, func() float64 { return float64(st.Stored.Load()) }),
		counter("cache_store_errors_total", "Failed cache store operations (the request bypassed the cache).", nil, func() float64 { return float64(st.StoreErrors.Load()) }),
	}
	var errs []error
	for i := range cs {
		errs = append(errs, register(reg, &cs[i]))
	}
	if mem != nil {
		// The memory backend's size, read at scrape time (two atomic
		// loads). The Redis backend's would take a SCAN of its keys: it is
		// in GET /ai_gateway/cache only.
		size := func() cache.StoreStats { s, _ := mem.Stats(context.Background()); return s }
		gs := []prometheus.GaugeFunc{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "cache_entries",
				Help: "Entries the memory cache holds."}, func() float64 { return float64(size().Entries) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "cache_bytes",
				Help: "Bytes the memory cache holds, as its max_memory bound counts them."}, func() float64 { return float64(size().Bytes) }),
		}
		for i := range gs {
			errs = append(errs, register(reg, &gs[i]))
		}
	}
	return errors.Join(errs...)
}
