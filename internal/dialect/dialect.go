// Package dialect defines how the gateway speaks to its clients. A Dialect
// owns one client wire format (OpenAI's, Anthropic's Messages API): it
// parses a request into the OpenAI view the pipeline routes, limits and
// prices on, and writes errors, answer bodies and stream events back in its
// format, translating answers that came in another format. The pipeline
// never branches on the client's format: it holds a Dialect.
//
// Adding a client format means adding a package here with a Dialect and a
// path for it in the gateway's endpoint table.
package dialect

import (
	"net/http"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Request is a client's request as its dialect read it.
type Request struct {
	// OpenAI is the OpenAI view of the request: what the pipeline routes,
	// limits, prices and sends to providers that translate from OpenAI's
	// format.
	OpenAI *openai.Request
	// Format is the client's wire format.
	Format provider.Format
	// Native is the client's own body when its format is not OpenAI's: a
	// provider speaking that format natively is sent it (model replaced)
	// instead of a translation. nil for OpenAI clients (OpenAI.Body is the
	// client's body).
	Native []byte
	// Header holds the client's protocol headers (OpenAI-Beta;
	// anthropic-beta, anthropic-version): passed to a native target, and
	// refused (or dropped) by a translating one when it cannot honour them.
	Header http.Header
	// Unsupported names the members of the client's request that its
	// OpenAI view cannot carry (Anthropic's top_k, thinking, …): a native
	// target honours them, a translating one refuses the request (or drops
	// them under drop_unsupported_params).
	Unsupported []string
}

// Dialect is one client wire format.
type Dialect interface {
	// Format is the wire format the dialect speaks.
	Format() provider.Format
	// Parse validates the client's body (nesting at most maxDepth, see
	// openai.CheckBody) and reads it into r (the caller's, so that a
	// request costs no allocation of its own); h is the client's request
	// header.
	Parse(r *Request, op openai.Op, body []byte, h http.Header, maxDepth int) *openai.Error
	// WriteError answers e in the dialect's error shape.
	WriteError(w http.ResponseWriter, e *openai.Error)
	// Body renders a non-stream answer that came in format f.
	Body(r *Request, body []byte, f provider.Format) ([]byte, *openai.Error)
	// Stream returns the writer of a streamed answer that comes in format f.
	Stream(r *Request, f provider.Format) StreamWriter
}

// Event is an upstream event on its way to the client.
type Event struct {
	sse.Event
	// UsageOnly marks OpenAI's usage-only chunk (no choices), which the
	// gateway asks for on every Chat and Completions stream; the gateway's
	// usage accounting, which reads every chunk first, sets it. The OpenAI
	// dialect drops the chunk unless the client asked for usage.
	UsageOnly bool
}

// Sink receives the events a StreamWriter writes (name empty for data-only
// events).
type Sink interface {
	Event(name, data []byte)
}

// StreamWriter writes one answer's stream in the client's format.
type StreamWriter interface {
	// Event writes what one upstream event becomes: itself, a translation
	// (zero or more events), or nothing (OpenAI's usage chunk the client
	// did not ask for). An error means the event cannot be rendered: the
	// upstream is broken.
	Event(ev *Event, to Sink) error
	// End writes the end of a complete stream (OpenAI's data: [DONE]).
	End(to Sink)
	// Fail writes the terminal error event of a stream that broke after
	// its first event.
	Fail(e *openai.Error, to Sink)
}
