package telemetry

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// seqIDs hands out the same ids to whichever provider asks, in order.
type seqIDs struct {
	mu sync.Mutex
	n  uint64
}

func (g *seqIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	var tid trace.TraceID
	binary.BigEndian.PutUint64(tid[:8], 0xabcd)
	binary.BigEndian.PutUint64(tid[8:], g.n*0x9e3779b97f4a7c15)
	return tid, g.spanID()
}

func (g *seqIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return g.spanID()
}

func (g *seqIDs) spanID() trace.SpanID {
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.n)
	return sid
}

// someSpans makes the same spans with tp: a server span under a remote
// parent with a tracestate, children with every attribute type, statuses
// and given times, a root of its own, and a second scope.
func someSpans(t *testing.T, tp trace.TracerProvider) {
	t.Helper()
	ts, _ := trace.ParseTraceState("vendor=v1")
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	at := time.Unix(1700000000, 123456789)
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	tr := tp.Tracer(ScopeName)
	rctx, root := tr.Start(ctx, "ai_gateway chat", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at))
	_, child := tr.Start(rctx, "chat fake-model", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(at.Add(time.Microsecond)),
		trace.WithAttributes(attribute.String("at.start", "x")))
	child.SetAttributes(
		attribute.String("s", "v"), attribute.String("empty", ""), attribute.String("long", string(long)),
		attribute.Bool("t", true), attribute.Bool("f", false),
		attribute.Int64("i", -42), attribute.Int64("zero", 0), attribute.Float64("x", 0.25), attribute.Float64("fz", 0),
		attribute.StringSlice("ss", []string{"stop", "length"}), attribute.BoolSlice("bs", []bool{true, false}),
		attribute.Int64Slice("is", []int64{1, -2}), attribute.Float64Slice("fs", []float64{1.5}))
	child.SetStatus(codes.Error, "503")
	child.End(trace.WithTimestamp(at.Add(time.Millisecond)))
	_, ok := tr.Start(rctx, "admission", trace.WithTimestamp(at))
	ok.SetStatus(codes.Ok, "ignored")
	ok.SetStatus(codes.Error, "after ok: ignored")
	ok.End(trace.WithTimestamp(at.Add(2 * time.Microsecond)))
	root.SetAttributes(AttrFinishReasons.StringSlice([]string{"stop"}), AttrInputTokens.Int64(1<<40))
	root.End(trace.WithTimestamp(at.Add(time.Second)))
	other := tp.Tracer("other", trace.WithInstrumentationVersion("1.2.3"), trace.WithSchemaURL("https://opentelemetry.io/schemas/1.41.0"),
		trace.WithInstrumentationAttributes(attribute.Bool("scoped", true)))
	_, own := other.Start(context.Background(), "own root", trace.WithTimestamp(at))
	own.End(trace.WithTimestamp(at.Add(time.Second)))
}

// bySpan indexes a request's spans by id with their scope and resource.
func bySpan(t *testing.T, m *coltracepb.ExportTraceServiceRequest) map[string]proto.Message {
	t.Helper()
	out := map[string]proto.Message{}
	for _, rs := range m.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out[string(s.SpanId)] = &tracepb.ResourceSpans{Resource: rs.Resource, SchemaUrl: rs.SchemaUrl,
					ScopeSpans: []*tracepb.ScopeSpans{{Scope: ss.Scope, SchemaUrl: ss.SchemaUrl, Spans: []*tracepb.Span{s}}}}
			}
		}
	}
	return out
}

// The OTLPProvider's export decodes to exactly what the SDK and
// otlptracehttp send for the same spans: ids, parents, flags, trace
// state, names, kinds, times, attributes, statuses, scopes, resource.
func TestOTLPProviderMatchesSDK(t *testing.T) {
	url, reqs, _ := capture(t)
	o := Options{ServiceName: "gw"}
	res, err := newResource(o)
	if err != nil {
		t.Fatal(err)
	}

	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(url))
	if err != nil {
		t.Fatal(err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithIDGenerator(&seqIDs{}))
	someSpans(t, sdk)
	if err := sdk.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := bySpan(t, <-reqs)

	he, err := newHTTPExporter(url)
	if err != nil {
		t.Fatal(err)
	}
	p := newOTLPProvider(context.Background(), he, 1, res)
	p.ids = &seqIDs{}
	someSpans(t, p)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := bySpan(t, <-reqs)
	if len(want) != 4 || len(got) != len(want) {
		t.Fatalf("spans: got %d, want %d (4)", len(got), len(want))
	}
	for id, w := range want {
		if !proto.Equal(got[id], w) {
			t.Errorf("span %x:\n got  %v\n want %v", id, got[id], w)
		}
	}
}

