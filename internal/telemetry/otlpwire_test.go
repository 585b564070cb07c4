package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// wireSpans are spans with every kind of attribute value, events, links,
// statuses, a remote parent, two scopes and two resources.
func wireSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	res1 := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.41.0", attribute.String("service.name", "gw"), attribute.Int("n", 3))
	res2 := resource.NewSchemaless(attribute.String("service.name", "other"))
	ts, _ := trace.ParseTraceState("vendor=v1")
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	root := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, TraceState: ts})
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled, Remote: true})
	start := time.Unix(1700000000, 123456789)
	long := make([]byte, 300) // a length that takes two varint bytes
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	scope := instrumentation.Scope{Name: ScopeName, Version: "1.2.3", SchemaURL: "https://opentelemetry.io/schemas/1.41.0",
		Attributes: attribute.NewSet(attribute.Bool("scoped", true))}
	stubs := tracetest.SpanStubs{
		{
			Name: "ai_gateway chat", SpanContext: root, Parent: remote, SpanKind: trace.SpanKindServer,
			StartTime: start, EndTime: start.Add(time.Millisecond),
			Attributes: []attribute.KeyValue{
				attribute.String("s", "v"), attribute.String("empty", ""), attribute.String("long", string(long)),
				attribute.Bool("t", true), attribute.Bool("f", false),
				attribute.Int64("i", -42), attribute.Int64("zero", 0), attribute.Float64("x", 0.25), attribute.Float64("fz", 0),
				attribute.StringSlice("ss", []string{"stop", "length"}), attribute.BoolSlice("bs", []bool{true, false}),
				AttrFinishReasons.StringSlice([]string{"stop"}), // encoded once (encodedFinishReasons)
				attribute.Int64Slice("is", []int64{1, -2}), attribute.Float64Slice("fs", []float64{1.5}),
				{Key: "bytes", Value: attribute.ByteSliceValue([]byte{0, 1, 2})},
				{Key: "slice", Value: attribute.SliceValue(attribute.StringValue("a"), attribute.IntValue(1))},
				{Key: "map", Value: attribute.MapValue(attribute.String("k", "v"), attribute.Int("n", 2))},
			},
			Events: []sdktrace.Event{{Name: "ev", Time: start.Add(time.Microsecond), Attributes: []attribute.KeyValue{attribute.Int("e", 1)}, DroppedAttributeCount: 2}},
			Links:  []sdktrace.Link{{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.String("l", "x")}, DroppedAttributeCount: 1}},
			Status: sdktrace.Status{Code: codes.Error, Description: "503"}, DroppedAttributes: 3, DroppedEvents: 4, DroppedLinks: 5,
			ChildSpanCount: 2, Resource: res1, InstrumentationScope: scope,
		},
		{
			Name: "chat fake-model", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled}),
			Parent: root, SpanKind: trace.SpanKindClient, StartTime: start, EndTime: start.Add(time.Second),
			Attributes: []attribute.KeyValue{attribute.String("gen_ai.operation.name", "chat")},
			Status:     sdktrace.Status{Code: codes.Ok}, Resource: res1, InstrumentationScope: scope,
		},
		{Name: "key check", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{3}}), Parent: root,
			StartTime: start, EndTime: start, Resource: res1, InstrumentationScope: instrumentation.Scope{Name: "other"}},
		{Name: "elsewhere", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{4}}),
			SpanKind: trace.SpanKind(42), StartTime: start, EndTime: start, Resource: res2},
	}
	return stubs.Snapshots()
}

// capture starts a collector that keeps the decoded requests it gets.
func capture(t *testing.T) (string, chan *coltracepb.ExportTraceServiceRequest, chan http.Header) {
	t.Helper()
	reqs, hdrs := make(chan *coltracepb.ExportTraceServiceRequest, 8), make(chan http.Header, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rd io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			rd = zr
		}
		b, _ := io.ReadAll(rd)
		var m coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Errorf("decoding the export: %v", err)
		}
		reqs <- &m
		hdrs <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/traces", reqs, hdrs
}

// byResource orders the request's resource spans by service name
// (otlptracehttp emits them in map order).
func byResource(m *coltracepb.ExportTraceServiceRequest) map[string]proto.Message {
	out := map[string]proto.Message{}
	for _, rs := range m.ResourceSpans {
		name := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				name = kv.Value.GetStringValue()
			}
		}
		out[name] = rs
	}
	return out
}

// The wire encoding decodes to exactly the message OpenTelemetry's own
// OTLP/HTTP exporter sends for the same spans.
func TestWireMatchesOTLPExporter(t *testing.T) {
	spans := wireSpans(t)
	url, reqs, _ := capture(t)
	official, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(url))
	if err != nil {
		t.Fatal(err)
	}
	if err := official.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	want := byResource(<-reqs)
	var w wire
	for range 2 { // the reused buffers give the same bytes again
		var got coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(w.encode(spans), &got); err != nil {
			t.Fatal(err)
		}
		g := byResource(&got)
		if len(g) != 2 || len(want) != 2 {
			t.Fatalf("resources: got %d, want %d", len(g), len(want))
		}
		for name, m := range want {
			if !proto.Equal(g[name], m) {
				t.Fatalf("resource %q:\n got  %v\n want %v", name, g[name], m)
			}
		}
	}
}

func TestHTTPExporterHeadersAndGzip(t *testing.T) {
	url, reqs, hdrs := capture(t)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-tenant=t1")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
	e, err := newHTTPExporter(url)
	if err != nil || e == nil {
		t.Fatalf("exporter %v, %v", e, err)
	}
	spans := wireSpans(t)
	if err := e.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	m, h := <-reqs, <-hdrs
	if n := len(m.ResourceSpans); n != 2 {
		t.Fatalf("%d resource spans", n)
	}
	if h.Get("Api-Key") != "a b" || h.Get("X-Tenant") != "t1" || h.Get("Content-Type") != "application/x-protobuf" || h.Get("Content-Encoding") != "gzip" {
		t.Fatalf("headers %v", h)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPExporterRetriesAndFails(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	e, err := newHTTPExporter(srv.URL + "/v1/traces")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ExportSpans(context.Background(), wireSpans(t)); err == nil || calls != 2 {
		t.Fatalf("err %v after %d calls; want a failure after a retry", err, calls)
	}
}

func TestHTTPExporterLeavesTLSToOTLPExporter(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ssl/ca.pem")
	if e, err := newHTTPExporter("https://collector:4318/v1/traces"); e != nil || err != nil {
		t.Fatalf("exporter %v, %v: want none, for otlptracehttp", e, err)
	}
}

func BenchmarkWireEncode(b *testing.B) {
	spans := wireSpans(&testing.T{})
	var w wire
	b.ReportAllocs()
	for b.Loop() {
		w.encode(spans)
	}
}
