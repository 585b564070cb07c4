package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
)

// Protocols of an OTLP exporter.
const (
	ProtocolHTTP = "http" // OTLP/HTTP with protobuf bodies
	ProtocolGRPC = "grpc"
)

// DefaultServiceName is service.name when neither the configuration nor
// OTEL_SERVICE_NAME names one.
const DefaultServiceName = "caddy-ai-gateway"

// EnvCaptureContent turns content capture on (=true), as in other GenAI
// instrumentations.
const EnvCaptureContent = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

// Options configure the gateway's own tracer provider.
type Options struct {
	// Endpoint is the OTLP collector's URL (http://host:4318 for HTTP,
	// where a URL without a path gets /v1/traces; http://host:4317 for
	// gRPC, where one without a scheme is taken as plain text). Empty: the
	// OTEL_EXPORTER_OTLP_* variables.
	Endpoint string
	// Protocol is ProtocolHTTP or ProtocolGRPC. Empty: the variables'
	// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL;
	// grpc or http/protobuf), else HTTP.
	Protocol string
	// Sample is the ratio of new traces sampled (a client's sampled
	// traceparent is always followed). 0 means 1.
	Sample float64
	// ServiceName is service.name. Default: OTEL_SERVICE_NAME, else
	// DefaultServiceName.
	ServiceName string
}

// EnvConfigured reports whether the standard variables name an OTLP
// trace endpoint.
func EnvConfigured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// EnvCapture reports whether OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
// turns content capture on.
func EnvCapture() bool {
	v, _ := strconv.ParseBool(os.Getenv(EnvCaptureContent))
	return v
}

// NewProvider returns a tracer provider exporting to o's OTLP endpoint in
// batches. Shut it down to flush and stop its goroutine.
func NewProvider(ctx context.Context, o Options) (*sdktrace.TracerProvider, error) {
	exp, err := NewExporter(ctx, o)
	if err != nil {
		return nil, err
	}
	return newProvider(o, sdktrace.WithBatcher(exp))
}

// NewExporter returns the span exporter to o's OTLP endpoint: for HTTP
// the gateway's own (httpExporter), unless a TLS certificate variable
// needs otlptracehttp; for gRPC otlptracegrpc.
func NewExporter(ctx context.Context, o Options) (sdktrace.SpanExporter, error) {
	proto := strings.ToLower(o.Protocol)
	if proto == "" {
		proto = strings.ToLower(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
		if proto == "" {
			proto = strings.ToLower(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
		}
		if proto == "http/protobuf" || proto == "http/json" || proto == "" {
			proto = ProtocolHTTP
		}
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case ProtocolHTTP:
		ep := o.Endpoint
		// A base URL (no path) gets the signal's path, as
		// OTEL_EXPORTER_OTLP_ENDPOINT does.
		if u, err := url.Parse(ep); ep != "" && err == nil && (u.Path == "" || u.Path == "/") {
			ep = strings.TrimSuffix(ep, "/") + "/v1/traces"
		}
		var he *httpExporter
		if he, err = newHTTPExporter(ep); he != nil {
			exp = he
			break
		}
		if err != nil {
			break
		}
		var opts []otlptracehttp.Option
		if ep != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(ep))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if ep := o.Endpoint; ep != "" {
			if !strings.Contains(ep, "://") {
				ep = "http://" + ep
			}
			opts = append(opts, otlptracegrpc.WithEndpointURL(ep))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("telemetry: unknown OTLP protocol %q (grpc or http)", o.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	return exp, nil
}

// NewProviderWith returns a tracer provider sending its spans to sp (tests,
// benchmarks).
func NewProviderWith(o Options, sp sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	return newProvider(o, sdktrace.WithSpanProcessor(sp))
}

func newProvider(o Options, export sdktrace.TracerProviderOption) (*sdktrace.TracerProvider, error) {
	ratio := o.Sample
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	name := o.ServiceName
	if name == "" {
		name = os.Getenv("OTEL_SERVICE_NAME")
	}
	if name == "" {
		name = DefaultServiceName
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(name)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		export,
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	), nil
}
