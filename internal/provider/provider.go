// Package provider defines how the gateway talks to upstream model providers.
//
// One [Transport] (transport.go) carries every provider: its configuration
// (base URL checks, where the key goes, extra headers, timeouts), the
// pooled client ([HTTP], http.go), request templates, the content-type
// check, the bounded body and its JSON check, error answers, and the event
// stream ([SSEStream], stream.go: the reader, the queue of translated
// events behind [Pender], the end of the body). What differs between
// providers is a [Translator] (translator.go), one package each
// (openaicompat, anthropic, gemini, cohere), which only maps: an OpenAI
// Call to the native request, the native answer, stream event and error
// body back to OpenAI's shapes. The gateway pipeline only ever sees
// OpenAI's format. The registry package lists the provider types.
package provider

import (
	"context"
	"net/http"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Call is one attempt against one provider.
type Call struct {
	// Req is the client's request (OpenAI format), read-only.
	Req *openai.Request
	// Model is the upstream model (or Azure deployment) to ask for.
	Model string
	// MaxTokens is the route's default output cap for providers that require
	// one (Anthropic); 0 means the provider's own default.
	MaxTokens int64
	// Header holds the client's protocol headers (OpenAI-Beta) when the
	// provider speaks the client's format (see Speaker): sent as they are.
	Header http.Header
}

// Provider is one configured upstream.
type Provider interface {
	// Name is the provider's configured name.
	Name() string
	// Do performs the call. A non-nil error is an *Error (or the context's
	// error when the client went away). On success exactly one of
	// Response.Body or Response.Stream is set, in OpenAI's format.
	Do(ctx context.Context, call *Call) (*Response, error)
}

// Response is a successful upstream answer, in OpenAI's format unless the
// provider answered a NativeCall.
type Response struct {
	// Format is the wire format of Body or Stream.
	Format Format
	// Body is the complete JSON body of a non-stream answer.
	Body []byte
	// Usage is Body's usage when the provider read it (native answers);
	// otherwise the gateway reads it from the OpenAI body.
	Usage openai.Usage
	// Stream yields the events of a streamed answer.
	Stream Stream
}

// UsageReporter is implemented by streams that account their own usage
// (native streams, translators): the gateway reads Usage when the stream
// ends instead of reading it from the events.
type UsageReporter interface {
	Usage() openai.Usage
}

// NativeCall is an attempt that sends the client's own request in a wire
// format the provider speaks, untranslated but for the model.
type NativeCall struct {
	Format Format
	Body   []byte
	Model  string
	Stream bool
	// Header holds the client's protocol headers (anthropic-beta,
	// anthropic-version), sent as they are.
	Header http.Header
}

// Speaker is implemented by providers that speak a client wire format
// natively (OpenAI-compatible servers speak OpenAI's, Anthropic its
// Messages API): the client's protocol headers are theirs to honour. A
// provider that speaks no client format translates every request.
type Speaker interface {
	Speaks(f Format) bool
}

// NativeProvider is implemented by providers that speak a client wire
// format other than OpenAI's (Anthropic's Messages API): a request in that
// format passes to them untranslated (the identity translation);
// Response.Format is then that format.
type NativeProvider interface {
	Speaker
	DoNative(ctx context.Context, call *NativeCall) (*Response, error)
}

// UnsupportedDropper is implemented by providers configured to drop the
// parameters they cannot honour (drop_unsupported_params) instead of
// refusing them.
type UnsupportedDropper interface {
	DropsUnsupported() bool
}

// Stream yields OpenAI-shaped SSE events. Next returns io.EOF after the
// stream's clean end (OpenAI's "[DONE]" is consumed, not returned) and an
// error when the stream broke; an *Error for an error the upstream reported
// in the stream. Event slices are valid until the next call. Close releases
// the upstream connection and may be called at any time.
type Stream interface {
	Next() (sse.Event, error)
	Close() error
}

// MessagesProvider is implemented by providers that speak Anthropic's
// Messages API natively: requests that arrive at /v1/messages pass through
// to them untranslated. Response.Body is then an Anthropic message and
// Response.Stream yields Anthropic's events as sent (io.EOF after
// message_stop).
type MessagesProvider interface {
	Messages(ctx context.Context, body []byte, model string, stream bool) (*Response, error)
}

// Pender is implemented by streams that can tell whether their next event is
// already buffered (Next will not block). The gateway then writes it before
// flushing, so a burst of upstream events costs one flush, while an event
// that is not followed at once is flushed at once.
type Pender interface {
	Pending() bool
}

// UsageMarker is implemented by streams that know which of their events
// are OpenAI's usage-only chunk (a cache replay, whose usage is its
// UsageReporter's): the gateway takes their word instead of scanning every
// event for usage.
type UsageMarker interface {
	// UsageOnly reports whether the event returned last (the reply's
	// First before any call to Next) is a usage-only chunk.
	UsageOnly() bool
}
