package telemetry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver: it decodes the protobuf
// requests it gets and keeps their spans, in arrival order.
type collector struct {
	url string

	mu       sync.Mutex
	spans    []*tracepb.Span
	requests int
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var m coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &m)
		}
		if err != nil {
			t.Errorf("decoding the export: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.requests++
		for _, rs := range m.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *collector) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.spans)
}

// stubs are the spans received, as the SDK's in-memory exporter shows
// them (what the tree helpers read).
func (c *collector) stubs() []tracetest.SpanStub {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]tracetest.SpanStub, 0, len(c.spans))
	for _, s := range c.spans {
		out = append(out, stubOf(s))
	}
	return out
}

func stubOf(s *tracepb.Span) tracetest.SpanStub {
	var (
		tid       trace.TraceID
		sid, psid trace.SpanID
	)
	copy(tid[:], s.TraceId)
	copy(sid[:], s.SpanId)
	copy(psid[:], s.ParentSpanId)
	st := tracetest.SpanStub{
		Name:        s.Name,
		SpanKind:    trace.SpanKind(s.Kind),
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(s.Flags & 0xff)}),
	}
	if psid.IsValid() {
		st.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: psid, Remote: s.Flags&0x200 != 0})
	}
	for _, kv := range s.Attributes {
		st.Attributes = append(st.Attributes, attribute.KeyValue{Key: attribute.Key(kv.Key), Value: valueOf(kv.Value)})
	}
	switch s.GetStatus().GetCode() {
	case tracepb.Status_STATUS_CODE_ERROR:
		st.Status = sdktrace.Status{Code: codes.Error, Description: s.Status.Message}
	case tracepb.Status_STATUS_CODE_OK:
		st.Status = sdktrace.Status{Code: codes.Ok}
	}
	return st
}

// valueOf is an OTLP value as an attribute value (the kinds the gateway
// sets: scalars and string arrays).
func valueOf(v *commonpb.AnyValue) attribute.Value {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return attribute.StringValue(x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return attribute.BoolValue(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return attribute.Int64Value(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return attribute.Float64Value(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var ss []string
		for _, e := range x.ArrayValue.Values {
			ss = append(ss, e.GetStringValue())
		}
		return attribute.StringSliceValue(ss)
	}
	return attribute.Value{}
}