// TestOTLPProviderSampling: new traces are sampled by the SDK's trace-id
// ratio rule, a parent's decision is followed, and unsampled spans carry
// their context but are not exported.
func TestOTLPProviderSampling(t *testing.T) {
	c := startCounting(t, nil)
	he, err := newHTTPExporter(c.url)
	if err != nil {
		t.Fatal(err)
	}
	p := newOTLPProvider(context.Background(), he, 0.25, nil)
	sdkRule := sdktrace.TraceIDRatioBased(0.25)
	tr := p.Tracer(ScopeName)
	sampled := 0
	for range 400 {
		_, s := tr.Start(context.Background(), "root")
		sc := s.SpanContext()
		want := sdkRule.ShouldSample(sdktrace.SamplingParameters{TraceID: sc.TraceID()}).Decision == sdktrace.RecordAndSample
		if sc.IsSampled() != want || s.IsRecording() != want || !sc.IsValid() {
			t.Fatalf("trace %s sampled %v, the SDK's rule says %v", sc.TraceID(), sc.IsSampled(), want)
		}
		if want {
			sampled++
		}
		s.End()
	}
	if sampled < 40 || sampled > 160 {
		t.Fatalf("%d of 400 sampled at 0.25", sampled)
	}
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, TraceFlags: flags, Remote: true})
		_, s := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
		if s.SpanContext().IsSampled() != parent.IsSampled() || s.SpanContext().TraceID() != parent.TraceID() {
			t.Fatalf("child of %v: %v", parent, s.SpanContext())
		}
		if flags != 0 {
			sampled++
		}
		s.End()
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := int(c.spans.Load()); got != sampled || p.Dropped() != 0 {
		t.Fatalf("exported %d spans, %d sampled; %d dropped", got, sampled, p.Dropped())
	}
}

// counting is a collector that counts spans; hold (when set) keeps each
// request waiting until it is closed.
type counting struct {
	url   string
	spans atomic.Int64
}

func startCounting(t *testing.T, hold chan struct{}) *counting {
	t.Helper()
	c := &counting{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m coltracepb.ExportTraceServiceRequest
		b := make([]byte, 0, r.ContentLength)
		b, _ = readAll(r, b)
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Errorf("decoding the export: %v", err)
		}
		if hold != nil {
			<-hold
		}
		for _, rs := range m.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans.Add(int64(len(ss.Spans)))
			}
		}
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/v1/traces"
	return c
}

func readAll(r *http.Request, b []byte) ([]byte, error) {
	for {
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			return b, nil
		}
		if len(b) == cap(b) {
			b = slices.Grow(b, 4096)
		}
	}
}

// TestOTLPProviderQueueBounded: with the collector stalled, spans beyond
// the queue are dropped and counted, ending a span never waits, and
// every span is either delivered or counted once the collector answers.
func TestOTLPProviderQueueBounded(t *testing.T) {
	t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "20")
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5")
	hold := make(chan struct{})
	c := startCounting(t, hold)
	he, err := newHTTPExporter(c.url)
	if err != nil {
		t.Fatal(err)
	}
	p := newOTLPProvider(context.Background(), he, 1, nil)
	tr := p.Tracer(ScopeName)
	const n = 1000
	for range n {
		_, s := tr.Start(context.Background(), "span")
		s.End() // returns although the export in flight waits
	}
	if p.Dropped() == 0 {
		t.Fatal("nothing dropped with the collector stalled")
	}
	close(hold)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.spans.Load() + int64(p.Dropped()); got != n {
		t.Fatalf("%d delivered + %d dropped = %d, want %d", c.spans.Load(), p.Dropped(), got, n)
	}
	if c.spans.Load() > 2*20 {
		t.Fatalf("%d delivered: more than the export in flight and a full queue", c.spans.Load())
	}
}

// TestOTLPProviderShutdownFlushes: spans still pending are exported by
// Shutdown (here the schedule is an hour away); a span ended afterwards
// is dropped; ForceFlush after Shutdown returns.
func TestOTLPProviderShutdownFlushes(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
	c := startCounting(t, nil)
	he, err := newHTTPExporter(c.url)
	if err != nil {
		t.Fatal(err)
	}
	p := newOTLPProvider(context.Background(), he, 1, nil)
	tr := p.Tracer(ScopeName)
	for range 3 {
		_, s := tr.Start(context.Background(), "pending")
		s.End()
	}
	if c.spans.Load() != 0 {
		t.Fatal("exported before the schedule")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.spans.Load() != 3 {
		t.Fatalf("%d spans exported by Shutdown, want 3", c.spans.Load())
	}
	_, s := tr.Start(context.Background(), "late")
	s.End()
	if p.Dropped() != 1 {
		t.Fatalf("dropped %d after shutdown, want 1", p.Dropped())
	}
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOTLPProviderStopsWithContext: the export goroutine ends when the
// provider's context does.
func TestOTLPProviderStopsWithContext(t *testing.T) {
	c := startCounting(t, nil)
	he, err := newHTTPExporter(c.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := newOTLPProvider(ctx, he, 1, nil)
	cancel()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the export goroutine outlived its context")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// NewProvider picks the OTLPProvider for OTLP/HTTP and the SDK for gRPC.
func TestNewProviderKinds(t *testing.T) {
	for proto, own := range map[string]bool{ProtocolHTTP: true, ProtocolGRPC: false} {
		tp, err := NewProvider(context.Background(), Options{Endpoint: "http://127.0.0.1:1", Protocol: proto})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tp.(*OTLPProvider); ok != own {
			t.Errorf("%s: provider %T", proto, tp)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = tp.Shutdown(ctx)
		cancel()
	}
}

func BenchmarkOTLPProviderSpan(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	b.Cleanup(sink.Close)
	b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
	he, err := newHTTPExporter(sink.URL)
	if err != nil {
		b.Fatal(err)
	}
	p := newOTLPProvider(context.Background(), he, 1, nil)
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	tr := p.Tracer(ScopeName)
	ctx := context.Background()
	attrs := []attribute.KeyValue{AttrOperationName.String("chat"), AttrRequestModel.String("m"), AttrInputTokens.Int64(12)}
	b.ReportAllocs()
	for b.Loop() {
		_, s := tr.Start(ctx, "chat m")
		s.SetAttributes(attrs...)
		s.End()
	}
}
