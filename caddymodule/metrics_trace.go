package caddymodule

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// dropCounter is a tracer provider that counts the spans it could not
// deliver (telemetry.OTLPProvider).
type dropCounter interface{ Dropped() uint64 }

// registerTraceMetrics exports caddy_ai_gateway_trace_spans_dropped_total
// (read at scrape time) when the gateway exports its own traces through a
// provider that counts the spans it dropped: a full queue, a shutdown, a
// failed export. Spans that leave through Caddy's tracing are the SDK's,
// which counts nothing; then there is no series.
func registerTraceMetrics(reg prometheus.Registerer, tp trace.TracerProvider) error {
	d, ok := tp.(dropCounter)
	if reg == nil || !ok {
		return nil
	}
	var c prometheus.CounterFunc = prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "trace_spans_dropped_total",
		Help: "Spans the gateway's own OTLP exporter did not deliver (queue full, shutdown, failed export)."},
		func() float64 { return float64(d.Dropped()) })
	return register(reg, &c)
}
