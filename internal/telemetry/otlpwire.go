package telemetry

import (
	"math"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// wire encodes spans as an OTLP ExportTraceServiceRequest in protobuf,
// straight from the SDK's read-only spans into one reused buffer: the
// same bytes the OTLP exporter's transform to the generated messages and
// proto.Marshal produce, without a message, an interface or a reflective
// walk per span and attribute. Field numbers are those of
// opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
type wire struct {
	b []byte
	// The batch being encoded by resource, then by scope (reused).
	res []wireResource
}

type wireResource struct {
	res    *resource.Resource
	scopes []wireScope
}

type wireScope struct {
	scope instrumentation.Scope
	spans []sdktrace.ReadOnlySpan
}

// encode returns the request for spans; the bytes are valid until the
// next call.
func (w *wire) encode(spans []sdktrace.ReadOnlySpan) []byte {
	w.b = w.b[:0]
	for _, s := range spans {
		if s != nil {
			w.group(s)
		}
	}
	for i := range w.res {
		r := &w.res[i]
		rs := w.open(1) // ExportTraceServiceRequest.resource_spans
		if r.res != nil {
			m := w.open(1) // ResourceSpans.resource
			for it := r.res.Iter(); it.Next(); {
				w.keyValue(1, it.Attribute()) // Resource.attributes
			}
			w.close(m)
		}
		for j := range r.scopes {
			w.scopeSpans(&r.scopes[j])
		}
		if r.res != nil {
			w.str(3, r.res.SchemaURL()) // ResourceSpans.schema_url
		}
		w.close(rs)
	}
	for i := range w.res {
		for j := range w.res[i].scopes {
			clear(w.res[i].scopes[j].spans)
		}
		w.res[i] = wireResource{scopes: w.res[i].scopes[:0]}
	}
	w.res = w.res[:0]
	return w.b
}

// group files s under its resource and scope.
func (w *wire) group(s sdktrace.ReadOnlySpan) {
	res, scope := s.Resource(), s.InstrumentationScope()
	i := 0
	for i < len(w.res) && !sameResource(w.res[i].res, res) {
		i++
	}
	if i == len(w.res) {
		if i < cap(w.res) {
			w.res = w.res[:i+1]
			w.res[i].res = res
		} else {
			w.res = append(w.res, wireResource{res: res})
		}
	}
	r := &w.res[i]
	j := 0
	for j < len(r.scopes) && r.scopes[j].scope != scope {
		j++
	}
	if j == len(r.scopes) {
		if j < cap(r.scopes) {
			r.scopes = r.scopes[:j+1]
			r.scopes[j].scope = scope
			r.scopes[j].spans = r.scopes[j].spans[:0]
		} else {
			r.scopes = append(r.scopes, wireScope{scope: scope})
		}
	}
	r.scopes[j].spans = append(r.scopes[j].spans, s)
}

func sameResource(a, b *resource.Resource) bool {
	return a == b || (a != nil && b != nil && a.Equivalent() == b.Equivalent())
}

func (w *wire) scopeSpans(g *wireScope) {
	ss := w.open(2) // ResourceSpans.scope_spans
	if g.scope != (instrumentation.Scope{}) {
		sc := w.open(1) // ScopeSpans.scope
		w.str(1, g.scope.Name)
		w.str(2, g.scope.Version)
		for it := g.scope.Attributes.Iter(); it.Next(); {
			w.keyValue(3, it.Attribute())
		}
		w.close(sc)
	}
	for _, s := range g.spans {
		w.span(s)
	}
	w.str(3, g.scope.SchemaURL) // ScopeSpans.schema_url
	w.close(ss)
}

func (w *wire) span(s sdktrace.ReadOnlySpan) {
	sp := w.open(2) // ScopeSpans.spans
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	w.bytes(1, tid[:])
	w.bytes(2, sid[:])
	w.str(3, sc.TraceState().String())
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		w.bytes(4, psid[:])
	}
	w.str(5, s.Name())
	w.varint(6, uint64(spanKind(s.SpanKind())))
	w.fixed64(7, unixNano(s.StartTime().UnixNano()))
	w.fixed64(8, unixNano(s.EndTime().UnixNano()))
	for _, kv := range s.Attributes() {
		w.keyValue(9, kv)
	}
	w.varint(10, clampUint32(s.DroppedAttributes()))
	for _, e := range s.Events() {
		ev := w.open(11)
		w.fixed64(1, unixNano(e.Time.UnixNano()))
		w.str(2, e.Name)
		for _, kv := range e.Attributes {
			w.keyValue(3, kv)
		}
		w.varint(4, clampUint32(e.DroppedAttributeCount))
		w.close(ev)
	}
	w.varint(12, clampUint32(s.DroppedEvents()))
	for _, l := range s.Links() {
		lk := w.open(13)
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		w.bytes(1, ltid[:])
		w.bytes(2, lsid[:])
		for _, kv := range l.Attributes {
			w.keyValue(4, kv)
		}
		w.varint(5, clampUint32(l.DroppedAttributeCount))
		w.fixed32(6, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
		w.close(lk)
	}
	w.varint(14, clampUint32(s.DroppedLinks()))
	// Status is always present (an empty message for unset).
	st := s.Status()
	stm := w.open(15)
	w.str(2, st.Description)
	var code uint64 // STATUS_CODE_UNSET
	switch st.Code {
	case codes.Ok:
		code = 1
	case codes.Error:
		code = 2
	}
	w.varint(3, code)
	w.close(stm)
	w.fixed32(16, spanFlags(sc.TraceFlags(), parent))
	w.close(sp)
}

// spanKind is the OTLP Span.SpanKind of k (the same numbers, 0 for
// unknown ones).
func spanKind(k trace.SpanKind) trace.SpanKind {
	if k < trace.SpanKindInternal || k > trace.SpanKindConsumer {
		return trace.SpanKindUnspecified
	}
	return k
}

// spanFlags are OTLP's Span.flags: the W3C trace flags, and whether the
// parent is remote (always telling that it is known).
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	const hasIsRemote, isRemote = 0x100, 0x200
	f := uint32(tf) | hasIsRemote
	if parent.IsRemote() {
		f |= isRemote
	}
	return f
}

