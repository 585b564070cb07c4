package guardrails

import (
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// benchChat is bench/main.go's chat request (775 bytes, no personal data).
const benchChat = `{"model":"gpt-4o","messages":[` +
	`{"role":"system","content":"You are a helpful assistant for a software company. Answer concisely, cite the documentation when you can, and ask a clarifying question when the request is ambiguous. Never invent configuration options."},` +
	`{"role":"user","content":"How do I put a reverse proxy in front of two backends with health checks and sticky sessions?"},` +
	`{"role":"assistant","content":"Use a reverse_proxy with two upstreams, set lb_policy cookie for sticky sessions, and enable active health checks with health_uri and health_interval."},` +
	`{"role":"user","content":"Thanks. And how do I make it retry a failed request on the other backend, but only for idempotent methods, with a short timeout?"}` +
	`],"temperature":0.2,"user":"bench-user-0001"}`

// BenchmarkStage is the stage's own cost (Run, with the bench's
// configuration: mask all third_party, restore, drop_oldest truncation)
// on a request it leaves alone: the bench's clean 775-byte chat prompt and
// clean 4 KB and 100 KB prompts.
func BenchmarkStage(b *testing.B) {
	routes, err := route.New([]route.Route{{Pattern: "*", Targets: []route.Target{{Provider: "fake", Model: "gpt-4o"}}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rt, _ := routes.Lookup("gpt-4o")
	s := New(Config{Rules: []Rule{{Action: ActionMask, Detectors: []string{"all"}, Scope: ScopeThirdParty}},
		Restore: true, Truncate: &Truncation{}, Routes: routes, Local: map[string]bool{}})
	for _, c := range []struct {
		name string
		body []byte
	}{{"775B", []byte(benchChat)}, {"4KB", prompt(4<<10, false)}, {"100KB", prompt(100<<10, false)}} {
		req, oe := openai.ParseRequest(openai.OpChat, c.body, jsonraw.MaxDepthLimit)
		if oe != nil {
			b.Fatal(oe)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			var info gateway.Info
			x := &gateway.Exchange{Req: &dialect.Request{OpenAI: req}, Route: rt, Info: &info}
			for b.Loop() {
				if _, oe := s.Run(x); oe != nil || x.Req.OpenAI != req {
					b.Fatal("rewritten")
				}
			}
		})
	}
}

// TestCleanRequestAllocatesNothing: a request the stage leaves alone
// costs it no allocation.
func TestCleanRequestAllocatesNothing(t *testing.T) {
	routes, err := route.New([]route.Route{{Pattern: "*", Targets: []route.Target{{Provider: "fake", Model: "gpt-4o"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := routes.Lookup("gpt-4o")
	s := New(Config{Rules: []Rule{{Action: ActionMask, Detectors: []string{"all"}, Scope: ScopeThirdParty}},
		Restore: true, Truncate: &Truncation{}, Routes: routes, Local: map[string]bool{}})
	req, oe := openai.ParseRequest(openai.OpChat, []byte(benchChat), jsonraw.MaxDepthLimit)
	if oe != nil {
		t.Fatal(oe)
	}
	x := &gateway.Exchange{Req: &dialect.Request{OpenAI: req}, Route: rt, Info: &gateway.Info{}}
	if n := testing.AllocsPerRun(100, func() {
		if _, oe := s.Run(x); oe != nil || x.Req.OpenAI != req {
			t.Fatal("rewritten")
		}
	}); n != 0 {
		t.Errorf("%v allocations per clean request", n)
	}
}
