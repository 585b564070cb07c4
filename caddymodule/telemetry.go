package caddymodule

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/registry"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
)

// TelemetryConfig configures the gateway's OpenTelemetry traces. A route
// under Caddy's own `tracing` directive is traced through Caddy's tracer
// provider whatever this says (the gateway's spans are children of
// Caddy's server span); this configures the gateway's own exporter for the
// other routes.
type TelemetryConfig struct {
	// OTLP is the collector's endpoint URL (http://host:4318 for HTTP,
	// http://host:4317 for gRPC). Default: the OTEL_EXPORTER_OTLP_*
	// variables; with neither, the gateway exports nothing of its own.
	OTLP string `json:"otlp,omitempty"`
	// Protocol is http (OTLP/HTTP, protobuf) or grpc. Default: the
	// OTEL_EXPORTER_OTLP_PROTOCOL variable, else http.
	Protocol string `json:"protocol,omitempty"`
	// Sample is the ratio of new traces sampled, in (0, 1]; a client's
	// traceparent decision is followed. Default: 1.
	Sample float64 `json:"sample,omitempty"`
	// ServiceName is the service.name resource attribute. Default:
	// OTEL_SERVICE_NAME, else caddy-ai-gateway.
	ServiceName string `json:"service_name,omitempty"`
	// CaptureContent records prompts and completions on the spans
	// (gen_ai.input.messages, gen_ai.output.messages). They hold user
	// data. Default: off, unless
	// OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
	CaptureContent bool `json:"capture_content,omitempty"`
}

// tracerPool shares the gateway's own tracer providers (their exporters and
// batching goroutines) across config reloads, by configuration.
var tracerPool = caddy.NewUsagePool()

type tracerValue struct{ tp telemetry.TracerProvider }

func (v tracerValue) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return v.tp.Shutdown(ctx)
}

// provisionObservability builds the tracer every handler's gateway uses,
// configures the metrics' labels and takes the usage rollups.
func (a *App) provisionObservability(ctx caddy.Context) error {
	if err := a.provisionTelemetry(ctx); err != nil {
		return err
	}
	a.metrics.configure(a.tracer.Upstreams, a.Models, a.Metrics != nil && a.Metrics.KeyLabel)
	if err := registerTraceMetrics(ctx.GetMetricsRegistry(), a.tracer.Own); err != nil {
		return err
	}
	return a.provisionRollups()
}

// cleanupObservability releases what provisionObservability took.
func (a *App) cleanupObservability() {
	a.cleanupTelemetry()
	a.cleanupRollups()
}

// provisionTelemetry builds the tracer: it follows Caddy's tracing, and
// exports on its own when the telemetry block or the OTEL_EXPORTER_OTLP_*
// variables name an endpoint.
func (a *App) provisionTelemetry(ctx caddy.Context) error {
	tc := a.Telemetry
	if tc == nil {
		tc = &TelemetryConfig{}
	}
	if err := tc.validate(); err != nil {
		return err
	}
	t := &telemetry.Tracer{Capture: tc.CaptureContent || telemetry.EnvCapture(), Pricing: a.pricing,
		Upstreams: make(map[string]telemetry.Upstream, len(a.Providers))}
	for name, pc := range a.Providers {
		base := ""
		switch u := a.providers[name].(type) {
		case interface{ URL(string) string }:
			base = u.URL("")
		case interface{ URL() string }: // anthropic: its Messages endpoint
			base = u.URL()
		}
		t.Upstreams[name] = telemetry.UpstreamOf(providerType(name, pc), base)
	}
	if tc.OTLP != "" || telemetry.EnvConfigured() {
		opts := telemetry.Options{Endpoint: tc.OTLP, Protocol: tc.Protocol, Sample: tc.Sample, ServiceName: tc.ServiceName}
		key := "ai_gateway.tracer|" + opts.Endpoint + "|" + opts.Protocol + "|" + strconv.FormatFloat(opts.Sample, 'g', -1, 64) + "|" + opts.ServiceName
		v, loaded, err := tracerPool.LoadOrNew(key, func() (caddy.Destructor, error) {
			tp, err := telemetry.NewProvider(context.Background(), opts)
			if err != nil {
				return nil, err
			}
			return tracerValue{tp}, nil
		})
		if err != nil {
			return fmt.Errorf("telemetry: %v", err)
		}
		a.tracerKey = key
		t.Own = v.(tracerValue).tp
		if !loaded {
			a.logger.Info("exporting traces", zap.String("endpoint", opts.Endpoint), zap.String("protocol", opts.Protocol))
		}
	}
	a.tracer = t
	return nil
}

// cleanupTelemetry releases the tracer provider (the last config using it
// flushes and shuts it down).
func (a *App) cleanupTelemetry() {
	if a.tracerKey != "" {
		_, _ = tracerPool.Delete(a.tracerKey)
		a.tracerKey = ""
	}
}

// providerType is a configured provider's registry type.
func providerType(name string, pc *ProviderConfig) string {
	typ := strings.ToLower(pc.Type)
	if typ == "" {
		typ = "openai"
		if _, ok := registry.Lookup(name); ok {
			typ = name
		}
	}
	return typ
}

func (tc *TelemetryConfig) validate() error {
	switch strings.ToLower(tc.Protocol) {
	case "", telemetry.ProtocolHTTP, telemetry.ProtocolGRPC:
	default:
		return fmt.Errorf("telemetry: protocol must be http or grpc, not %q", tc.Protocol)
	}
	if tc.Sample < 0 || tc.Sample > 1 {
		return fmt.Errorf("telemetry: sample must be between 0 and 1")
	}
	return nil
}

// unmarshal reads a telemetry block:
//
//	telemetry {
//		otlp           <endpoint> [grpc|http]
//		sample         <ratio>
//		service_name   <name>
//		capture_content
//	}
func (tc *TelemetryConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("telemetry: %s declared twice", dir)
		}
		seen[dir] = true
		switch dir {
		case "otlp":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			tc.OTLP = args[0]
			if len(args) == 2 {
				if args[1] != telemetry.ProtocolHTTP && args[1] != telemetry.ProtocolGRPC {
					return d.Errf("telemetry: otlp protocol must be grpc or http, not %q", args[1])
				}
				tc.Protocol = args[1]
			}
		case "sample":
			if !d.NextArg() {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(d.Val(), 64)
			if err != nil || f <= 0 || f > 1 {
				return d.Errf("telemetry: sample must be a ratio in (0, 1], not %q", d.Val())
			}
			tc.Sample = f
			if d.NextArg() {
				return d.ArgErr()
			}
		case "service_name":
			if !d.NextArg() {
				return d.ArgErr()
			}
			tc.ServiceName = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "capture_content":
			if d.NextArg() {
				return d.ArgErr()
			}
			tc.CaptureContent = true
		default:
			return d.Errf("telemetry: unrecognized subdirective %s", dir)
		}
	}
	return nil
}
