package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
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

// TracerProvider is a tracer provider of the gateway's own: Shutdown
// flushes what it holds and stops its goroutine.
type TracerProvider interface {
	trace.TracerProvider
	ForceFlush(context.Context) error
	Shutdown(context.Context) error
}

// NewProvider returns a tracer provider exporting to o's OTLP endpoint in
// batches: for OTLP/HTTP the gateway's own OTLPProvider (its goroutine
// stops with ctx or Shutdown), unless a TLS certificate variable needs
// otlptracehttp; otherwise the SDK's provider with a batching processor
// and NewExporter's exporter. Shut it down to flush and stop its
// goroutine.
func NewProvider(ctx context.Context, o Options) (TracerProvider, error) {
	if proto, ep := protocolAndEndpoint(o); proto == ProtocolHTTP {
		he, err := newHTTPExporter(ep)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
		}
		if he != nil {
			res, err := newResource(o)
			if err != nil {
				return nil, err
			}
			return newOTLPProvider(ctx, he, o.Sample, res), nil
		}
	}
	exp, err := NewExporter(ctx, o)
	if err != nil {
		return nil, err
	}
	return newProvider(o, sdktrace.WithBatcher(exp))
}

// protocolAndEndpoint is o's protocol (lower case; the variables' when o
// names none, else http) and, for http, its full endpoint URL (a base URL
// without a path gets /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT does).
func protocolAndEndpoint(o Options) (proto, endpoint string) {
	proto = strings.ToLower(o.Protocol)
	if proto == "" {
		proto = strings.ToLower(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
		if proto == "" {
			proto = strings.ToLower(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
		}
		if proto == "http/protobuf" || proto == "http/json" || proto == "" {
			proto = ProtocolHTTP
		}
	}
	ep := o.Endpoint
	if proto == ProtocolHTTP {
		if u, err := url.Parse(ep); ep != "" && err == nil && (u.Path == "" || u.Path == "/") {
			ep = strings.TrimSuffix(ep, "/") + "/v1/traces"
		}
	}
	return proto, ep
}

// NewExporter returns the span exporter to o's OTLP endpoint: for HTTP
// the gateway's own (httpExporter), unless a TLS certificate variable
// needs otlptracehttp; for gRPC otlptracegrpc.
func NewExporter(ctx context.Context, o Options) (sdktrace.SpanExporter, error) {
	proto, ep := protocolAndEndpoint(o)
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case ProtocolHTTP:
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
	res, err := newResource(o)
	if err != nil {
		return nil, err
	}
	return sdktrace.NewTracerProvider(
		export,
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	), nil
}

// newResource is the default resource (OTEL_RESOURCE_ATTRIBUTES, the SDK's
// attributes) with o's service.name.
func newResource(o Options) (*resource.Resource, error) {
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
	return res, nil
}

// envInt is the positive integer variable v, else def.
func envInt(v string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n > 0 {
		return n
	}
	return def
}

// envMillis is the variable v in milliseconds, else def.
func envMillis(v string, def time.Duration) time.Duration {
	return time.Duration(envInt(v, int(def/time.Millisecond))) * time.Millisecond
}
