package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

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
//	On    every request traced by the SDK, sampled at 100 %, to an
//	      exporter that discards the spans.
//	OTLP  every request traced, exported over OTLP/HTTP to a local
//	      collector that drops them (encoding and export in the cost), by
//	      the gateway's OTLPProvider (the telemetry block's); OTLPSDK by
//	      the SDK with the gateway's exporter (Caddy's tracing spans are
//	      SDK spans); OTLPLib by the SDK with otlptracehttp.
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

// How otlpTracer exports.
const (
	ownProvider = iota // the gateway's OTLPProvider (what the telemetry block runs)
	sdkOwnWire         // the SDK's provider and batcher, the gateway's exporter
	sdkLib             // the SDK's provider and batcher, otlptracehttp
)

// otlpTracer exports every request's spans over OTLP/HTTP (protobuf) to a
// local collector that reads and drops them: the encoding and the export
// are in the cost, as in make bench's traced row. With the SDK, the batch
// processor blocks instead of dropping spans when its queue is full, so
// that every span is exported: at this rate the default one drops most of
// them and would hide their cost. The OTLPProvider's queue drops too when
// full (it never blocks a request): the benchmark gives it room for a
// second of spans, and Dropped must stay 0.
func otlpTracer(b *testing.B, how int) *telemetry.Tracer {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(sink.Close)
	var (
		tp  telemetry.TracerProvider
		exp sdktrace.SpanExporter
		err error
	)
	switch how {
	case ownProvider:
		b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "262144")
		tp, err = telemetry.NewProvider(context.Background(), telemetry.Options{Endpoint: sink.URL, Protocol: telemetry.ProtocolHTTP, Sample: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if n := tp.(*telemetry.OTLPProvider).Dropped(); n > 0 {
				b.Errorf("%d spans dropped", n)
			}
		})
	case sdkOwnWire:
		exp, err = telemetry.NewExporter(context.Background(), telemetry.Options{Endpoint: sink.URL, Protocol: telemetry.ProtocolHTTP})
	case sdkLib:
		exp, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
	}
	if err != nil {
		b.Fatal(err)
	}
	if exp != nil {
		if tp, err = telemetry.NewProviderWith(telemetry.Options{Sample: 1}, sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithBlocking())); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &telemetry.Tracer{Own: tp, Upstreams: map[string]telemetry.Upstream{"fake": telemetry.UpstreamOf("openai", "http://127.0.0.1:8080/v1")}}
}

// serve is gateway.BenchServe, reporting the process's CPU time per
// request too (cpu-ns/op: every goroutine's, the export's and the local
// collector's included), which other load on the machine barely moves.
func serve(b *testing.B, g *gateway.Gateway, stream bool) {
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	gateway.BenchServe(b, g, stream)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkTelemetryOffChat(b *testing.B) {
	serve(b, gateway.StubGateway(b, nil), false)
}
func BenchmarkTelemetryIdleChat(b *testing.B) {
	serve(b, gateway.StubGateway(b, &telemetry.Tracer{}), false)
}
func BenchmarkTelemetryOnChat(b *testing.B) {
	serve(b, gateway.StubGateway(b, onTracer(b)), false)
}
func BenchmarkTelemetryOTLPChat(b *testing.B) {
	serve(b, gateway.StubGateway(b, otlpTracer(b, ownProvider)), false)
}
func BenchmarkTelemetryOTLPSDKChat(b *testing.B) {
	serve(b, gateway.StubGateway(b, otlpTracer(b, sdkOwnWire)), false)
}
func BenchmarkTelemetryOTLPLibChat(b *testing.B) {
	serve(b, gateway.StubGateway(b, otlpTracer(b, sdkLib)), false)
}

func BenchmarkTelemetryOffStream(b *testing.B) {
	serve(b, gateway.StubGateway(b, nil), true)
}
func BenchmarkTelemetryIdleStream(b *testing.B) {
	serve(b, gateway.StubGateway(b, &telemetry.Tracer{}), true)
}
func BenchmarkTelemetryOnStream(b *testing.B) {
	serve(b, gateway.StubGateway(b, onTracer(b)), true)
}
func BenchmarkTelemetryOTLPStream(b *testing.B) {
	serve(b, gateway.StubGateway(b, otlpTracer(b, ownProvider)), true)
}
func BenchmarkTelemetryOTLPSDKStream(b *testing.B) {
	serve(b, gateway.StubGateway(b, otlpTracer(b, sdkOwnWire)), true)
}
func BenchmarkTelemetryOTLPLibStream(b *testing.B) {
	serve(b, gateway.StubGateway(b, otlpTracer(b, sdkLib)), true)
}

// The same through the openaicompat provider to an in-process fakellm over
// loopback: tracing's share of a request that crosses HTTP twice.
func BenchmarkTelemetryOffChatFake(b *testing.B) {
	serve(b, gateway.FakeGateway(b, nil), false)
}
func BenchmarkTelemetryOnChatFake(b *testing.B) {
	serve(b, gateway.FakeGateway(b, onTracer(b)), false)
}
func BenchmarkTelemetryOffStreamFake(b *testing.B) {
	serve(b, gateway.FakeGateway(b, nil), true)
}
func BenchmarkTelemetryOnStreamFake(b *testing.B) {
	serve(b, gateway.FakeGateway(b, onTracer(b)), true)
}

// The full pipeline (key check, limits, budget, usage) over fakellm: what
// make bench's "ai_gateway full, traced" row serves, in one process.
func BenchmarkTelemetryOffChatFull(b *testing.B) {
	serve(b, gateway.FullFakeGateway(b, nil), false)
}
func BenchmarkTelemetryOTLPChatFull(b *testing.B) {
	serve(b, gateway.FullFakeGateway(b, otlpTracer(b, ownProvider)), false)
}
func BenchmarkTelemetryOTLPSDKChatFull(b *testing.B) {
	serve(b, gateway.FullFakeGateway(b, otlpTracer(b, sdkOwnWire)), false)
}
func BenchmarkTelemetryOTLPLibChatFull(b *testing.B) {
	serve(b, gateway.FullFakeGateway(b, otlpTracer(b, sdkLib)), false)
}
