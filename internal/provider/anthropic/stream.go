package anthropic

import (
	"io"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// maxBlocks bounds the content block index accepted in a stream.
const maxBlocks = 4096

// decoder translates an Anthropic Messages event stream
// (https://docs.anthropic.com/en/api/messages-streaming) into OpenAI
// chat.completion.chunk events (data only, no event name), implementing
// provider.Decoder:
//
//   - message_start → a chunk with delta {"role":"assistant","content":""};
//     its id ([IDPrefix]+message id), model and the time the stream began
//     are repeated in every chunk; its input usage is remembered;
//   - content_block_start of a text block → nothing (or its text, if any);
//     of a tool_use block → a tool_calls delta {index (0-based among the
//     tool_use blocks), id, type "function", function {name, arguments ""}};
//   - content_block_delta text_delta → delta.content; input_json_delta →
//     tool_calls[{index, function{arguments: partial_json}}] (empty
//     fragments are skipped; a tool block that got no fragment at all gets
//     arguments "{}" at its content_block_stop, so that arguments always
//     parse);
//   - thinking, redacted_thinking and server-tool blocks, ping events and
//     unknown event types are ignored;
//   - message_delta → stop_reason and usage remembered (its counts are
//     cumulative and replace earlier ones);
//   - message_stop → a chunk with an empty delta and the finish_reason
//     ([FinishReason]), then a usage chunk {"choices":[],"usage":{...}}
//     (same accounting as [ResponseToOpenAI]), then io.EOF;
//   - an error event → a *provider.Error of kind KindStatus whose status is
//     the one Anthropic uses for the error type (overloaded_error 529,
//     rate_limit_error 429, api_error 500, invalid_request_error 400...);
//   - a malformed event, an event out of order, or the end of the body
//     before message_stop → a *provider.Error of kind KindProtocol.
//
// Chunks are built in the stream's queue buffer, reused across events, so
// a stream costs no allocation per chunk.
type decoder struct {
	usage   openai.Usage     // as reported in the usage chunk, once it is out
	q       *provider.Events // the queue of the event being decoded
	created int64

	head   []byte  // `{"id":...,"object":...,"created":...,"model":...,"choices":[`
	blocks []block // by Anthropic content block index
	blkArr [8]block
	tools  int // tool_use blocks seen
	state  uint8
	finish string
	u      usage
}

// Stream states.
const (
	stStart uint8 = iota // waiting for message_start
	stMsg                // inside the message
	stDone               // message_stop seen
)

type block struct {
	kind uint8
	args bool // tool block got arguments
	tool int
}

// Block kinds.
const (
	bNone uint8 = iota
	bText
	bTool
	bOther
)

// NewStream reads Anthropic events from body; Close closes closer (which
// may be nil). providerName is used in errors.
func NewStream(body io.Reader, closer io.Closer, providerName string) *provider.SSEStream {
	return provider.NewStream(body, closer, providerName, NewDecoder(time.Now().Unix()))
}

// NewDecoder returns the decoder of one Messages event stream; created is
// the chunks' creation time.
func NewDecoder(created int64) provider.Decoder {
	s := &decoder{created: created}
	s.blocks = s.blkArr[:0]
	return s
}

// Decode implements provider.Decoder.
func (s *decoder) Decode(ev sse.Event, q *provider.Events) (bool, error) {
	s.q = q
	emit, err := s.handle(ev)
	if err != nil {
		return false, err
	}
	if emit {
		q.End()
	}
	if s.state != stDone {
		return false, nil
	}
	s.open()
	q.Buf = append(q.Buf, `{}`...)
	s.closeChunk(s.finish)
	q.End()
	q.Buf = append(q.Buf, s.head...)
	q.Buf = append(q.Buf, `],"usage":`...)
	q.Buf = s.u.appendOpenAI(q.Buf)
	q.Buf = append(q.Buf, '}')
	q.End()
	s.usage = s.u.openAI()
	return true, nil
}

// Usage implements provider.UsageReporter: the usage of the usage chunk,
// typed.
func (s *decoder) Usage() openai.Usage { return s.usage }

// End implements provider.Decoder: the body ended before message_stop.
func (s *decoder) End(*provider.Events) error {
	return provider.Protocol("stream ended before message_stop")
}

// handle processes one upstream event; it reports whether s.q.Buf holds a
// chunk to return.
func (s *decoder) handle(ev sse.Event) (bool, error) {
	data := jsonraw.String(ev.Data)
	if !jsonraw.ValidString(data) {
		return false, provider.Protocol("malformed stream event")
	}
	t := jsonraw.String(ev.Name)
	if raw := jsonraw.Field(data, "type"); jsonraw.IsString(raw) {
		t = raw[1 : len(raw)-1]
	}
	switch t {
	case "message_start":
		if s.state != stStart {
			return false, provider.Protocol("unexpected message_start")
		}
		return s.messageStart(data), nil
	case "error":
		return false, s.streamError(data)
	case "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop":
		if s.state != stMsg {
			return false, provider.Protocol("unexpected " + t + " before message_start")
		}
	default: // ping and event types added later
		return false, nil
	}
	switch t {
	case "message_delta":
		if sr := jsonraw.Path(data, "delta", "stop_reason"); jsonraw.IsString(sr) {
			s.finish = FinishReason(sr[1 : len(sr)-1])
		}
		s.u.read(jsonraw.Field(data, "usage"))
		return false, nil
	case "message_stop":
		if s.finish == "" {
			s.finish = "stop"
		}
		s.state = stDone
		return false, nil
	}
	idx := jsonraw.Field(data, "index")
	n := jsonraw.Int(idx)
	if idx == "" || n < 0 || n >= maxBlocks {
		return false, provider.Protocol("invalid content block index")
	}
	i := int(n)
	switch t {
	case "content_block_start":
		for len(s.blocks) <= i {
			s.blocks = append(s.blocks, block{})
		}
		return s.blockStart(i, jsonraw.Field(data, "content_block")), nil
	case "content_block_delta":
		if i >= len(s.blocks) || s.blocks[i].kind == bNone {
			return false, provider.Protocol("delta for a content block that was not started")
		}
		return s.blockDelta(i, jsonraw.Field(data, "delta")), nil
	}
	// content_block_stop
	if i >= len(s.blocks) || s.blocks[i].kind == bNone {
		return false, provider.Protocol("stop of a content block that was not started")
	}
	if b := &s.blocks[i]; b.kind == bTool && !b.args {
		b.args = true
		s.toolArgs(b.tool, `"{}"`)
		return true, nil
	}
	return false, nil
}

func (s *decoder) messageStart(data string) bool {
	msg := jsonraw.Field(data, "message")
	s.head = append(s.head[:0], `{"id":"`...)
	s.head = append(s.head, IDPrefix...)
	if id := jsonraw.Field(msg, "id"); jsonraw.IsString(id) {
		s.head = append(s.head, id[1:len(id)-1]...)
	}
	s.head = append(s.head, `","object":"chat.completion.chunk","created":`...)
	s.head = strconv.AppendInt(s.head, s.created, 10)
	s.head = append(s.head, `,"model":`...)
	s.head = append(s.head, jsonraw.StringOr(jsonraw.Field(msg, "model"), `""`)...)
	s.head = append(s.head, `,"choices":[`...)
	s.u.read(jsonraw.Field(msg, "usage"))
	s.state = stMsg
	s.open()
	s.q.Buf = append(s.q.Buf, `{"role":"assistant","content":""}`...)
	s.closeChunk("")
	return true
}

func (s *decoder) blockStart(i int, cb string) bool {
	switch jsonraw.Field(cb, "type") {
	case `"text"`:
		s.blocks[i] = block{kind: bText}
		if text := jsonraw.Field(cb, "text"); !jsonraw.IsEmptyString(text) {
			s.content(text)
			return true
		}
		return false
	case `"tool_use"`:
		b := block{kind: bTool, tool: s.tools}
		s.tools++
		s.open()
		s.q.Buf = append(s.q.Buf, `{"tool_calls":[{"index":`...)
		s.q.Buf = strconv.AppendInt(s.q.Buf, int64(b.tool), 10)
		s.q.Buf = append(s.q.Buf, `,"id":`...)
		s.q.Buf = append(s.q.Buf, jsonraw.StringOr(jsonraw.Field(cb, "id"), `""`)...)
		s.q.Buf = append(s.q.Buf, `,"type":"function","function":{"name":`...)
		s.q.Buf = append(s.q.Buf, jsonraw.StringOr(jsonraw.Field(cb, "name"), `""`)...)
		s.q.Buf = append(s.q.Buf, `,"arguments":`...)
		if in := jsonraw.Field(cb, "input"); len(in) > 0 && in[0] == '{' && !emptyObject(in) {
			// A block announced with its whole input (no deltas follow).
			s.q.Buf = openai.AppendString(s.q.Buf, in)
			b.args = true
		} else {
			s.q.Buf = append(s.q.Buf, `""`...)
		}
		s.q.Buf = append(s.q.Buf, `}}]}`...)
		s.closeChunk("")
		s.blocks[i] = b
		return true
	}
	s.blocks[i] = block{kind: bOther}
	return false
}

func (s *decoder) blockDelta(i int, d string) bool {
	b := &s.blocks[i]
	switch jsonraw.Field(d, "type") {
	case `"text_delta"`:
		if text := jsonraw.Field(d, "text"); b.kind == bText && !jsonraw.IsEmptyString(text) {
			s.content(text)
			return true
		}
	case `"input_json_delta"`:
		if pj := jsonraw.Field(d, "partial_json"); b.kind == bTool && !jsonraw.IsEmptyString(pj) {
			b.args = true
			s.toolArgs(b.tool, pj)
			return true
		}
	}
	return false
}

// content builds a content chunk; text is a raw JSON string literal.
func (s *decoder) content(text string) {
	s.open()
	s.q.Buf = append(s.q.Buf, `{"content":`...)
	s.q.Buf = append(s.q.Buf, text...)
	s.q.Buf = append(s.q.Buf, '}')
	s.closeChunk("")
}

// toolArgs builds an arguments fragment chunk; args is a raw JSON string
// literal.
func (s *decoder) toolArgs(tool int, args string) {
	s.open()
	s.q.Buf = append(s.q.Buf, `{"tool_calls":[{"index":`...)
	s.q.Buf = strconv.AppendInt(s.q.Buf, int64(tool), 10)
	s.q.Buf = append(s.q.Buf, `,"function":{"arguments":`...)
	s.q.Buf = append(s.q.Buf, args...)
	s.q.Buf = append(s.q.Buf, `}}]}`...)
	s.closeChunk("")
}

// open starts a chunk, up to its delta's value.
func (s *decoder) open() {
	s.q.Buf = append(s.q.Buf, s.head...)
	s.q.Buf = append(s.q.Buf, `{"index":0,"delta":`...)
}

// closeChunk ends a chunk with finish_reason (null when empty).
func (s *decoder) closeChunk(finish string) {
	s.q.Buf = append(s.q.Buf, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		s.q.Buf = append(s.q.Buf, "null"...)
	} else {
		s.q.Buf = append(s.q.Buf, '"')
		s.q.Buf = append(s.q.Buf, finish...)
		s.q.Buf = append(s.q.Buf, '"')
	}
	s.q.Buf = append(s.q.Buf, `}]}`...)
}

// streamError turns an error event into a *provider.Error.
func (s *decoder) streamError(data string) error {
	e := gjson.Get(data, "error")
	typ := e.Get("type").Str
	pe := &provider.Error{Kind: provider.KindStatus, Status: errorTypeStatus(typ), Message: provider.Truncate(e.Get("message").Str)}
	if typ != "" {
		pe.Type, pe.Code = ErrorTypeToOpenAI(typ)
	}
	return pe
}

// read takes the counts present in a raw usage object.
func (u *usage) read(obj string) {
	if v := jsonraw.Field(obj, "input_tokens"); v != "" {
		u.input = jsonraw.Int(v)
	}
	if v := jsonraw.Field(obj, "output_tokens"); v != "" {
		u.output = jsonraw.Int(v)
	}
	if v := jsonraw.Field(obj, "cache_read_input_tokens"); v != "" {
		u.cacheRead = jsonraw.Int(v)
	}
	if v := jsonraw.Field(obj, "cache_creation_input_tokens"); v != "" {
		u.cacheCreation = jsonraw.Int(v)
	}
}

// emptyObject reports whether raw is an object with no member.
func emptyObject(raw string) bool {
	i := jsonraw.SkipSpace(raw, 1)
	return i < len(raw) && raw[i] == '}'
}
