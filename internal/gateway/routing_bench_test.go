package gateway

import (
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// BenchmarkServeChatStreamStubLoads is BenchmarkServeChatStreamStub with
// the targets' loads kept (TTFT average, in flight), as the Caddy module
// runs it: one target, no quota, no hedging.
func BenchmarkServeChatStreamStubLoads(b *testing.B) {
	g := newStubGateway(b)
	g.cfg.Routes.Bind(route.NewLoads())
	benchServe(b, g, true)
}
