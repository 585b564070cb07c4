package provider

import (
	"context"
	"encoding/hex"
	"net/http"
	"unsafe"

	"go.opentelemetry.io/otel/trace"
)

// traceContext is the W3C trace context of the span ctx carries, as
// header values (what propagation.TraceContext injects: traceparent with
// the sampled and random flags, tracestate when set); nil when ctx
// carries no span. The traceparent value and its slice are one
// allocation.
func traceContext(ctx context.Context) (traceparent, tracestate []string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil, nil
	}
	v := new(traceparentValue)
	b := v.b[:]
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(b, "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	v.s[0] = unsafe.String(&v.b[0], len(v.b))
	if ts := sc.TraceState(); ts.Len() > 0 {
		tracestate = []string{ts.String()}
	}
	return v.s[:], tracestate
}

// traceparentValue is a traceparent header value and the slice holding it.
type traceparentValue struct {
	s [1]string
	b [55]byte // 00-<trace id>-<span id>-<flags>
}

// requestHeader is the header of an upstream request: the template's,
// the client's protocol headers (extra) and the trace context. The values
// are shared, not copied: net/http only reads them (HTTP.Post copies the
// header when a cookie jar would add to it).
func requestHeader(tmpl, extra http.Header, traceparent, tracestate []string) http.Header {
	h := make(http.Header, len(tmpl)+len(extra)+2)
	for k, v := range tmpl {
		h[k] = v
	}
	for k, v := range extra {
		h[k] = v
	}
	if traceparent != nil {
		h["Traceparent"] = traceparent
		if tracestate != nil {
			h["Tracestate"] = tracestate
		}
	}
	return h
}
