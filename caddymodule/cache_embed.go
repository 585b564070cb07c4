package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
)

// embedder embeds the semantic cache's questions with model through the
// gateway's own attempt loop (gateway.Embed: the routing table entry's
// targets, retries, fallbacks, the breaker; no key, admission or stage).
func (a *App) embedder(model string) (cache.Embedder, error) {
	if _, ok := a.routes.Lookup(model); !ok {
		return nil, fmt.Errorf("cache: semantic embed model %q is not in the routing table", model)
	}
	gw, err := gateway.New(gateway.Config{Providers: a.providers, Routes: a.routes, Health: a.health,
		Redactor: a.redactor, Logger: a.logger.Named("cache.embed"), Deadline: time.Duration(a.Deadline),
		RetryBackoff: time.Duration(a.RetryBackoff), MaxBackoff: time.Duration(a.MaxBackoff),
		MaxRetryAfter: time.Duration(a.MaxRetryAfter), Created: a.created})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, text string) ([]float32, error) {
		vecs, err := gw.Embed(ctx, model, []string{text})
		if err != nil {
			return nil, err
		}
		if len(vecs) != 1 {
			return nil, errors.New("cache: the embedding model answered no vector")
		}
		return vecs[0], nil
	}, nil
}

// linkCacheVersions folds the versions of the stages after the cache that
// have one (a RAG collection's) into the cache's keys: an answer depends
// on what was retrieved.
func linkCacheVersions(stages []gateway.Stage) {
	var cs *cache.Stage
	var vs []cache.Versioned
	for _, st := range stages {
		switch s := st.(type) {
		case *cache.Stage:
			cs = s
		case cache.Versioned:
			if cs != nil {
				vs = append(vs, s)
			}
		}
	}
	if cs != nil && len(vs) > 0 {
		cs.FoldVersions(vs...)
	}
}
