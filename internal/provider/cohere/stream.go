package cohere

import (
	"errors"
	"io"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// errClosed is returned by Next after Close.
var errClosed = errors.New("cohere: stream closed")

// stream translates Cohere's chat event stream
// (https://docs.cohere.com/reference/chat-stream) into OpenAI
// chat.completion.chunk events. Each Cohere event is "event: <type>" plus
// "data: {"type": <type>, ...}" (the type is read from the data when the
// event line is missing):
//
//	message-start   → role chunk {"role":"assistant","content":""}; its id
//	                  names every chunk
//	content-start,  → {"content": delta.message.content.text} (only text:
//	content-delta     thinking content is left out)
//	tool-call-start → {"tool_calls":[{"index":i,"id","type":"function",
//	                  "function":{"name","arguments"}}]}, i counting the
//	                  calls from 0
//	tool-call-delta → {"tool_calls":[{"index":i,"function":{"arguments"}}]}
//	message-end     → finish chunk (see finishReason), then a usage chunk
//	                  {"choices":[],"usage":{..}} (see appendUsage), then
//	                  io.EOF without reading further
//
// content-end, tool-plan-delta, tool-call-end, citation-start/-end,
// unknown types and events without data produce nothing. An ERROR or TIMEOUT finish is returned as
// a *provider.Error; a stream ending before message-end, or an event whose
// data is not a JSON object, as a KindProtocol error.
//
// Chunks are built in a reused buffer and strings are copied in their raw
// JSON form, so a warmed-up stream allocates nothing per chunk.
type stream struct {
	rd       *sse.Reader
	closer   func() error
	provider string
	model    string
	created  int64
	fallback string // id when message-start has none

	head  []byte // `{"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":[`
	buf   []byte // pending chunks
	marks []int  // end offset of each pending chunk in buf
	next  int    // next pending chunk

	started bool // role chunk queued
	sent    bool // an event was returned
	tools   int  // tool calls started
	done    bool // message-end translated
	err     error
}

// newStream reads Cohere events from r; closer releases the upstream.
func newStream(r io.Reader, closer func() error, providerName, model string, created int64, fallbackID string) *stream {
	rd := provider.GetSSEReader(r)
	return &stream{rd: rd, closer: closer, provider: providerName, model: model, created: created, fallback: fallbackID,
		head: make([]byte, 0, 160+len(model)), buf: make([]byte, 0, 1024), marks: make([]int, 0, 4)}
}

// Next implements provider.Stream.
func (s *stream) Next() (sse.Event, error) {
	for {
		if s.next < len(s.marks) {
			from := 0
			if s.next > 0 {
				from = s.marks[s.next-1]
			}
			ev := sse.Event{Data: s.buf[from:s.marks[s.next]:s.marks[s.next]]}
			s.next++
			s.sent = true
			return ev, nil
		}
		s.buf, s.marks, s.next = s.buf[:0], s.marks[:0], 0
		if s.err != nil {
			if pe, ok := s.err.(*provider.Error); ok {
				pe.Provider, pe.StreamStarted = s.provider, s.sent
			}
			return sse.Event{}, s.err
		}
		if s.done {
			return sse.Event{}, io.EOF
		}
		if s.rd == nil {
			return sse.Event{}, errClosed
		}
		ev, err := s.rd.Next()
		switch {
		case err == nil:
			s.err = s.handle(ev)
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			s.err = protocolError("stream ended before message-end")
		case err == sse.ErrTooLarge:
			s.err = protocolError("stream event too large")
		default:
			s.err = err // *provider.Error from the body, or the context's error
		}
	}
}

// Close implements provider.Stream.
func (s *stream) Close() error {
	if s.rd != nil {
		provider.PutSSEReader(s.rd)
		s.rd = nil
	}
	if c := s.closer; c != nil {
		s.closer = nil
		return c()
	}
	return nil
}

// handle translates one Cohere event into zero or more pending chunks.
func (s *stream) handle(ev sse.Event) error {
	data := jsonraw.String(ev.Data)
	if data == "" {
		return nil // a bare "event:" line, e.g. a keep-alive
	}
	if !jsonraw.ValidString(data) {
		return protocolError("event data is not JSON")
	}
	root := gjson.Parse(data)
	if !root.IsObject() {
		return protocolError("event data is not an object")
	}
	typ := jsonraw.String(ev.Name)
	if typ == "" {
		typ = root.Get("type").Str
	}
	switch typ {
	case "message-start":
		s.start(root.Get("id"))
	case "content-start", "content-delta":
		text := jsonraw.Path(data, "delta", "message", "content", "text")
		if len(text) <= 2 || text[0] != '"' { // no text, or ""
			return nil
		}
		s.start(gjson.Result{})
		s.open()
		s.buf = append(s.buf, `{"content":`...)
		s.buf = append(s.buf, text...)
		s.buf = append(s.buf, '}')
		s.close(false, "")
	case "tool-call-start":
		tc := root.Get("delta.message.tool_calls")
		s.start(gjson.Result{})
		s.open()
		s.buf = append(s.buf, `{"tool_calls":[{"index":`...)
		s.buf = strconv.AppendInt(s.buf, int64(s.tools), 10)
		s.buf = append(s.buf, `,"id":`...)
		if id := tc.Get("id"); id.Type == gjson.String && id.Str != "" {
			s.buf = append(s.buf, id.Raw...)
		} else {
			s.buf = append(s.buf, `"call_`...)
			s.buf = strconv.AppendInt(s.buf, int64(s.tools), 10)
			s.buf = append(s.buf, '"')
		}
		s.buf = append(s.buf, `,"type":"function","function":{"name":`...)
		s.buf = appendStr(s.buf, tc.Get("function.name"), `""`)
		s.buf = append(s.buf, `,"arguments":`...)
		s.buf = appendStr(s.buf, tc.Get("function.arguments"), `""`)
		s.buf = append(s.buf, `}}]}`...)
		s.close(false, "")
		s.tools++
	case "tool-call-delta":
		if s.tools == 0 {
			return protocolError("tool-call-delta before tool-call-start")
		}
		args := jsonraw.Path(data, "delta", "message", "tool_calls", "function", "arguments")
		if len(args) <= 2 || args[0] != '"' {
			return nil
		}
		s.open()
		s.buf = append(s.buf, `{"tool_calls":[{"index":`...)
		s.buf = strconv.AppendInt(s.buf, int64(s.tools-1), 10)
		s.buf = append(s.buf, `,"function":{"arguments":`...)
		s.buf = append(s.buf, args...)
		s.buf = append(s.buf, `}}]}`...)
		s.close(false, "")
	case "message-end":
		delta := root.Get("delta")
		finish, perr := finishReason(delta.Get("finish_reason").Str, delta.Get("error").Str)
		if perr != nil {
			return perr
		}
		s.start(gjson.Result{})
		s.open()
		s.buf = append(s.buf, `{}`...)
		s.close(true, finish)
		if u := delta.Get("usage"); u.IsObject() {
			mark := len(s.buf)
			s.buf = append(s.buf, s.head...)
			s.buf = append(s.buf, `],"usage":`...)
			var known bool
			if s.buf, known = appendUsage(s.buf, u); known {
				s.buf = append(s.buf, '}')
				s.marks = append(s.marks, len(s.buf))
			} else {
				s.buf = s.buf[:mark]
			}
		}
		s.done = true
	}
	return nil
}

// start queues the role chunk once, building the chunk head from id (or
// the fallback id).
func (s *stream) start(id gjson.Result) {
	if s.started {
		return
	}
	s.started = true
	s.head = append(s.head[:0], `{"id":`...)
	s.head = appendID(s.head, id, s.fallback)
	s.head = append(s.head, `,"object":"chat.completion.chunk","created":`...)
	s.head = strconv.AppendInt(s.head, s.created, 10)
	s.head = append(s.head, `,"model":`...)
	s.head = openai.AppendString(s.head, s.model)
	s.head = append(s.head, `,"choices":[`...)
	s.open()
	s.buf = append(s.buf, `{"role":"assistant","content":""}`...)
	s.close(false, "")
}

// open starts a chunk of choice 0; the delta object follows.
func (s *stream) open() {
	s.buf = append(s.buf, s.head...)
	s.buf = append(s.buf, `{"index":0,"delta":`...)
}

// close ends a chunk with finish_reason null, or finish when final.
func (s *stream) close(final bool, finish string) {
	s.buf = append(s.buf, `,"logprobs":null,"finish_reason":`...)
	if final {
		s.buf = append(s.buf, '"')
		s.buf = append(s.buf, finish...)
		s.buf = append(s.buf, '"')
	} else {
		s.buf = append(s.buf, "null"...)
	}
	s.buf = append(s.buf, "}]}"...)
	s.marks = append(s.marks, len(s.buf))
}
