package gateway

import (
	"context"
	"net/http"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Telemetry traces requests (internal/telemetry implements it).
// Config.Telemetry is nil when tracing is off: the pipeline then makes no
// call at all.
type Telemetry interface {
	// Start begins the trace of x, which has passed the request checks
	// and found its route. It returns nil when x is not traced. The
	// returned Trace is added to x's taps: its End ends the request's
	// span.
	Start(x *Exchange) Trace
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

// startTrace begins x's trace when telemetry is on.
func (g *Gateway) startTrace(x *Exchange) {
	if g.cfg.Telemetry == nil {
		return
	}
	if x.trace = g.cfg.Telemetry.Start(x); x.trace != nil {
		x.AddTap(x.trace)
	}
}

// phase begins the span of a step before the attempt loop.
func (x *Exchange) phase(name string) func(*openai.Error) {
	if x.trace == nil {
		return noPhase
	}
	return x.trace.Phase(name)
}

// attemptSpan begins the span of one upstream call.
func (x *Exchange) attemptSpan(ctx context.Context, provider, model string) (context.Context, func(error)) {
	if x.trace == nil {
		return ctx, noAttempt
	}
	return x.trace.Attempt(ctx, provider, model)
}

// Request is the client's HTTP request (for its headers: traceparent).
func (x *Exchange) Request() *http.Request { return x.r }
