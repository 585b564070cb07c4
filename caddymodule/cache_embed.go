package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// embedder embeds texts with model through the gateway's own providers:
// the routing table entry's targets in order until one answers.
func (a *App) embedder(model string) (cache.Embedder, error) {
	rt, ok := a.routes.Lookup(model)
	if !ok {
		return nil, fmt.Errorf("cache: semantic embed model %q is not in the routing table", model)
	}
	return func(ctx context.Context, text string) ([]float32, error) {
		body, _ := json.Marshal(map[string]string{"model": model, "input": text})
		req, oe := openai.ParseRequest(openai.OpEmbeddings, body, 0)
		if oe != nil {
			return nil, errors.New(oe.Message)
		}
		err := errors.New("cache: no target embedded the text")
		for i := range rt.Targets {
			t := &rt.Targets[i]
			p := a.providers[t.Provider]
			if p == nil {
				continue
			}
			resp, derr := p.Do(ctx, &provider.Call{Req: req, Model: t.UpstreamModel(model)})
			if derr != nil {
				err = derr
				continue
			}
			if resp.Stream != nil {
				resp.Stream.Close()
				continue
			}
			emb := gjson.GetBytes(resp.Body, "data.0.embedding")
			if !emb.IsArray() {
				err = errors.New("cache: the embedding answer has no data[0].embedding")
				continue
			}
			vec := make([]float32, 0, 64)
			emb.ForEach(func(_, v gjson.Result) bool {
				vec = append(vec, float32(v.Float()))
				return true
			})
			return vec, nil
		}
		return nil, err
	}, nil
}
