package cache_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// discard is a flushing http.ResponseWriter that drops the answer.
type discard struct {
	h    http.Header
	n    int
	code int
}

func (w *discard) Header() http.Header { return w.h }
func (w *discard) WriteHeader(c int)   { w.code = c }
func (w *discard) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *discard) Flush() {}

// BenchmarkHit serves cache hits through the whole gateway pipeline (the
// entry recorded once from an in-process fakellm): allocations per hit.
func BenchmarkHit(b *testing.B) {
	srv := httptest.NewServer(fakellm.New(fakellm.Options{Chunks: 20}))
	b.Cleanup(srv.Close)
	h := provider.NewHTTP("fake", provider.Timeouts{})
	b.Cleanup(h.Close)
	p, err := openaicompat.New(openaicompat.Config{Name: "fake", BaseURL: srv.URL + "/v1"}, h)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := route.New([]route.Route{{Pattern: "bench", Targets: []route.Target{{Provider: "fake", Model: "fake-model"}}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	mem := cache.NewMemory(64 << 20)
	b.Cleanup(mem.Close)
	keys, err := auth.NewMemory([]*auth.Key{{Name: "k", Hash: auth.HashSecret("sk-bench"),
		Policy: auth.Policy{RPM: 1_000_000_000, TPM: 1_000_000_000, Concurrency: 1_000_000, Budget: 1e9}}}, "")
	if err != nil {
		b.Fatal(err)
	}
	for _, gv := range []struct {
		name   string
		guard  *gateway.Guard
		secret string
	}{
		{"", nil, ""},
		// An open gateway (Caddy's passthrough: a guard without keys).
		{"/open", &gateway.Guard{Limiter: ratelimit.NewMemory(nil)}, ""},
		// A key with RPM, TPM, concurrency and a budget: a hit takes the RPM.
		{"/key", &gateway.Guard{Keys: keys, Required: true, Limiter: ratelimit.NewMemory(nil)}, "sk-bench"},
	} {
		g, err := gateway.New(gateway.Config{Providers: map[string]provider.Provider{"fake": p}, Routes: rt, Guard: gv.guard,
			Stages: []gateway.Stage{cache.New(cache.Config{Store: mem, Routes: rt})}})
		if err != nil {
			b.Fatal(err)
		}
		for _, stream := range []bool{false, true} {
			name := "body"
			body := `{"model":"bench","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"How do I proxy two backends with health checks?"}]}`
			if stream {
				name = "stream"
				body = strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
				body = strings.Replace(body, "How do", "Streaming: how do", 1)
			}
			b.Run(name+gv.name, func(b *testing.B) {
				rd := bytes.NewReader([]byte(body))
				r, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://gateway.test/v1/chat/completions", io.NopCloser(rd))
				r.ContentLength = int64(len(body))
				if gv.secret != "" {
					r.Header.Set("Authorization", "Bearer "+gv.secret)
				}
				w := &discard{h: make(http.Header)}
				serve := func() string {
					rd.Reset([]byte(body))
					clear(w.h)
					var info gateway.Info
					g.Serve(w, r, &info)
					return info.Cache
				}
				serve() // the miss that records
				if v := serve(); v != cache.VerdictHit {
					b.Fatalf("verdict %q, want a hit (status %d)", v, w.code)
				}
				b.ReportAllocs()
				for b.Loop() {
					serve()
				}
			})
		}
	}
}
