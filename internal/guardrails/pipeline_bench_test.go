package guardrails

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) Flush()                      {}

// BenchmarkPipeline is one request through the whole gateway (the real
// openaicompat provider, an in-process fakellm over loopback), without
// guardrails and with `privacy { mask all third_party }` plus truncation,
// on a clean prompt and one holding personal data (masked, and restored
// in the answer): the guardrails' share of a request's cost.
func BenchmarkPipeline(b *testing.B) {
	srv := httptest.NewServer(fakellm.New(fakellm.Options{Chunks: 20}))
	b.Cleanup(srv.Close)
	h := provider.NewHTTP("fake", provider.Timeouts{})
	b.Cleanup(h.Close)
	p, err := openaicompat.New(openaicompat.Config{Name: "fake", BaseURL: srv.URL + "/v1"}, h)
	if err != nil {
		b.Fatal(err)
	}
	routes, err := route.New([]route.Route{{Pattern: "gpt-4o", Targets: []route.Target{{Provider: "fake"}}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	stage := New(Config{Rules: []Rule{{Action: ActionMask, Detectors: []string{"all"}, Scope: ScopeThirdParty}},
		Restore: true, Truncate: &Truncation{}, Routes: routes, Local: map[string]bool{}})
	clean := strings.Repeat(`{"role":"user","content":"How do I put a reverse proxy in front of two backends with health checks?"},`+
		`{"role":"assistant","content":"Use reverse_proxy with two upstreams and enable active health checks."},`, 12)
	pii := clean + `{"role":"user","content":"I am ana.garcia@example.com, card 4111 1111 1111 1111, phone +44 20 7946 0958."},`
	for _, c := range []struct {
		name   string
		stages []gateway.Stage
		msgs   string
	}{{"off", nil, clean}, {"on/clean", []gateway.Stage{stage}, clean}, {"on/pii", []gateway.Stage{stage}, pii}} {
		for _, stream := range []bool{false, true} {
			g, err := gateway.New(gateway.Config{Providers: map[string]provider.Provider{"fake": p}, Routes: routes, Stages: c.stages})
			if err != nil {
				b.Fatal(err)
			}
			body := []byte(`{"model":"gpt-4o","stream":` + map[bool]string{false: "false", true: "true"}[stream] +
				`,"messages":[` + c.msgs + `{"role":"user","content":"thanks"}]}`)
			name := c.name + "/body"
			if stream {
				name = c.name + "/stream"
			}
			b.Run(name, func(b *testing.B) {
				rd := bytes.NewReader(body)
				r, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://gw/v1/chat/completions", io.NopCloser(rd))
				r.ContentLength = int64(len(body))
				w := &discard{h: http.Header{}}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					rd.Reset(body)
					clear(w.h)
					var info gateway.Info
					g.Serve(w, r, &info)
					if info.Status >= 400 {
						b.Fatalf("status %d", info.Status)
					}
				}
			})
		}
	}
}