func unixNano(n int64) uint64 { return uint64(max(0, n)) }

func clampUint32(v int) uint64 {
	return uint64(min(max(v, 0), math.MaxUint32))
}

// keyValue encodes a common.v1.KeyValue as field num. A scalar value,
// whose size is known up front, is written in one go on a local slice
// (one store of w.b, not one per field); the others nest through open and
// close.
func (w *wire) keyValue(num protowire.Number, kv attribute.KeyValue) {
	var inner int // the AnyValue's size: one byte of tag and the value
	v := kv.Value
	typ := v.Type()
	switch typ {
	case attribute.STRING:
		n := len(v.AsString())
		inner = 1 + protowire.SizeVarint(uint64(n)) + n
	case attribute.INT64:
		inner = 1 + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		inner = 1 + 8
	case attribute.BOOL:
		inner = 1 + 1
	default:
		if enc, ok := encodedFinishReasons[kv]; ok {
			w.tag(num, protowire.BytesType)
			w.b = appendBytes(w.b, enc)
			return
		}
		w.nestedKeyValue(num, kv)
		return
	}
	key := string(kv.Key)
	size := 1 + protowire.SizeVarint(uint64(inner)) + inner
	if key != "" {
		size += 1 + protowire.SizeVarint(uint64(len(key))) + len(key)
	}
	b := slices.Grow(w.b, 2+protowire.SizeVarint(uint64(size))+size)
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(size))
	if key != "" {
		b = append(b, 1<<3|byte(protowire.BytesType)) // KeyValue.key
		b = append(appendVarint(b, uint64(len(key))), key...)
	}
	b = append(b, 2<<3|byte(protowire.BytesType)) // KeyValue.value
	b = appendVarint(b, uint64(inner))
	switch typ { // AnyValue's field
	case attribute.STRING:
		s := v.AsString()
		b = append(b, 1<<3|byte(protowire.BytesType))
		b = append(appendVarint(b, uint64(len(s))), s...)
	case attribute.BOOL:
		b = append(b, 2<<3|byte(protowire.VarintType), byte(protowire.EncodeBool(v.AsBool())))
	case attribute.INT64:
		b = append(b, 3<<3|byte(protowire.VarintType))
		b = appendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = append(b, 4<<3|byte(protowire.Fixed64Type))
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	}
	w.b = b
}

// encodedFinishReasons are the KeyValue messages of the common single
// finish reasons (commonFinishReasons), encoded once: a string slice
// value copies its slice to be read.
var encodedFinishReasons = map[attribute.KeyValue][]byte{}

func init() { // not a var initializer: the encoder refers to the map
	for _, kv := range commonFinishReasons {
		var w wire
		w.nestedKeyValue(1, kv)
		_, _, n := protowire.ConsumeTag(w.b)
		encodedFinishReasons[kv], _ = protowire.ConsumeBytes(w.b[n:])
	}
}

