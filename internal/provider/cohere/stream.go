package cohere

import (
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// decoder translates Cohere's chat event stream
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
type decoder struct {
	usage    openai.Usage     // as reported in the usage chunk, once it is out
	q        *provider.Events // the queue of the event being decoded
	model    string
	created  int64
	fallback string // id when message-start has none

	head []byte // `{"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":[`

	started bool // role chunk queued
	tools   int  // tool calls started
}

// Usage implements provider.UsageReporter: the usage of the usage chunk,
// typed.
func (s *decoder) Usage() openai.Usage { return s.usage }

// newDecoder returns the decoder of one chat stream of model.
func newDecoder(model string, created int64, fallbackID string) *decoder {
	return &decoder{model: model, created: created, fallback: fallbackID, head: make([]byte, 0, 160+len(model))}
}

// Decode implements provider.Decoder; message-end ends the stream.
func (s *decoder) Decode(ev sse.Event, q *provider.Events) (bool, error) {
	s.q = q
	return s.handle(ev)
}

// End implements provider.Decoder: the body ended before message-end.
func (s *decoder) End(*provider.Events) error {
	return protocolError("stream ended before message-end")
}

// handle translates one Cohere event into zero or more pending chunks.
func (s *decoder) handle(ev sse.Event) (bool, error) {
	data := jsonraw.String(ev.Data)
	if data == "" {
		return false, nil // a bare "event:" line, e.g. a keep-alive
	}
	if !jsonraw.ValidString(data) {
		return false, protocolError("event data is not JSON")
	}
	root := gjson.Parse(data)
	if !root.IsObject() {
		return false, protocolError("event data is not an object")
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
			return false, nil
		}
		s.start(gjson.Result{})
		s.open()
		s.q.Buf = append(s.q.Buf, `{"content":`...)
		s.q.Buf = append(s.q.Buf, text...)
		s.q.Buf = append(s.q.Buf, '}')
		s.close(false, "")
	case "tool-call-start":
		tc := root.Get("delta.message.tool_calls")
		s.start(gjson.Result{})
		s.open()
		s.q.Buf = append(s.q.Buf, `{"tool_calls":[{"index":`...)
		s.q.Buf = strconv.AppendInt(s.q.Buf, int64(s.tools), 10)
		s.q.Buf = append(s.q.Buf, `,"id":`...)
		if id := tc.Get("id"); id.Type == gjson.String && id.Str != "" {
			s.q.Buf = append(s.q.Buf, id.Raw...)
		} else {
			s.q.Buf = append(s.q.Buf, `"call_`...)
			s.q.Buf = strconv.AppendInt(s.q.Buf, int64(s.tools), 10)
			s.q.Buf = append(s.q.Buf, '"')
		}
		s.q.Buf = append(s.q.Buf, `,"type":"function","function":{"name":`...)
		s.q.Buf = appendStr(s.q.Buf, tc.Get("function.name"), `""`)
		s.q.Buf = append(s.q.Buf, `,"arguments":`...)
		s.q.Buf = appendStr(s.q.Buf, tc.Get("function.arguments"), `""`)
		s.q.Buf = append(s.q.Buf, `}}]}`...)
		s.close(false, "")
		s.tools++
	case "tool-call-delta":
		if s.tools == 0 {
			return false, protocolError("tool-call-delta before tool-call-start")
		}
		args := jsonraw.Path(data, "delta", "message", "tool_calls", "function", "arguments")
		if len(args) <= 2 || args[0] != '"' {
			return false, nil
		}
		s.open()
		s.q.Buf = append(s.q.Buf, `{"tool_calls":[{"index":`...)
		s.q.Buf = strconv.AppendInt(s.q.Buf, int64(s.tools-1), 10)
		s.q.Buf = append(s.q.Buf, `,"function":{"arguments":`...)
		s.q.Buf = append(s.q.Buf, args...)
		s.q.Buf = append(s.q.Buf, `}}]}`...)
		s.close(false, "")
	case "message-end":
		delta := root.Get("delta")
		finish, perr := finishReason(delta.Get("finish_reason").Str, delta.Get("error").Str)
		if perr != nil {
			return false, perr
		}
		s.start(gjson.Result{})
		s.open()
		s.q.Buf = append(s.q.Buf, `{}`...)
		s.close(true, finish)
		if u := delta.Get("usage"); u.IsObject() {
			mark := len(s.q.Buf)
			s.q.Buf = append(s.q.Buf, s.head...)
			s.q.Buf = append(s.q.Buf, `],"usage":`...)
			var known bool
			if s.q.Buf, known = appendUsage(s.q.Buf, u); known {
				s.q.Buf = append(s.q.Buf, '}')
				s.q.End()
				s.usage = usageOf(u)
			} else {
				s.q.Buf = s.q.Buf[:mark]
			}
		}
		return true, nil
	}
	return false, nil
}

// start queues the role chunk once, building the chunk head from id (or
// the fallback id).
func (s *decoder) start(id gjson.Result) {
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
	s.q.Buf = append(s.q.Buf, `{"role":"assistant","content":""}`...)
	s.close(false, "")
}

// open starts a chunk of choice 0; the delta object follows.
func (s *decoder) open() {
	s.q.Buf = append(s.q.Buf, s.head...)
	s.q.Buf = append(s.q.Buf, `{"index":0,"delta":`...)
}

// close ends a chunk with finish_reason null, or finish when final.
func (s *decoder) close(final bool, finish string) {
	s.q.Buf = append(s.q.Buf, `,"logprobs":null,"finish_reason":`...)
	if final {
		s.q.Buf = append(s.q.Buf, '"')
		s.q.Buf = append(s.q.Buf, finish...)
		s.q.Buf = append(s.q.Buf, '"')
	} else {
		s.q.Buf = append(s.q.Buf, "null"...)
	}
	s.q.Buf = append(s.q.Buf, "}]}"...)
	s.q.End()
}
