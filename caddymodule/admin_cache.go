package caddymodule

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache"
)

// cacheView is GET /ai_gateway/cache.
type cacheView struct {
	Backend      string  `json:"backend"`
	Entries      int64   `json:"entries"`
	Bytes        int64   `json:"bytes"`
	Hits         int64   `json:"hits"`
	SemanticHits int64   `json:"semantic_hits"`
	Coalesced    int64   `json:"coalesced"`
	Misses       int64   `json:"misses"`
	Bypasses     int64   `json:"bypasses"`
	Stored       int64   `json:"stored"`
	SavedTokens  int64   `json:"saved_tokens"`
	SavedUSD     float64 `json:"saved_usd"`
	StoreErrors  int64   `json:"store_errors"`
	InFlight     int     `json:"in_flight"`
}

// adminCache serves GET and DELETE /ai_gateway/cache.
func (a *App) adminCache(w http.ResponseWriter, r *http.Request) error {
	rc := a.cache
	if rc == nil {
		return apiErr(http.StatusNotFound, "the response cache is not configured")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	switch r.Method {
	case http.MethodGet:
		st, err := rc.store.Stats(ctx)
		if err != nil {
			return apiErr(http.StatusServiceUnavailable, "reading the cache store: %v", err)
		}
		s := rc.state.stats
		backend := rc.cfg.Backend
		if backend == "" {
			backend = "memory"
		}
		return writeAdminJSON(w, http.StatusOK, cacheView{Backend: backend, Entries: st.Entries, Bytes: st.Bytes,
			Hits: s.Hits.Load(), SemanticHits: s.SemanticHits.Load(), Coalesced: s.Coalesced.Load(), Misses: s.Misses.Load(),
			Bypasses: s.Bypasses.Load(), Stored: s.Stored.Load(), SavedTokens: s.SavedTokens.Load(),
			SavedUSD: float64(s.SavedMicros.Load()) / 1e6, StoreErrors: s.StoreErrors.Load(), InFlight: rc.state.flights.Len()})
	case http.MethodDelete:
		q := r.URL.Query()
		model := q.Get("model")
		var namespaces []string
		switch ns := q.Get("namespace"); {
		case ns == "":
			namespaces = []string{""}
		case ns == "shared" || ns == "anonymous" || strings.Contains(ns, ":"):
			namespaces = []string{ns}
		default:
			// A key's name (per_key) or a key's cache namespace.
			namespaces = []string{"key:" + ns, "ns:" + ns}
		}
		var n int64
		for _, ns := range namespaces {
			d, err := rc.store.Delete(ctx, cache.Filter{Namespace: ns, Model: model})
			if err != nil {
				return apiErr(http.StatusServiceUnavailable, "deleting from the cache store: %v", err)
			}
			n += d
		}
		return writeAdminJSON(w, http.StatusOK, map[string]int64{"deleted": n})
	}
	return apiErr(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
}
