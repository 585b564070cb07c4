package provider

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The trace context headers are what OpenTelemetry's propagator injects.
func TestTraceContextMatchesPropagator(t *testing.T) {
	ts, _ := trace.ParseTraceState("vendor=v1,other=x")
	for _, cfg := range []trace.SpanContextConfig{
		{TraceID: trace.TraceID{0x4b, 0xf9, 15: 0x36}, SpanID: trace.SpanID{0, 0xf0, 7: 0xb7}, TraceFlags: trace.FlagsSampled},
		{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}},
		{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: 0xff, TraceState: ts},
	} {
		ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(cfg))
		want := http.Header{}
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(want))
		tp, st := traceContext(ctx)
		got := requestHeader(http.Header{"Authorization": {"Bearer k"}}, http.Header{"Anthropic-Beta": {"b"}}, tp, st)
		if got.Get("Traceparent") != want.Get("Traceparent") || got.Get("Tracestate") != want.Get("Tracestate") {
			t.Errorf("%+v: traceparent %q tracestate %q, want %q %q", cfg, got.Get("Traceparent"), got.Get("Tracestate"), want.Get("Traceparent"), want.Get("Tracestate"))
		}
		if got.Get("Authorization") != "Bearer k" || got.Get("Anthropic-Beta") != "b" || len(got) != 2+len(want) {
			t.Errorf("header %v", got)
		}
	}
	if tp, st := traceContext(context.Background()); tp != nil || st != nil {
		t.Errorf("no span: %v %v", tp, st)
	}
}
