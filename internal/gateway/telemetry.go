package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Telemetry traces requests (internal/telemetry implements it).
// Config.Telemetry is nil when tracing is off: the pipeline then makes no
// call at all.
type Telemetry interface {
	// Start begins the trace of x, which has passed the request checks
	// and found its route; keyStart and keyEnd are when the gateway key's
	// lookup began and ended, before the body was read. It returns nil
	// when x is not traced. The returned Trace is added to x's taps: its
	// End ends the request's span.
	Start(x *Exchange, keyStart, keyEnd time.Time) Trace
}

// Trace is one request's trace.
type Trace interface {
	Tap
	// Phase begins the span of a step before the attempt loop (the
	// admission, a Stage by its Name) and returns what ends it, with the
	// step's refusal if any.
	Phase(name string) func(*openai.Error)
	// Attempt begins the span of one upstream call to the configured
	// provider for the upstream model and returns ctx carrying it (the
	// call propagates traceparent from it) and what ends it: with the
	// call's error, or nil when the call answered (its span then lasts
	// until the reply ends).
	Attempt(ctx context.Context, provider, model string) (context.Context, func(error))
}

func noPhase(*openai.Error) {}
func noAttempt(error)       {}

// traceNow is the time for a span's timestamps; zero when telemetry is
// off.
func (g *Gateway) traceNow() time.Time {
	if g.cfg.Telemetry == nil {
		return time.Time{}
	}
	return time.Now()
}

// startTrace begins x's trace when telemetry is on.
func (g *Gateway) startTrace(x *Exchange, keyStart, keyEnd time.Time) {
	if g.cfg.Telemetry == nil {
		return
	}
	if t := g.cfg.Telemetry.Start(x, keyStart, keyEnd); t != nil {
		x.AddTap(t)
	}
}

// trace is x's trace among its taps; nil when x is not traced. (Kept
// among the taps so that an untraced Exchange is no larger.)
func (x *Exchange) trace() Trace {
	if x.g.cfg.Telemetry == nil {
		return nil
	}
	for _, t := range x.taps {
		if tr, ok := t.(Trace); ok {
			return tr
		}
	}
	return nil
}

// phase begins the span of a step before the attempt loop.
func (x *Exchange) phase(name string) func(*openai.Error) {
	if t := x.trace(); t != nil {
		return t.Phase(name)
	}
	return noPhase
}

// attemptSpan begins the span of one upstream call.
func (x *Exchange) attemptSpan(ctx context.Context, provider, model string) (context.Context, func(error)) {
	if t := x.trace(); t != nil {
		return t.Attempt(ctx, provider, model)
	}
	return ctx, noAttempt
}

// Request is the client's HTTP request (for its headers: traceparent).
func (x *Exchange) Request() *http.Request { return x.r }
