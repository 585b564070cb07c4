package gateway

import "testing"

// StubGateway is newStubGateway with tel as its telemetry, for the
// telemetry benchmarks of package gateway_test (which may import
// internal/telemetry).
func StubGateway(b *testing.B, tel Telemetry) *Gateway {
	g := newStubGateway(b)
	g.cfg.Telemetry = tel
	return g
}

// BenchServe is benchServe.
func BenchServe(b *testing.B, g *Gateway, stream bool) { benchServe(b, g, stream) }

// FakeGateway is newFakeGateway (a real fakellm over loopback) with tel as
// its telemetry.
func FakeGateway(b *testing.B, tel Telemetry) *Gateway {
	g := newFakeGateway(b)
	g.cfg.Telemetry = tel
	return g
}

// FullFakeGateway is FakeGateway with the full pipeline in process (make
// bench's "ai_gateway full" rows: a key with limits and a budget, model
// limits, the usage ledger).
func FullFakeGateway(b *testing.B, tel Telemetry) *Gateway {
	g := newFakeGateway(b)
	g.cfg.Telemetry = tel
	return withGuard(b, g)
}
