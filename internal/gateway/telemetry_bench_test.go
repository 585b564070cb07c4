package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
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
//	OTLP  every request traced, exported over OTLP/HTTP to a local
//	      collector that drops them (encoding and export in the cost), by
//	      the gateway's exporter; OTLPLib by OpenTelemetry's otlptracehttp.
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

// otlpTracer exports every request's spans over OTLP/HTTP (protobuf) to a
// local collector that reads and drops them: the encoding and the export
// are in the cost, as in make bench's traced row. lib picks
// OpenTelemetry's otlptracehttp over the gateway's own exporter. The
// batch processor blocks instead of dropping spans when its queue is
// full, so that every span is exported: at this rate the default one
// drops most of them and would hide their cost.
func otlpTracer(b *testing.B, lib bool) *telemetry.Tracer {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(sink.Close)
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if lib {
		exp, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
	} else {
		exp, err = telemetry.NewExporter(context.Background(), telemetry.Options{Endpoint: sink.URL, Protocol: telemetry.ProtocolHTTP})
	}
	if err != nil {
		b.Fatal(err)
	}
	tp, err := telemetry.NewProviderWith(telemetry.Options{Sample: 1}, sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithBlocking()))
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
func BenchmarkTelemetryOTLPChat(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, otlpTracer(b, false)), false)
}
func BenchmarkTelemetryOTLPLibChat(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, otlpTracer(b, true)), false)
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
func BenchmarkTelemetryOTLPStream(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, otlpTracer(b, false)), true)
}
func BenchmarkTelemetryOTLPLibStream(b *testing.B) {
	gateway.BenchServe(b, gateway.StubGateway(b, otlpTracer(b, true)), true)
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

// The full pipeline (key check, limits, budget, usage) over fakellm: what
// make bench's "ai_gateway full, traced" row serves, in one process.
func BenchmarkTelemetryOffChatFull(b *testing.B) {
	gateway.BenchServe(b, gateway.FullFakeGateway(b, nil), false)
}
func BenchmarkTelemetryOTLPChatFull(b *testing.B) {
	gateway.BenchServe(b, gateway.FullFakeGateway(b, otlpTracer(b, false)), false)
}
func BenchmarkTelemetryOTLPLibChatFull(b *testing.B) {
	gateway.BenchServe(b, gateway.FullFakeGateway(b, otlpTracer(b, true)), false)
}
