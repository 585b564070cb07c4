package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/encoding/protowire"
)

// OTLPProvider is the gateway's own tracer provider when it exports over
// OTLP/HTTP itself (the telemetry block, OTEL_EXPORTER_OTLP_*): a span
// implementation behind the OpenTelemetry trace API that encodes each
// span, as it ends, straight into the pending export request (wire's
// protobuf, no read-only snapshot, no attribute dedup map, no channel
// send per span). One goroutine posts the pending request every schedule
// delay, or sooner when a batch is full, through httpExporter.
//
// Sampling is parent-based with a trace-id ratio for new traces, the
// SDK's ParentBased(TraceIDRatioBased) decided the same way. Ids come from
// math/rand/v2 (per-thread state, no lock). The queue is bounded in spans
// and bytes: a span that does not fit (the collector down or slow) is
// dropped and counted (Dropped), never waited for. Attributes are not
// deduplicated (the gateway sets each key once) and events and links are
// counted as dropped.
//
// Routes under Caddy's tracing directive use Caddy's provider (the SDK)
// instead, so that their spans leave through Caddy's exporter.
type OTLPProvider struct {
	noop.TracerProvider // the API's methods added later do nothing

	exp                   *httpExporter
	always                bool   // ratio 1
	bound                 uint64 // sampled when trace id's low 63 bits are below
	ids                   sdktrace.IDGenerator
	resource              []byte // Resource message
	resourceSchema        string
	delay                 time.Duration
	maxQueue, maxBatch    int
	maxBytes              int
	full                  chan struct{}
	flush                 chan chan struct{}
	ctx                   context.Context
	cancel                context.CancelFunc
	done                  chan struct{}
	dropped               atomic.Uint64
	out                   wire // the export request, built by the goroutine
	mu                    sync.Mutex
	tracers               []*otlpTracer // guarded by mu
	pending, pendingBytes int           // guarded by mu
	stopped               bool          // guarded by mu
}

var _ trace.TracerProvider = (*OTLPProvider)(nil)

// The batching defaults of the OpenTelemetry SDK, overridden by the
// OTEL_BSP_* variables; bytesPerQueuedSpan bounds the queue's memory too
// (16 MiB for the default 2048 spans).
const (
	defaultScheduleDelay = 5 * time.Second
	defaultMaxQueue      = 2048
	defaultMaxBatch      = 512
	bytesPerQueuedSpan   = 8 << 10
	// maxSpanAttributes is the SDK's default attribute count limit.
	maxSpanAttributes = 128
	// keptBuffer is the largest pending buffer kept between exports.
	keptBuffer = 4 << 20
)