func (w *wire) nestedKeyValue(num protowire.Number, kv attribute.KeyValue) {
	m := w.open(num)
	w.str(1, string(kv.Key))
	v := w.open(2)
	w.anyValue(kv.Value)
	w.close(v)
	w.close(m)
}

// anyValue encodes the fields of a common.v1.AnyValue.
func (w *wire) anyValue(v attribute.Value) {
	switch v.Type() {
	case attribute.BOOL:
		w.tag(2, protowire.VarintType)
		w.b = appendVarint(w.b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		w.tag(3, protowire.VarintType)
		w.b = appendVarint(w.b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		w.tag(4, protowire.Fixed64Type)
		w.b = protowire.AppendFixed64(w.b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		w.tag(1, protowire.BytesType)
		w.b = appendString(w.b, v.AsString())
	case attribute.BYTESLICE:
		w.tag(7, protowire.BytesType)
		w.b = appendBytes(w.b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		a := w.open(5)
		for _, x := range v.AsBoolSlice() {
			w.anyValueIn(attribute.BoolValue(x))
		}
		w.close(a)
	case attribute.INT64SLICE:
		a := w.open(5)
		for _, x := range v.AsInt64Slice() {
			w.anyValueIn(attribute.Int64Value(x))
		}
		w.close(a)
	case attribute.FLOAT64SLICE:
		a := w.open(5)
		for _, x := range v.AsFloat64Slice() {
			w.anyValueIn(attribute.Float64Value(x))
		}
		w.close(a)
	case attribute.STRINGSLICE:
		a := w.open(5)
		for _, x := range v.AsStringSlice() {
			w.anyValueIn(attribute.StringValue(x))
		}
		w.close(a)
	case attribute.SLICE:
		a := w.open(5)
		for _, x := range v.AsSlice() {
			w.anyValueIn(x)
		}
		w.close(a)
	case attribute.MAP:
		l := w.open(6) // KeyValueList
		for _, kv := range v.AsMap() {
			w.keyValue(1, kv)
		}
		w.close(l)
	case attribute.EMPTY:
	default:
		w.tag(1, protowire.BytesType)
		w.b = appendString(w.b, "INVALID")
	}
}

// anyValueIn encodes v as an ArrayValue's element (field 1).
func (w *wire) anyValueIn(v attribute.Value) {
	e := w.open(1)
	w.anyValue(v)
	w.close(e)
}

func (w *wire) tag(num protowire.Number, typ protowire.Type) {
	w.b = appendTag(w.b, num, typ)
}

// open begins the embedded message num; close(open(num)) ends it. The
// length is written as one byte and widened when the message turns out
// longer.
func (w *wire) open(num protowire.Number) int {
	w.b = appendTag(w.b, num, protowire.BytesType)
	w.b = append(w.b, 0)
	return len(w.b)
}

func (w *wire) close(start int) {
	n := len(w.b) - start
	if sz := protowire.SizeVarint(uint64(n)); sz > 1 {
		w.b = append(w.b, make([]byte, sz-1)...)
		copy(w.b[start+sz-1:], w.b[start:start+n])
	}
	appendVarint(w.b[:start-1], uint64(n))
}

// The scalar fields, omitted when zero (proto3).

func (w *wire) str(num protowire.Number, s string) {
	if s != "" {
		w.tag(num, protowire.BytesType)
		w.b = appendString(w.b, s)
	}
}

func (w *wire) bytes(num protowire.Number, b []byte) {
	if len(b) > 0 {
		w.tag(num, protowire.BytesType)
		w.b = appendBytes(w.b, b)
	}
}

func (w *wire) varint(num protowire.Number, v uint64) {
	if v != 0 {
		w.tag(num, protowire.VarintType)
		w.b = appendVarint(w.b, v)
	}
}

func (w *wire) fixed64(num protowire.Number, v uint64) {
	if v != 0 {
		w.tag(num, protowire.Fixed64Type)
		w.b = protowire.AppendFixed64(w.b, v)
	}
}

func (w *wire) fixed32(num protowire.Number, v uint32) {
	if v != 0 {
		w.tag(num, protowire.Fixed32Type)
		w.b = protowire.AppendFixed32(w.b, v)
	}
}

// The appends of protowire with the one-byte cases inlined: most tags,
// lengths and counts here are below 128.

func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(typ&7))
}

func appendString(b []byte, s string) []byte {
	return append(appendVarint(b, uint64(len(s))), s...)
}

func appendBytes(b []byte, v []byte) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}
