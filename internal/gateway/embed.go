package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Embed asks the routing table's model for the embeddings of texts, one
// vector per text in order, as one OpenAI embeddings request through the
// attempt loop (targets, retries, fallbacks, the circuit breaker): the
// gateway's own use of its providers (RAG ingestion and queries). No key,
// admission or stage applies.
func (g *Gateway) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	if len(texts) > openai.MaxEmbeddingInputs {
		return nil, fmt.Errorf("at most %d texts per embedding request", openai.MaxEmbeddingInputs)
	}
	body := append([]byte(`{"model":`), openai.AppendString(nil, model)...)
	body = append(body, `,"encoding_format":"float","input":[`...)
	for i, t := range texts {
		if i > 0 {
			body = append(body, ',')
		}
		body = openai.AppendString(body, t)
	}
	body = append(body, "]}"...)
	req, oerr := openai.ParseRequest(openai.OpEmbeddings, body, 0)
	if oerr != nil {
		return nil, oerr
	}
	rt, ok := g.cfg.Routes.Lookup(model)
	if !ok {
		return nil, fmt.Errorf("embedding model %q is not in the routing table", model)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/embeddings", nil)
	if err != nil {
		return nil, err
	}
	info := &Info{Format: provider.FormatOpenAI, Op: openai.OpEmbeddings, Model: model}
	x := &Exchange{Route: rt, Info: info, g: g, r: r, start: time.Now()}
	x.req = dialect.Request{OpenAI: req, Format: provider.FormatOpenAI}
	x.Req = &x.req
	reply, _, oerr := g.attempt(x)
	if reply == nil {
		if oerr == nil {
			return nil, context.Cause(ctx)
		}
		return nil, oerr
	}
	if reply.Stream != nil {
		reply.Stream.Close()
		return nil, errors.New("embedding model answered with a stream")
	}
	if reply.Format != provider.FormatOpenAI {
		return nil, fmt.Errorf("embedding model answered in format %v", reply.Format)
	}
	out := make([][]float32, len(texts))
	var perr error
	gjson.GetBytes(reply.Body, "data").ForEach(func(_, d gjson.Result) bool {
		i := int(d.Get("index").Int())
		if i < 0 || i >= len(out) || out[i] != nil {
			perr = errors.New("embedding answer has a bad index")
			return false
		}
		arr := d.Get("embedding")
		if !arr.IsArray() {
			perr = errors.New("embedding answer without a float vector")
			return false
		}
		v := make([]float32, 0, 256)
		arr.ForEach(func(_, f gjson.Result) bool {
			v = append(v, float32(f.Float()))
			return true
		})
		out[i] = v
		return true
	})
	if perr != nil {
		return nil, perr
	}
	for i := range out {
		if out[i] == nil {
			return nil, fmt.Errorf("embedding answer has %d vectors for %d texts", i, len(texts))
		}
	}
	return out, nil
}
