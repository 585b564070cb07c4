package gateway_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
)

// Tracing's cost on the gateway pipeline alone (the stub provider):
//
//	Off   Config.Telemetry nil.
//	Idle  a telemetry.Tracer with no exporter of its own, for a request
//	      without a span in its context: what every request pays when
//	      the ai_gateway app runs without tracing configured.
//	On    every request traced, sampled at 100 %, to an exporter that
//	      discards the spans.
//
//	go test -run '^$' -bench Telemetry -benchmem ./internal/gateway/

// discard is a SpanExporter that drops everything.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func onTracer(b *testing.B) *telemetry.Tracer {
	tp, err := telemetry.NewProviderWith(telemetry.Options{Sample: 1}, sdktrace.NewBatchSpanProcessor(discard{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &telemetry.Tracer{Own: tp, Upstreams: map[string]telemetry.Upstream{"fake": telemetry.UpstreamOf("openai", "http://127.0.0.1:8080/v1")}}
}

func BenchmarkTelemetryOffChat(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, nil), false)
}
func BenchmarkTelemetryIdleChat(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, &telemetry.Tracer{}), false)
}
func BenchmarkTelemetryOnChat(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, onTracer(b)), false)
}

func BenchmarkTelemetryOffStream(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, nil), true)
}
func BenchmarkTelemetryIdleStream(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, &telemetry.Tracer{}), true)
}
func BenchmarkTelemetryOnStream(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, onTracer(b)), true)
}

// The same through the openaicompat provider to an in-process fakellm over
// loopback: tracing's share of a request that crosses HTTP twice.
func BenchmarkTelemetryOffChatFake(b *testing.B) {
	gateway.BenchServe(b, gateway.FakeGateway(b, nil), false)
}
func BenchmarkTelemetryOnChatFake(b *testing.B) {
	gateway.BenchServe(b, gateway.FakeGateway(b, onTracer(b)), false)
}
func BenchmarkTelemetryOffStreamFake(b *testing.B) {
	gateway.BenchServe(b, gateway.FakeGateway(b, nil), true)
}
func BenchmarkTelemetryOnStreamFake(b *testing.B) {
	gateway.BenchServe(b, gateway.FakeGateway(b, onTracer(b)), true)
}
