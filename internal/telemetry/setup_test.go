package telemetry_test

import (
	"context"
	"net"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
)

// grpcCollector is an OTLP/gRPC trace receiver.
type grpcCollector struct {
	coltrace.UnimplementedTraceServiceServer
	mu      sync.Mutex
	names   []string
	service string
}

func (c *grpcCollector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				c.service = kv.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.names = append(c.names, s.Name)
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestProviderGRPC: the grpc protocol exports to an OTLP/gRPC collector
// (an endpoint without a scheme is plain text); shutting down flushes.
func TestProviderGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	col := &grpcCollector{}
	coltrace.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	tp, err := telemetry.NewProvider(context.Background(), telemetry.Options{Endpoint: l.Addr().String(), Protocol: telemetry.ProtocolGRPC, ServiceName: "grpc-test"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer(telemetry.ScopeName).Start(context.Background(), "chat m")
	span.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.names) != 1 || col.names[0] != "chat m" || col.service != "grpc-test" {
		t.Fatalf("collector got %v from %q", col.names, col.service)
	}
}

func TestProviderRejectsUnknownProtocol(t *testing.T) {
	if _, err := telemetry.NewProvider(context.Background(), telemetry.Options{Endpoint: "http://127.0.0.1:1", Protocol: "udp"}); err == nil {
		t.Fatal("udp accepted")
	}
}