// newOTLPProvider returns the provider exporting through exp; its
// goroutine stops with ctx or Shutdown.
func newOTLPProvider(ctx context.Context, exp *httpExporter, ratio float64, res *resource.Resource) *OTLPProvider {
	p := &OTLPProvider{
		exp:      exp,
		delay:    envMillis("OTEL_BSP_SCHEDULE_DELAY", defaultScheduleDelay),
		maxQueue: envInt("OTEL_BSP_MAX_QUEUE_SIZE", defaultMaxQueue),
		maxBatch: envInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", defaultMaxBatch),
		full:     make(chan struct{}, 1),
		flush:    make(chan chan struct{}),
		done:     make(chan struct{}),
	}
	p.maxBatch = min(p.maxBatch, p.maxQueue)
	p.maxBytes = p.maxQueue * bytesPerQueuedSpan
	if ratio <= 0 || ratio >= 1 {
		p.always = true
	} else {
		p.bound = uint64(ratio * (1 << 63))
	}
	if res != nil {
		var w wire
		for it := res.Iter(); it.Next(); {
			w.keyValue(1, it.Attribute()) // Resource.attributes
		}
		p.resource, p.resourceSchema = w.b, res.SchemaURL()
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	go p.run()
	return p
}

// Tracer implements trace.TracerProvider.
func (p *OTLPProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return p.tracer(name, opts...)
}

func (p *OTLPProvider) tracer(name string, opts ...trace.TracerOption) *otlpTracer {
	cfg := trace.NewTracerConfig(opts...)
	var w wire // the InstrumentationScope message
	w.str(1, name)
	w.str(2, cfg.InstrumentationVersion())
	attrs := cfg.InstrumentationAttributes()
	for it := attrs.Iter(); it.Next(); {
		w.keyValue(3, it.Attribute())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tracers {
		if string(t.scope) == string(w.b) && t.schema == cfg.SchemaURL() {
			return t
		}
	}
	t := &otlpTracer{p: p, scope: w.b, schema: cfg.SchemaURL()}
	p.tracers = append(p.tracers, t)
	return t
}

// Dropped is the number of spans not delivered: the queue was full, the
// provider shut down, or their export failed.
func (p *OTLPProvider) Dropped() uint64 { return p.dropped.Load() }

// ForceFlush exports the pending spans and waits for the export.
func (p *OTLPProvider) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flush <- ack:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports the pending spans (within ctx), stops the goroutine
// and records no more spans.
func (p *OTLPProvider) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	stopped := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if stopped {
		return nil
	}
	err := p.ForceFlush(ctx)
	p.cancel()
	<-p.done
	_ = p.exp.Shutdown(ctx)
	return err
}

// run exports every delay, when a batch is full, and when asked to.
func (p *OTLPProvider) run() {
	defer close(p.done)
	t := time.NewTicker(p.delay)
	defer t.Stop()
	for {
		var ack chan struct{}
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.full:
		case ack = <-p.flush:
		}
		p.export()
		if ack != nil {
			close(ack)
		}
	}
}

// export posts the pending spans in one request.
func (p *OTLPProvider) export() {
	p.mu.Lock()
	n := p.pending
	p.pending, p.pendingBytes = 0, 0
	tracers := p.tracers // only appended to: the prefix stays valid
	for _, t := range tracers {
		t.sending, t.w.b = t.w.b, t.spare[:0]
	}
	p.mu.Unlock()
	if n == 0 {
		return
	}
	w := &p.out
	w.b = w.b[:0]
	rs := w.open(1) // ExportTraceServiceRequest.resource_spans
	if p.resource != nil {
		w.tag(1, protowire.BytesType) // ResourceSpans.resource
		w.b = appendBytes(w.b, p.resource)
	}
	for _, t := range tracers {
		if len(t.sending) == 0 {
			continue
		}
		ss := w.open(2) // ResourceSpans.scope_spans
		if len(t.scope) > 0 {
			w.tag(1, protowire.BytesType) // ScopeSpans.scope
			w.b = appendBytes(w.b, t.scope)
		}
		w.b = append(w.b, t.sending...) // ScopeSpans.spans
		w.str(3, t.schema)
		w.close(ss)
	}
	w.str(3, p.resourceSchema)
	w.close(rs)
	p.exp.mu.Lock()
	err := p.exp.sendLocked(p.ctx, w.b)
	p.exp.mu.Unlock()
	if err != nil {
		p.dropped.Add(uint64(n))
	}
	for _, t := range tracers {
		if cap(t.sending) <= keptBuffer {
			t.spare = t.sending[:0]
		} else {
			t.spare = nil
		}
		t.sending = nil
	}
	if cap(w.b) > keptBuffer {
		w.b = nil
	}
}

// spanContext is a new span's context under parent: its trace (a new one
// when parent is invalid), a new span id, and the sampling decision.
func (p *OTLPProvider) spanContext(parent trace.SpanContext) trace.SpanContext {
	cfg := trace.SpanContextConfig{TraceFlags: parent.TraceFlags() &^ trace.FlagsSampled}
	if parent.IsValid() {
		cfg.TraceID, cfg.TraceState = parent.TraceID(), parent.TraceState()
		if parent.IsSampled() {
			cfg.TraceFlags |= trace.FlagsSampled
		}
		cfg.SpanID = p.spanID(cfg.TraceID)
	} else {
		cfg.TraceID, cfg.SpanID = p.newIDs()
		if p.always || binary.BigEndian.Uint64(cfg.TraceID[8:16])>>1 < p.bound {
			cfg.TraceFlags |= trace.FlagsSampled
		}
	}
	return trace.NewSpanContext(cfg)
}

