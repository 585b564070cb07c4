package provider

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// withTraceContext returns extra with the W3C trace context (traceparent,
// tracestate) of the span ctx carries, so that the upstream call continues
// the gateway's trace; extra as it is when ctx carries no span.
func withTraceContext(ctx context.Context, extra http.Header) http.Header {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return extra
	}
	h := make(http.Header, len(extra)+2)
	for k, v := range extra {
		h[k] = v
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
	return h
}
