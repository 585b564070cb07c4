package provider

import (
	"bytes"
	"io"
	"net/http"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// SSEStream is every provider's [Stream]: it reads the upstream's event
// stream with a pooled [sse.Reader], hands each event to a [Decoder] and
// returns the events the decoder queued. It owns what every stream shares:
// the queue (so it can tell [Pender] whether an event is ready), the end of
// the body (a clean end is the decoder's to judge, a body cut inside an
// event or an oversized event is a KindProtocol error), and the provider
// name and StreamStarted flag of every *Error it returns.
type SSEStream struct {
	rd       *sse.Reader
	closer   io.Closer
	dec      Decoder
	q        Events
	provider string
	started  bool // an event was returned
	passed   bool // the event returned last was passed on (Events.Pass)
	done     bool // the decoder ended the stream: no more reads
	err      error
}

// Stream reads the exchange's body as an event stream decoded by dec. The
// stream lives in the exchange (no allocation): call it at most once.
func (x *Exchange) Stream(dec Decoder) *SSEStream {
	s := &x.stream
	*s = SSEStream{rd: GetSSEReader(x.Body), closer: x, dec: dec, provider: x.h.Provider}
	return s
}

// NewSSEStream reads an OpenAI event stream from an exchange; needDone is
// set for Chat and Completions, whose streams end with [DONE]. See
// [OpenAIEvents].
func NewSSEStream(x *Exchange, needDone bool) *SSEStream {
	if needDone {
		return x.Stream(chatEvents)
	}
	return x.Stream(responsesEvents)
}

// NewStream reads an event stream from r decoded by dec; Close closes
// closer (which may be nil). providerName names the provider in errors.
func NewStream(r io.Reader, closer io.Closer, providerName string, dec Decoder) *SSEStream {
	s := &SSEStream{rd: GetSSEReader(r), closer: closer, dec: dec, provider: providerName}
	s.q.grow()
	return s
}

// Usage implements UsageReporter when the decoder accounts usage; the zero
// Usage (unknown) otherwise.
func (s *SSEStream) Usage() openai.Usage {
	if u, ok := s.dec.(UsageReporter); ok {
		return u.Usage()
	}
	return openai.Usage{}
}

// Next implements Stream.
func (s *SSEStream) Next() (sse.Event, error) {
	for {
		if ev, ok := s.q.pop(); ok {
			s.started, s.passed = true, s.q.passed
			return ev, nil
		}
		if s.err != nil {
			return sse.Event{}, s.err
		}
		s.q.reset()
		s.read()
	}
}

// read decodes the next upstream event into the queue, or sets s.err.
func (s *SSEStream) read() {
	if s.done || s.rd == nil {
		s.err = io.EOF
		return
	}
	nb, ne := len(s.q.Buf), len(s.q.ends)
	var err error
	ev, rerr := s.rd.Next()
	switch {
	case rerr == nil:
		s.done, err = s.dec.Decode(ev, &s.q)
	case rerr == io.EOF:
		s.done, err = true, s.dec.End(&s.q)
	case rerr == io.ErrUnexpectedEOF:
		err = Protocol("stream ended unexpectedly")
	case rerr == sse.ErrTooLarge:
		err = Protocol("stream event too large")
	default:
		err = rerr // an *Error from the body, or the context's error
	}
	if err != nil {
		// A failed event is not partly delivered.
		s.q.Buf, s.q.ends, s.q.has = s.q.Buf[:nb], s.q.ends[:ne], false
		if pe, ok := err.(*Error); ok {
			pe.Provider, pe.StreamStarted = s.provider, s.started
		}
		s.err = err
	}
}

// Pending implements Pender: it reports whether Next will return without
// waiting on the upstream. Upstream events already buffered are decoded
// ahead until one yields an event, so that one yielding nothing (a ping)
// does not hide a wait. A passed-on event lives in the reader's buffer,
// which decoding the next one would overwrite: after one, a buffered
// upstream event counts as pending.
func (s *SSEStream) Pending() bool {
	for s.q.Len() == 0 {
		switch {
		case s.err != nil || s.done:
			return true
		case s.rd == nil || !s.rd.HasEvent():
			return false
		case s.passed:
			return true
		}
		s.read()
	}
	return true
}

// Close implements Stream. Next returns io.EOF afterwards (or the error
// the stream had ended with).
func (s *SSEStream) Close() error {
	if s.rd != nil {
		PutSSEReader(s.rd)
		s.rd = nil
	}
	s.q.reset()
	if s.err == nil {
		s.err = io.EOF
	}
	if c := s.closer; c != nil {
		s.closer = nil
		return c.Close()
	}
	return nil
}

// OpenAIEvents returns the decoder of OpenAI's own stream for op: events
// pass on untouched; "[DONE]" ends the stream, and Chat and Completions
// streams must end with it (an end without it is a cut stream).
func OpenAIEvents(op openai.Op) Decoder {
	if op == openai.OpResponses {
		return responsesEvents
	}
	return chatEvents
}

var (
	chatEvents      = &openAIEvents{needDone: true}
	responsesEvents = &openAIEvents{}
)

// openAIEvents decodes OpenAI's event stream. Only events of OpenAI's
// protocol pass: each data is one JSON object (anything else means the
// upstream is broken: a protocol error), and Chat and Completions streams
// carry no event names (named events are dropped; an "error" event is the
// upstream's error). An event carrying an "error" object is an *Error.
type openAIEvents struct{ needDone bool }

func (d *openAIEvents) Decode(ev sse.Event, q *Events) (bool, error) {
	if ev.IsDone() {
		return true, nil
	}
	named := len(ev.Name) > 0
	if named && string(ev.Name) == "error" && d.needDone || !named && len(ev.Data) > 10 && bytes.HasPrefix(ev.Data, []byte(`{"error"`)) {
		e := ParseOpenAIError(0, ev.Data)
		e.Kind = KindStatus
		if e.Status == 0 {
			e.Status = http.StatusBadGateway
		}
		return false, e
	}
	if named && d.needDone {
		return false, nil // not an event of Chat's or Completions' protocol
	}
	if !jsonraw.ValidUTF8(ev.Data) || ev.Data[jsonraw.SkipSpace(jsonraw.String(ev.Data), 0)] != '{' {
		return false, Protocol("malformed stream event")
	}
	q.Pass(ev)
	return false, nil
}

func (d *openAIEvents) End(*Events) error {
	if d.needDone {
		return Protocol("stream ended unexpectedly")
	}
	return nil
}