func (p *OTLPProvider) newIDs() (tid trace.TraceID, sid trace.SpanID) {
	if p.ids != nil {
		return p.ids.NewIDs(context.Background())
	}
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, p.spanID(tid)
}

func (p *OTLPProvider) spanID(tid trace.TraceID) (sid trace.SpanID) {
	if p.ids != nil {
		return p.ids.NewSpanID(context.Background(), tid)
	}
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// otlpTracer is one instrumentation scope's tracer and pending spans.
type otlpTracer struct {
	noop.Tracer // the API's methods added later do nothing

	p       *OTLPProvider
	scope   []byte // InstrumentationScope message
	schema  string
	w       wire   // the pending ScopeSpans.spans fields; guarded by p.mu
	sending []byte // what the export goroutine is sending
	spare   []byte
}

var _ trace.Tracer = (*otlpTracer)(nil)

// Start implements trace.Tracer.
func (t *otlpTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	var parent trace.SpanContext
	if !cfg.NewRoot() {
		parent = trace.SpanContextFromContext(ctx)
	}
	s := t.newSpan(parent, name, "", trace.ValidateSpanKind(cfg.SpanKind()), cfg.Timestamp())
	s.SetAttributes(cfg.Attributes()...)
	s.d.droppedLinks = len(cfg.Links())
	return trace.ContextWithSpan(ctx, s), s
}

// newSpan starts a span under parent named name, or "name suffix"
// (without a concatenation), at at (zero: now).
func (t *otlpTracer) newSpan(parent trace.SpanContext, name, suffix string, kind trace.SpanKind, at time.Time) *otlpSpan {
	if at.IsZero() {
		at = time.Now()
	}
	s := &otlpSpan{t: t}
	s.d = spanData{sc: t.p.spanContext(parent), parent: parent, name: name, suffix: suffix, kind: kind, start: at}
	return s
}

// record encodes d, ended, with the attributes extra after its own, into
// the pending request, or drops it when the queue is full.
func (t *otlpTracer) record(d *spanData, extra []attribute.KeyValue) {
	p := t.p
	p.mu.Lock()
	if p.stopped || p.pending >= p.maxQueue || p.pendingBytes >= p.maxBytes {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	n := len(t.w.b)
	t.w.spanData(d, extra)
	p.pendingBytes += len(t.w.b) - n
	p.pending++
	full := p.pending == p.maxBatch
	p.mu.Unlock()
	if full {
		select {
		case p.full <- struct{}{}:
		default:
		}
	}
}

// spanData is what a span records.
type spanData struct {
	sc, parent   trace.SpanContext
	name, suffix string // the name is name, or "name suffix"
	kind         trace.SpanKind
	start, end   time.Time
	attrs        []attribute.KeyValue
	droppedAttrs int
	droppedEvents,
	droppedLinks int
	code codes.Code
	desc string
}

// setStatus sets the status as the SDK does: Ok is final, a description
// only with Error.
func (d *spanData) setStatus(code codes.Code, desc string) {
	if d.code > code {
		return
	}
	d.code, d.desc = code, ""
	if code == codes.Error {
		d.desc = desc
	}
}

// spanData encodes d as a ScopeSpans.spans field: the fields wire.span
// writes for an SDK span.
func (w *wire) spanData(d *spanData, extra []attribute.KeyValue) {
	sp := w.open(2)
	tid, sid := d.sc.TraceID(), d.sc.SpanID()
	w.bytes(1, tid[:])
	w.bytes(2, sid[:])
	if ts := d.sc.TraceState(); ts.Len() > 0 {
		w.str(3, ts.String())
	}
	if psid := d.parent.SpanID(); psid.IsValid() {
		w.bytes(4, psid[:])
	}
	if d.suffix == "" {
		w.str(5, d.name)
	} else {
		w.tag(5, protowire.BytesType)
		w.b = appendVarint(w.b, uint64(len(d.name)+1+len(d.suffix)))
		w.b = append(append(append(w.b, d.name...), ' '), d.suffix...)
	}
	w.varint(6, uint64(spanKind(d.kind)))
	w.fixed64(7, unixNano(d.start.UnixNano()))
	w.fixed64(8, unixNano(d.end.UnixNano()))
	dropped := d.droppedAttrs
	for _, kv := range d.attrs {
		w.keyValue(9, kv)
	}
	for i, kv := range extra {
		if len(d.attrs)+i >= maxSpanAttributes {
			dropped += len(extra) - i
			break
		}
		w.keyValue(9, kv)
	}
	w.varint(10, clampUint32(dropped))
	w.varint(12, clampUint32(d.droppedEvents))
	w.varint(14, clampUint32(d.droppedLinks))
	st := w.open(15)
	w.str(2, d.desc)
	var code uint64
	switch d.code {
	case codes.Ok:
		code = 1
	case codes.Error:
		code = 2
	}
	w.varint(3, code)
	w.close(st)
	w.fixed32(16, spanFlags(d.sc.TraceFlags(), d.parent))
	w.close(sp)
}

// otlpSpan is a span of an OTLPProvider. Unsampled spans record nothing.
// It stays valid after End (a context may still carry it); only its
// attribute buffer is pooled.
type otlpSpan struct {
	noop.Span // the API's methods added later do nothing

	t     *otlpTracer
	mu    sync.Mutex
	d     spanData
	buf   *attrBuf
	ended bool
}

var _ trace.Span = (*otlpSpan)(nil)

func (s *otlpSpan) SpanContext() trace.SpanContext { return s.d.sc }

func (s *otlpSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.d.sc.IsSampled()
}

func (s *otlpSpan) SetStatus(code codes.Code, desc string) {
	s.mu.Lock()
	if !s.ended {
		s.d.setStatus(code, desc)
	}
	s.mu.Unlock()
}

func (s *otlpSpan) SetAttributes(kv ...attribute.KeyValue) {
	if len(kv) == 0 || !s.d.sc.IsSampled() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.buf == nil {
		s.buf = attrBufs.Get().(*attrBuf)
		s.d.attrs = s.buf[:0]
	}
	for _, a := range kv {
		if !a.Valid() {
			continue
		}
		if len(s.d.attrs) == maxSpanAttributes {
			s.d.droppedAttrs++
			continue
		}
		s.d.attrs = append(s.d.attrs, a)
	}
}

func (s *otlpSpan) End(opts ...trace.SpanEndOption) {
	end := time.Now()
	if len(opts) > 0 {
		if cfg := trace.NewSpanEndConfig(opts...); !cfg.Timestamp().IsZero() {
			ts := cfg.Timestamp()
			end = ts
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	if s.d.sc.IsSampled() {
		s.d.end = end
		s.t.record(&s.d, nil)
	}
	s.releaseAttrs()
}

// endWith ends s now with the attributes attrs after those set before and,
// when failed is not empty, an error status: End without their copy into
// the span.
func (s *otlpSpan) endWith(attrs []attribute.KeyValue, failed string) {
	end := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	if s.d.sc.IsSampled() {
		if failed != "" {
			s.d.setStatus(codes.Error, failed)
		}
		s.d.end = end
		s.t.record(&s.d, attrs)
	}
	s.releaseAttrs()
}

func (s *otlpSpan) releaseAttrs() {
	if s.buf != nil {
		clear(s.buf[:min(len(s.d.attrs), len(s.buf))])
		attrBufs.Put(s.buf)
		s.buf, s.d.attrs = nil, nil
	}
}

func (s *otlpSpan) RecordError(error, ...trace.EventOption) { s.AddEvent("exception") }

func (s *otlpSpan) AddEvent(string, ...trace.EventOption) {
	s.mu.Lock()
	s.d.droppedEvents++
	s.mu.Unlock()
}

func (s *otlpSpan) AddLink(trace.Link) {
	s.mu.Lock()
	s.d.droppedLinks++
	s.mu.Unlock()
}

func (s *otlpSpan) SetName(name string) {
	s.mu.Lock()
	if !s.ended {
		s.d.name, s.d.suffix = name, ""
	}
	s.mu.Unlock()
}

func (s *otlpSpan) TracerProvider() trace.TracerProvider { return s.t.p }
