package provider

import (
	"net/http"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Translator maps one provider's native API to and from OpenAI's. It only
// maps: the [Transport] sends the request, checks and reads the answer and
// reads the event stream. A translator is built once per configured
// provider and shared by its requests; what one call needs to translate its
// answer lives in the [Answer] that Request returns.
type Translator interface {
	// Endpoint returns the URL that request paths are appended to, from the
	// configured base URL (checked, without trailing slash), and sets in h
	// the headers the API requires on every request (e.g. its version).
	Endpoint(base string, h http.Header) string
	// Request maps call to its native request. An error is an *Error (the
	// transport names the provider in it) or any error for a request that
	// cannot be translated.
	Request(call *Call) (Request, error)
	// ParseError reads the provider's error body of a failed answer
	// (status 0 for an error reported inside a stream).
	ParseError(status int, body []byte) *Error
}

// Request is one native request.
type Request struct {
	// Path is appended to the endpoint after a "/"; it may carry a query.
	Path string
	// Body is the JSON request body.
	Body []byte
	// Stream is set when the answer is an event stream.
	Stream bool
	// Answer translates the answer; nil passes an OpenAI answer through
	// (see [OpenAIEvents] for its stream).
	Answer Answer
}

// Answer translates the answer to one call.
type Answer interface {
	// Body maps a complete native JSON answer (checked to be valid JSON)
	// to OpenAI's. An error is an *Error, or any error for an answer that
	// cannot be translated.
	Body(native []byte) ([]byte, error)
	// Decoder returns the decoder of the native event stream.
	Decoder() Decoder
}

// Decoder translates a native event stream into OpenAI's events, one
// upstream event at a time. The [SSEStream] reading it owns the upstream,
// the queue of translated events and the errors' provider name and
// StreamStarted flag.
type Decoder interface {
	// Decode translates one upstream event into zero or more events queued
	// in q, or passes it on as it is with q.Pass. done ends the stream after
	// the queued events (nothing more is read). A failed event queues
	// nothing: what Decode queued before returning the error is dropped.
	Decode(ev sse.Event, q *Events) (done bool, err error)
	// End is called at the end of the upstream body: it queues the last
	// events of a complete stream, or returns the error of a cut one.
	End(q *Events) error
}

// Events is the queue of translated events of one upstream event. Build an
// event by appending to Buf, then End it. Queued events' data stay valid
// until the stream's next call to Next.
type Events struct {
	// Buf holds the queued events' data, back to back.
	Buf    []byte
	ends   []int // end offset in Buf of each queued event
	next   int   // index in ends of the next event to return
	pass   sse.Event
	has    bool // pass is queued
	passed bool // pop returned pass last
}

// grow sizes an empty queue for translated events: a typical chunk, and a
// few of them, fit without growing.
func (q *Events) grow() {
	if q.Buf == nil {
		q.Buf, q.ends = make([]byte, 0, 1024), make([]int, 0, 4)
	}
}

// End queues the event built in Buf since the previous End.
func (q *Events) End() { q.ends = append(q.ends, len(q.Buf)) }

// Pass queues an upstream event as it is, without a copy.
func (q *Events) Pass(ev sse.Event) { q.pass, q.has = ev, true }

// Len is the number of events queued and not yet returned.
func (q *Events) Len() int {
	n := len(q.ends) - q.next
	if q.has {
		n++
	}
	return n
}

// pop returns the next queued event.
func (q *Events) pop() (sse.Event, bool) {
	if q.next < len(q.ends) {
		start := 0
		if q.next > 0 {
			start = q.ends[q.next-1]
		}
		end := q.ends[q.next]
		q.next++
		q.passed = false
		return sse.Event{Data: q.Buf[start:end:end]}, true
	}
	if q.has {
		q.has, q.passed = false, true
		return q.pass, true
	}
	return sse.Event{}, false
}

// reset empties the queue, keeping its buffers.
func (q *Events) reset() {
	q.Buf, q.ends, q.next, q.pass, q.has = q.Buf[:0], q.ends[:0], 0, sse.Event{}, false
}

// Answered returns a translated answer and its error as Answer.Body does:
// a nil *Error is no error.
func Answered(out []byte, err *Error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Protocol is a KindProtocol error: the upstream answered something that
// does not follow its API.
func Protocol(msg string) *Error { return &Error{Kind: KindProtocol, Message: msg} }

// Unsupported is the 400 unsupported_operation error for an operation op
// that a provider's API (api, e.g. "the Anthropic Messages API") does not
// serve; served lists the operations it does.
func Unsupported(op openai.Op, api string, served ...openai.Op) *Error {
	msg := "The operation '" + op.String() + "' is not supported by " + api + ", which serves "
	for i, s := range served {
		if i > 0 {
			msg += " and "
		}
		msg += s.String()
	}
	if len(served) == 1 {
		msg += " only"
	}
	return &Error{Kind: KindStatus, Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "unsupported_operation",
		Message: msg + "."}
}

// Truncate bounds upstream text kept in an *Error to 1 KiB (and an
// ellipsis).
func Truncate(s string) string {
	const max = 1024
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
