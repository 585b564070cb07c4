package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// AnthropicCacheReadTokens is the cache_read_input_tokens reported by
// POST /v1/messages when a block of the request's "system" carries a
// "cache_control" (a pretend prompt-cache hit). input_tokens is unaffected.
const AnthropicCacheReadTokens = 10

// anthropicMessages answers POST /v1/messages, Anthropic's Messages API
// (https://docs.anthropic.com/en/api/messages), in its wire format:
//
// Non-stream: a message object {"id":"msg_...","type":"message","role":
// "assistant","model","content":[blocks],"stop_reason","stop_sequence":null,
// "usage":{"input_tokens","cache_creation_input_tokens",
// "cache_read_input_tokens","output_tokens"}}.
//
// Stream ("stream": true): "event: <type>\ndata: <json>\n\n" pairs as in
// https://docs.anthropic.com/en/api/messages-streaming — message_start,
// content_block_start, ping, content_block_delta (one per content chunk:
// text_delta, or input_json_delta for tool calls, preceded by an empty
// partial_json as the real API sends), content_block_stop, message_delta
// (stop_reason, output usage) and message_stop. No [DONE].
//
// The request must carry the x-api-key header (else 401
// authentication_error) and anthropic-version (else 400), and "model",
// "max_tokens" and "messages" (else 400), like the real API; these early
// rejections do not consume the behaviour queue. The [Behavior] knobs apply
// as on the OpenAI endpoints; errors use Anthropic's shape
// {"type":"error","error":{"type","message"},"request_id"}
// (https://docs.anthropic.com/en/api/errors), 529 being overloaded_error.
// max_tokens below the answer's length truncates it (stop_reason
// "max_tokens"); ToolCall answers a tool_use block calling the first tool of
// "tools" (input built from its input_schema), stop_reason "tool_use".
//
// Usage: input_tokens is [CountPromptTokens] of the body plus the words of
// "system"; output_tokens the number of content chunks;
// cache_read_input_tokens is [AnthropicCacheReadTokens] when a system block
// has "cache_control", else 0; cache_creation_input_tokens is 0.
func (s *Server) anthropicMessages(x *exchange) {
	if x.r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		x.writeAnthropicError(http.StatusMethodNotAllowed, "Method "+x.r.Method+" not allowed for /v1/messages, use POST")
		return
	}
	if x.r.Header.Get("X-Api-Key") == "" {
		x.writeAnthropicError(http.StatusUnauthorized, "x-api-key header is required")
		return
	}
	if x.r.Header.Get("Anthropic-Version") == "" {
		x.writeAnthropicError(http.StatusBadRequest, "anthropic-version: header is required")
		return
	}
	var extra struct {
		MaxTokens *int            `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
		Messages  json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(x.body, &extra); err != nil || firstByte(x.body) != '{' {
		x.writeAnthropicError(http.StatusBadRequest, "There was an error parsing the body of your request as JSON.")
		return
	}
	if err := json.Unmarshal(x.body, &x.req); err != nil {
		x.writeAnthropicError(http.StatusBadRequest, "Invalid request body: "+err.Error())
		return
	}
	x.model = x.req.Model
	switch {
	case x.model == "":
		x.writeAnthropicError(http.StatusBadRequest, "model: Field required")
		return
	case extra.MaxTokens == nil:
		x.writeAnthropicError(http.StatusBadRequest, "max_tokens: Field required")
		return
	case *extra.MaxTokens < 1:
		x.writeAnthropicError(http.StatusBadRequest, "max_tokens: Input should be greater than or equal to 1")
		return
	case firstByte(extra.Messages) != '[':
		x.writeAnthropicError(http.StatusBadRequest, "messages: Field required")
		return
	}
	if !x.anthropicRateLimit() {
		return
	}
	b, err := s.resolve(x.r.Header, x.model)
	if err != nil {
		x.writeAnthropicError(http.StatusBadRequest, err.Error())
		return
	}
	x.b = b
	if !x.anthropicPreamble() {
		return
	}
	m := anthropicMessage{
		x:     x,
		id:    s.newID("msg_"),
		input: x.s.scalePrompt(x.req.promptTokens() + contentWords(extra.System)),
	}
	if systemCached(extra.System) {
		m.cacheRead = AnthropicCacheReadTokens
	}
	if x.b.ToolCall {
		tc := firstAnthropicToolCall(x.req.Tools)
		m.tool = &tc
		m.toolID = s.newID("toolu_")
		m.ans = answer{pieces: splitEven(tc.args, x.b.Chunks), finish: "tool_use"}
	} else {
		m.ans = x.textAnswer(*extra.MaxTokens)
		if m.ans.finish == "length" {
			m.ans.finish = "max_tokens"
		} else {
			m.ans.finish = "end_turn"
		}
	}
	if x.req.Stream {
		m.stream()
		return
	}
	out := make([]byte, 0, 512+2*m.ans.size())
	x.w.Header().Set("Request-Id", s.newID("req_"))
	x.writeJSON(http.StatusOK, m.appendMessage(out))
}

// anthropicMessage is the state of one Messages answer.
type anthropicMessage struct {
	x         *exchange
	id        string
	input     int
	cacheRead int
	ans       answer
	tool      *toolCall
	toolID    string
}

// appendUsage appends the usage object with output tokens out.
func (m *anthropicMessage) appendUsage(b []byte, out int) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, m.input)
	b = appendKeyInt(b, "cache_creation_input_tokens", 0)
	b = appendKeyInt(b, "cache_read_input_tokens", m.cacheRead)
	b = appendKeyInt(b, "output_tokens", out)
	return append(b, '}')
}

// appendHead appends the message object up to its content array (open).
func (m *anthropicMessage) appendHead(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, m.id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendJSONString(b, m.x.model)
	return append(b, `,"content":[`...)
}

// appendMessage appends the complete non-stream message object.
func (m *anthropicMessage) appendMessage(b []byte) []byte {
	b = m.appendHead(b)
	if m.tool != nil {
		b = append(b, `{"type":"tool_use","id":`...)
		b = appendJSONString(b, m.toolID)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, m.tool.name)
		b = append(b, `,"input":`...)
		b = append(b, m.tool.args...)
		b = append(b, '}')
	} else {
		b = append(b, `{"type":"text","text":`...)
		b = m.ans.appendContent(b)
		b = append(b, '}')
	}
	b = append(b, `],"stop_reason":"`...)
	b = append(b, m.ans.finish...)
	b = append(b, `","stop_sequence":null,"usage":`...)
	b = m.appendUsage(b, m.ans.tokens())
	return append(b, '}')
}

// appendEvent appends "event: name\ndata: " (the data and "\n\n" follow).
func appendEvent(b []byte, name string) []byte {
	b = append(b, "event: "...)
	b = append(b, name...)
	return append(b, "\ndata: "...)
}

// stream writes the Messages event stream.
func (m *anthropicMessage) stream() {
	x := m.x
	x.w.Header().Set("Request-Id", x.s.newID("req_"))
	x.startStream()
	buf := make([]byte, 0, 1024)

	buf = appendEvent(buf, "message_start")
	buf = append(buf, `{"type":"message_start","message":`...)
	buf = m.appendHead(buf)
	buf = append(buf, `],"stop_reason":null,"stop_sequence":null,"usage":`...)
	buf = m.appendUsage(buf, 1)
	buf = append(buf, "}}\n\n"...)
	buf = appendEvent(buf, "content_block_start")
	buf = append(buf, `{"type":"content_block_start","index":0,"content_block":`...)
	if m.tool != nil {
		buf = append(buf, `{"type":"tool_use","id":`...)
		buf = appendJSONString(buf, m.toolID)
		buf = append(buf, `,"name":`...)
		buf = appendJSONString(buf, m.tool.name)
		buf = append(buf, `,"input":{}}}`+"\n\n"...)
	} else {
		buf = append(buf, `{"type":"text","text":""}}`+"\n\n"...)
	}
	buf = appendEvent(buf, "ping")
	buf = append(buf, `{"type": "ping"}`+"\n\n"...)
	if m.tool != nil {
		buf = appendEvent(buf, "content_block_delta")
		buf = append(buf, `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}`+"\n\n"...)
	}
	if !x.send(buf) {
		return
	}
	last := len(m.ans.pieces) - 1
	for j, piece := range m.ans.pieces {
		buf = appendEvent(buf[:0], "content_block_delta")
		if m.tool != nil {
			buf = append(buf, `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":`...)
		} else {
			buf = append(buf, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`...)
		}
		buf = appendJSONString(buf, piece)
		buf = append(buf, "}}\n\n"...)
		if !x.sendContent(buf) {
			return
		}
		if x.failDue(j == last) {
			abort(x.w)
			return
		}
	}
	buf = appendEvent(buf[:0], "content_block_stop")
	buf = append(buf, `{"type":"content_block_stop","index":0}`+"\n\n"...)
	buf = appendEvent(buf, "message_delta")
	buf = append(buf, `{"type":"message_delta","delta":{"stop_reason":"`...)
	buf = append(buf, m.ans.finish...)
	buf = append(buf, `","stop_sequence":null},"usage":{"output_tokens":`...)
	buf = appendInt(buf, m.ans.tokens())
	buf = append(buf, "}}\n\n"...)
	buf = appendEvent(buf, "message_stop")
	buf = append(buf, `{"type":"message_stop"}`+"\n\n"...)
	x.send(buf)
}

// anthropicPreamble is preamble with errors in Anthropic's shape.
func (x *exchange) anthropicPreamble() bool {
	if x.b.Hang {
		<-x.r.Context().Done()
		x.cancelled()
		return false
	}
	if !x.sleep(x.b.TTFT) {
		return false
	}
	if x.b.Status >= 400 {
		if x.b.RetryAfter != "" {
			x.w.Header().Set("Retry-After", x.b.RetryAfter)
		}
		msg := "fakellm: scripted error " + strconv.Itoa(x.b.Status) + " " + http.StatusText(x.b.Status)
		if x.b.Status == 529 {
			msg = "Overloaded"
		}
		x.writeAnthropicError(x.b.Status, msg)
		return false
	}
	if x.b.Garbage {
		x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
		x.w.WriteHeader(http.StatusOK)
		_, _ = x.w.Write([]byte(garbagePage))
		return false
	}
	return true
}

// writeAnthropicError writes Anthropic's error body; the type derives from
// the status (see anthropicErrorType).
func (x *exchange) writeAnthropicError(status int, msg string) {
	reqID := x.s.newID("req_")
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"type":"error","error":{"type":"`...)
	b = append(b, anthropicErrorType(status)...)
	b = append(b, `","message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `},"request_id":`...)
	b = appendJSONString(b, reqID)
	b = append(b, "}\n"...)
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Request-Id", reqID)
	x.w.WriteHeader(status)
	_, _ = x.w.Write(b)
}

// anthropicErrorType maps a status to Anthropic's error type.
// https://docs.anthropic.com/en/api/errors
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	}
	if status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// systemCached reports whether a "system" array has a block with a
// non-null cache_control.
func systemCached(raw json.RawMessage) bool {
	if firstByte(raw) != '[' {
		return false
	}
	var blocks []struct {
		CacheControl json.RawMessage `json:"cache_control"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return false
	}
	for _, b := range blocks {
		if len(b.CacheControl) > 0 && string(b.CacheControl) != "null" {
			return true
		}
	}
	return false
}

// firstAnthropicToolCall builds a call to the first custom tool of an
// Anthropic "tools" array ({"name","description","input_schema"}); server
// tools (with a "type" other than "custom") are skipped. Arguments follow
// firstToolCall's rules; without a usable tool it calls get_weather.
func firstAnthropicToolCall(raw json.RawMessage) toolCall {
	var tools []struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"input_schema"`
	}
	if firstByte(raw) == '[' && json.Unmarshal(raw, &tools) == nil {
		for _, t := range tools {
			if t.Name != "" && (t.Type == "" || t.Type == "custom") {
				return toolCall{name: t.Name, args: buildArgs(t.InputSchema)}
			}
		}
	}
	return toolCall{name: fallbackToolName, args: fallbackToolArgs}
}
