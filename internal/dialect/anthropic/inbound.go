package anthropic

// The reverse direction: Anthropic Messages clients in front of OpenAI-shaped
// providers (the gateway's inbound /v1/messages).
// https://docs.anthropic.com/en/api/messages
// https://docs.anthropic.com/en/api/messages-streaming
// https://docs.anthropic.com/en/api/errors

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// RequestToOpenAI translates an Anthropic Messages request into an OpenAI
// chat completion request. Errors are *openai.Error (status 400) whose
// message suits [ErrorBody].
//
//   - system (a string or text blocks) → a first "system" message;
//   - user text blocks → text parts (a lone string stays a string); image
//     blocks → image_url parts (base64 sources as data: URLs, url sources
//     as is); PDF document blocks → file parts with a data: URL; plain-text
//     document blocks → text parts;
//   - tool_result blocks → "tool" messages (content joined as text; images
//     they hold move to the user message that follows them), placed before
//     the rest of the user turn; is_error is not representable and dropped;
//   - assistant text blocks → content (joined), tool_use blocks →
//     tool_calls (arguments = compact JSON of input); thinking blocks are
//     dropped;
//   - tools (custom) → function tools; server tools are a 400;
//     tool_choice auto/any/tool/none → "auto"/"required"/{function}/"none",
//     disable_parallel_tool_use → parallel_tool_calls false;
//   - stop_sequences → stop; max_tokens, temperature, top_p pass through;
//     metadata.user_id → user; stream → stream with
//     stream_options.include_usage; top_k, thinking, cache_control and
//     other Anthropic-only fields are dropped.
func RequestToOpenAI(body []byte) ([]byte, error) {
	if !jsonraw.ValidRequest(body) {
		return nil, openai.BadRequest("The request body is not valid JSON.", "", "invalid_json")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, openai.BadRequest("The request body must be a JSON object.", "", "invalid_json")
	}
	model := root.Get("model")
	if model.Type != gjson.String || model.Str == "" {
		return nil, openai.BadRequest("model: Field required", "model", "missing_required_parameter")
	}
	maxTokens := root.Get("max_tokens")
	if maxTokens.Type != gjson.Number || maxTokens.Int() < 1 || float64(maxTokens.Int()) != maxTokens.Num {
		return nil, openai.BadRequest("max_tokens: Field required (a positive integer)", "max_tokens", "missing_required_parameter")
	}
	msgs := root.Get("messages")
	if !msgs.IsArray() {
		return nil, openai.BadRequest("messages: Field required", "messages", "missing_required_parameter")
	}

	out := make([]byte, 0, len(body)+256)
	out = append(out, `{"model":`...)
	out = append(out, model.Raw...)
	out = append(out, `,"messages":[`...)
	var w inWriter
	if sys := root.Get("system"); sys.Exists() && sys.Type != gjson.Null {
		if err := w.system(sys); err != nil {
			return nil, err
		}
	}
	var err error
	msgs.ForEach(func(i, m gjson.Result) bool {
		err = w.message(int(i.Num), m)
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	out = append(out, w.msgs...)
	out = append(out, `],"max_tokens":`...)
	out = append(out, maxTokens.Raw...)
	for _, k := range [...]string{"temperature", "top_p"} {
		if v := root.Get(k); v.Type == gjson.Number {
			out = append(out, ',', '"')
			out = append(out, k...)
			out = append(out, '"', ':')
			out = append(out, v.Raw...)
		}
	}
	if stop := root.Get("stop_sequences"); stop.IsArray() && len(stop.Array()) > 0 {
		out = append(out, `,"stop":[`...)
		for i, s := range stop.Array() {
			if s.Type != gjson.String {
				return nil, openai.BadRequest("stop_sequences: expected an array of strings", "stop_sequences", "invalid_type")
			}
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, s.Raw...)
		}
		out = append(out, ']')
	}
	if root.Get("stream").Type == gjson.True {
		out = append(out, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	if tools := root.Get("tools"); tools.IsArray() && len(tools.Array()) > 0 {
		if out, err = appendOpenAITools(out, tools, root.Get("tool_choice")); err != nil {
			return nil, err
		}
	}
	if u := root.Get("metadata.user_id"); u.Type == gjson.String && u.Str != "" {
		out = append(out, `,"user":`...)
		out = append(out, u.Raw...)
	}
	return append(out, '}'), nil
}

func appendOpenAITools(out []byte, tools, tc gjson.Result) ([]byte, error) {
	out = append(out, `,"tools":[`...)
	var err error
	tools.ForEach(func(i, t gjson.Result) bool {
		param := "tools." + strconv.Itoa(int(i.Num))
		if typ := t.Get("type"); typ.Exists() && typ.Str != "custom" {
			err = openai.BadRequest(param+": tool type "+string(openai.AppendString(nil, typ.Str))+" is not supported by this gateway", param+".type", "unsupported_value")
			return false
		}
		name := t.Get("name")
		if name.Type != gjson.String || name.Str == "" {
			err = openai.BadRequest(param+".name: Field required", param+".name", "missing_required_parameter")
			return false
		}
		if i.Num > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"type":"function","function":{"name":`...)
		out = append(out, name.Raw...)
		if d := t.Get("description"); d.Type == gjson.String {
			out = append(out, `,"description":`...)
			out = append(out, d.Raw...)
		}
		out = append(out, `,"parameters":`...)
		if s := t.Get("input_schema"); s.IsObject() {
			out = append(out, s.Raw...)
		} else {
			out = append(out, `{"type":"object","properties":{}}`...)
		}
		out = append(out, `}}`...)
		return true
	})
	if err != nil {
		return nil, err
	}
	out = append(out, ']')
	if !tc.IsObject() {
		return out, nil
	}
	switch tc.Get("type").Str {
	case "auto":
		out = append(out, `,"tool_choice":"auto"`...)
	case "any":
		out = append(out, `,"tool_choice":"required"`...)
	case "none":
		out = append(out, `,"tool_choice":"none"`...)
	case "tool":
		name := tc.Get("name")
		if name.Type != gjson.String || name.Str == "" {
			return nil, openai.BadRequest("tool_choice.name: Field required", "tool_choice.name", "missing_required_parameter")
		}
		out = append(out, `,"tool_choice":{"type":"function","function":{"name":`...)
		out = append(out, name.Raw...)
		out = append(out, `}}`...)
	default:
		return nil, openai.BadRequest("tool_choice.type: expected auto, any, tool or none", "tool_choice.type", "invalid_value")
	}
	if tc.Get("disable_parallel_tool_use").Type == gjson.True {
		out = append(out, `,"parallel_tool_calls":false`...)
	}
	return out, nil
}

// inWriter builds the OpenAI messages array.
type inWriter struct {
	msgs  []byte
	n     int
	parts []byte // scratch: content parts of the current message
}

func (w *inWriter) sep() {
	if w.n > 0 {
		w.msgs = append(w.msgs, ',')
	}
	w.n++
}

func (w *inWriter) system(sys gjson.Result) error {
	if sys.Type == gjson.String {
		if sys.Str != "" {
			w.sep()
			w.msgs = append(w.msgs, `{"role":"system","content":`...)
			w.msgs = append(w.msgs, sys.Raw...)
			w.msgs = append(w.msgs, '}')
		}
		return nil
	}
	if !sys.IsArray() {
		return openai.BadRequest("system: expected a string or an array of text blocks", "system", "invalid_type")
	}
	var text strings.Builder
	var err error
	sys.ForEach(func(i, b gjson.Result) bool {
		if b.Get("type").Str != "text" {
			err = openai.BadRequest("system."+strconv.Itoa(int(i.Num))+": only text blocks are supported", "system", "invalid_value")
			return false
		}
		if text.Len() > 0 {
			text.WriteString("\n\n")
		}
		text.WriteString(b.Get("text").Str)
		return true
	})
	if err != nil || text.Len() == 0 {
		return err
	}
	w.sep()
	w.msgs = append(w.msgs, `{"role":"system","content":`...)
	w.msgs = openai.AppendString(w.msgs, text.String())
	w.msgs = append(w.msgs, '}')
	return nil
}

func (w *inWriter) message(i int, m gjson.Result) error {
	param := "messages." + strconv.Itoa(i)
	role := m.Get("role").Str
	cont := m.Get("content")
	if role != "user" && role != "assistant" {
		return openai.BadRequest(param+".role: Input should be 'user' or 'assistant'", param+".role", "invalid_value")
	}
	if cont.Type == gjson.String {
		w.sep()
		w.msgs = append(w.msgs, `{"role":"`...)
		w.msgs = append(w.msgs, role...)
		w.msgs = append(w.msgs, `","content":`...)
		w.msgs = append(w.msgs, cont.Raw...)
		w.msgs = append(w.msgs, '}')
		return nil
	}
	if !cont.IsArray() {
		return openai.BadRequest(param+".content: expected a string or an array of content blocks", param+".content", "invalid_type")
	}
	if role == "assistant" {
		return w.assistant(cont, param)
	}
	return w.user(cont, param)
}

func (w *inWriter) user(cont gjson.Result, param string) error {
	w.parts = w.parts[:0]
	nParts, onlyText := 0, true
	var firstText gjson.Result
	addPart := func(p []byte, text gjson.Result) {
		if nParts > 0 {
			w.parts = append(w.parts, ',')
		}
		if nParts == 0 {
			firstText = text
		}
		nParts++
		if !text.Exists() {
			onlyText = false
		}
		w.parts = append(w.parts, p...)
	}
	var err error
	cont.ForEach(func(j, b gjson.Result) bool {
		p := param + ".content." + strconv.Itoa(int(j.Num))
		switch b.Get("type").Str {
		case "text":
			text := b.Get("text")
			if text.Type != gjson.String {
				err = openai.BadRequest(p+".text: Field required", p+".text", "missing_required_parameter")
				return false
			}
			addPart(append(append([]byte(`{"type":"text","text":`), text.Raw...), '}'), text)
		case "image", "document":
			var part []byte
			if part, err = mediaPart(b, p); err != nil {
				return false
			}
			addPart(part, gjson.Result{})
		case "tool_result":
			id := b.Get("tool_use_id")
			if id.Type != gjson.String || id.Str == "" {
				err = openai.BadRequest(p+".tool_use_id: Field required", p+".tool_use_id", "missing_required_parameter")
				return false
			}
			var text strings.Builder
			rc := b.Get("content")
			if rc.Type == gjson.String {
				text.WriteString(rc.Str)
			} else {
				rc.ForEach(func(k, rb gjson.Result) bool {
					switch rb.Get("type").Str {
					case "text":
						if text.Len() > 0 {
							text.WriteByte('\n')
						}
						text.WriteString(rb.Get("text").Str)
					case "image", "document":
						var part []byte
						if part, err = mediaPart(rb, p+".content."+strconv.Itoa(int(k.Num))); err != nil {
							return false
						}
						addPart(part, gjson.Result{})
					}
					return true
				})
				if err != nil {
					return false
				}
			}
			w.sep()
			w.msgs = append(w.msgs, `{"role":"tool","tool_call_id":`...)
			w.msgs = append(w.msgs, id.Raw...)
			w.msgs = append(w.msgs, `,"content":`...)
			w.msgs = openai.AppendString(w.msgs, text.String())
			w.msgs = append(w.msgs, '}')
		default:
			// thinking, redacted_thinking, server tool results...: not
			// representable in a user turn of the chat API.
		}
		return true
	})
	if err != nil || nParts == 0 {
		return err
	}
	w.sep()
	w.msgs = append(w.msgs, `{"role":"user","content":`...)
	if nParts == 1 && onlyText {
		w.msgs = append(w.msgs, firstText.Raw...)
	} else {
		w.msgs = append(w.msgs, '[')
		w.msgs = append(w.msgs, w.parts...)
		w.msgs = append(w.msgs, ']')
	}
	w.msgs = append(w.msgs, '}')
	return nil
}

// mediaPart translates an image or document block into a content part.
func mediaPart(b gjson.Result, p string) ([]byte, error) {
	src := b.Get("source")
	typ := b.Get("type").Str
	switch src.Get("type").Str {
	case "base64":
		mt, data := src.Get("media_type").Str, src.Get("data").Str
		if mt == "" || data == "" {
			return nil, openai.BadRequest(p+".source: media_type and data are required", p+".source", "missing_required_parameter")
		}
		url := "data:" + mt + ";base64," + data
		if typ == "image" {
			part := openai.AppendString([]byte(`{"type":"image_url","image_url":{"url":`), url)
			return append(part, `}}`...), nil
		}
		part := []byte(`{"type":"file","file":{"filename":`)
		name := b.Get("title").Str
		if name == "" {
			name = "document.pdf"
		}
		part = openai.AppendString(part, name)
		part = append(part, `,"file_data":`...)
		part = openai.AppendString(part, url)
		return append(part, `}}`...), nil
	case "url":
		if typ == "image" {
			part := openai.AppendString([]byte(`{"type":"image_url","image_url":{"url":`), src.Get("url").Str)
			return append(part, `}}`...), nil
		}
	case "text":
		if typ == "document" {
			part := openai.AppendString([]byte(`{"type":"text","text":`), src.Get("data").Str)
			return append(part, '}'), nil
		}
	}
	return nil, openai.BadRequest(p+": unsupported "+typ+" source", p+".source", "unsupported_value")
}

func (w *inWriter) assistant(cont gjson.Result, param string) error {
	var text strings.Builder
	calls := make([]byte, 0, 128)
	nCalls := 0
	var err error
	cont.ForEach(func(j, b gjson.Result) bool {
		switch b.Get("type").Str {
		case "text":
			text.WriteString(b.Get("text").Str)
		case "tool_use":
			id, name := b.Get("id"), b.Get("name")
			if id.Type != gjson.String || name.Type != gjson.String {
				p := param + ".content." + strconv.Itoa(int(j.Num))
				err = openai.BadRequest(p+": tool_use requires id and name", p, "missing_required_parameter")
				return false
			}
			if nCalls > 0 {
				calls = append(calls, ',')
			}
			nCalls++
			calls = append(calls, `{"id":`...)
			calls = append(calls, id.Raw...)
			calls = append(calls, `,"type":"function","function":{"name":`...)
			calls = append(calls, name.Raw...)
			calls = append(calls, `,"arguments":`...)
			calls = openai.AppendString(calls, jsonraw.CompactObject(b.Get("input").Raw))
			calls = append(calls, `}}`...)
		}
		return true
	})
	if err != nil {
		return err
	}
	if text.Len() == 0 && nCalls == 0 {
		return nil
	}
	w.sep()
	w.msgs = append(w.msgs, `{"role":"assistant","content":`...)
	if text.Len() > 0 {
		w.msgs = openai.AppendString(w.msgs, text.String())
	} else {
		w.msgs = append(w.msgs, "null"...)
	}
	if nCalls > 0 {
		w.msgs = append(w.msgs, `,"tool_calls":[`...)
		w.msgs = append(w.msgs, calls...)
		w.msgs = append(w.msgs, ']')
	}
	w.msgs = append(w.msgs, '}')
	return nil
}

// StopReason maps an OpenAI finish_reason to Anthropic's stop_reason:
// length → max_tokens, tool_calls and function_call → tool_use,
// content_filter → refusal, anything else → end_turn.
func StopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

// completionIDPrefix starts OpenAI's chat completion ids, and the ids the
// anthropic provider makes of Anthropic message ids ("chatcmpl-msg_…").
const completionIDPrefix = "chatcmpl-"

// MessageID derives an Anthropic message id from an OpenAI completion id:
// "chatcmpl-msg_X" and "msg_X" give "msg_X", "chatcmpl-X" and "X" give
// "msg_X", and an empty id a random one.
func MessageID(id string) string {
	id = strings.TrimPrefix(id, completionIDPrefix)
	if strings.HasPrefix(id, "msg_") {
		return id
	}
	if id == "" {
		b := make([]byte, 0, 28)
		b = append(b, "msg_"...)
		for range 3 {
			b = strconv.AppendUint(b, rand.Uint64()%1e8, 36)
		}
		return string(b)
	}
	return "msg_" + id
}

// appendAnthropicUsage appends Anthropic's usage object from OpenAI's
// counts: input_tokens excludes the cached tokens, which are reported as
// cache_read_input_tokens.
func appendAnthropicUsage(b []byte, prompt, completion, cached int64) []byte {
	in := max(prompt-cached, 0)
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, in, 10)
	b = append(b, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":`...)
	b = strconv.AppendInt(b, cached, 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, completion, 10)
	return append(b, '}')
}

// ResponseFromOpenAI translates an OpenAI chat.completion into an Anthropic
// message object: id per [MessageID], the model reported, content = a text
// block (message content, or its refusal) followed by one tool_use block per
// tool call (input = the parsed arguments; invalid JSON arguments are an
// error), stop_reason per [StopReason], stop_sequence null, usage per
// OpenAI's counts (input_tokens = prompt_tokens - cached_tokens,
// cache_read_input_tokens = cached_tokens). Only the first choice is used.
func ResponseFromOpenAI(body []byte) ([]byte, error) {
	if !jsonraw.Valid(body) {
		return nil, errors.New("anthropic: OpenAI answer is not JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() || root.Get("error").Exists() {
		return nil, errors.New("anthropic: OpenAI answer is not a chat completion")
	}
	choice := root.Get("choices.0")
	msg := choice.Get("message")
	out := make([]byte, 0, len(body)+128)
	out = append(out, `{"id":`...)
	out = openai.AppendString(out, MessageID(root.Get("id").Str))
	out = append(out, `,"type":"message","role":"assistant","model":`...)
	out = openai.AppendString(out, root.Get("model").Str)
	out = append(out, `,"content":[`...)
	n := 0
	text := messageText(msg.Get("content"))
	stop := StopReason(choice.Get("finish_reason").Str)
	if text == "" {
		if r := msg.Get("refusal"); r.Type == gjson.String && r.Str != "" {
			text, stop = r.Str, "refusal"
		}
	}
	if text != "" {
		out = append(out, `{"type":"text","text":`...)
		out = openai.AppendString(out, text)
		out = append(out, '}')
		n++
	}
	var err error
	msg.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		args := strings.TrimSpace(tc.Get("function.arguments").Str)
		if args == "" {
			args = "{}"
		}
		if !jsonraw.ValidString(args) || args[0] != '{' {
			err = errors.New("anthropic: tool call arguments are not a JSON object")
			return false
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, `{"type":"tool_use","id":`...)
		out = openai.AppendString(out, tc.Get("id").Str)
		out = append(out, `,"name":`...)
		out = openai.AppendString(out, tc.Get("function.name").Str)
		out = append(out, `,"input":`...)
		out = append(out, jsonraw.CompactObject(args)...)
		out = append(out, '}')
		return true
	})
	if err != nil {
		return nil, err
	}
	out = append(out, `],"stop_reason":"`...)
	out = append(out, stop...)
	out = append(out, `","stop_sequence":null,"usage":`...)
	u := root.Get("usage")
	out = appendAnthropicUsage(out, u.Get("prompt_tokens").Int(), u.Get("completion_tokens").Int(),
		u.Get("prompt_tokens_details.cached_tokens").Int())
	return append(out, '}'), nil
}

// messageText reads a message content: a string or text parts.
func messageText(c gjson.Result) string {
	if c.Type == gjson.String {
		return c.Str
	}
	var b strings.Builder
	c.ForEach(func(_, p gjson.Result) bool {
		if p.Get("type").Str == "text" {
			b.WriteString(p.Get("text").Str)
		}
		return true
	})
	return b.String()
}

// ErrorBody renders Anthropic's error body
// {"type":"error","error":{"type":...,"message":...}} for an HTTP status:
// 400 invalid_request_error, 401 authentication_error, 402 billing_error,
// 403 permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 503 and 529 overloaded_error, 504 timeout_error, other
// 4xx invalid_request_error, anything else api_error. The same body is the
// data of a stream's "error" event.
func ErrorBody(status int, message string) []byte {
	b := make([]byte, 0, 64+len(message))
	b = append(b, `{"type":"error","error":{"type":"`...)
	b = append(b, ErrorType(status)...)
	b = append(b, `","message":`...)
	b = openai.AppendString(b, message)
	return append(b, `}}`...)
}

// ErrorType is Anthropic's error type for an HTTP status (see [ErrorBody]).
func ErrorType(status int) string {
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
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	if status >= 400 && status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// OpenAIToAnthropicStream turns the events of an OpenAI chat completion
// stream into Anthropic Messages stream events: message_start (at the first
// chunk), content_block_start / content_block_delta / content_block_stop for
// text (text_delta) and for each tool call (tool_use, input_json_delta),
// then, at [OpenAIToAnthropicStream.Finish], message_delta (stop_reason and
// usage, input_tokens included, since OpenAI reports usage at the end) and
// message_stop. Only the first choice is translated. It is not safe for
// concurrent use; the slices passed to emit are valid during the call only.
type OpenAIToAnthropicStream struct {
	model   string
	started bool
	done    bool
	next    int  // next Anthropic content block index
	open    int  // open block index, -1 if none
	isTool  bool // the open block is a tool_use
	tool    int64
	toolID  []byte // raw id of the open tool_use block
	stop    string
	prompt  int64
	output  int64
	cached  int64
	buf     []byte
}

// NewOpenAIToAnthropicStream returns a translator; model is reported in
// message_start ("" = the model of the first chunk).
func NewOpenAIToAnthropicStream(model string) *OpenAIToAnthropicStream {
	return &OpenAIToAnthropicStream{model: model, open: -1, buf: make([]byte, 0, 512)}
}

var (
	evMessageStart = []byte("message_start")
	evBlockStart   = []byte("content_block_start")
	evBlockDelta   = []byte("content_block_delta")
	evBlockStop    = []byte("content_block_stop")
	evMessageDelta = []byte("message_delta")
	evMessageStop  = []byte("message_stop")
)

// Translate consumes the data of one OpenAI stream event (a
// chat.completion.chunk; "[DONE]" is ignored) and emits the Anthropic
// events it yields. An error chunk or malformed JSON is an error.
func (s *OpenAIToAnthropicStream) Translate(chunk []byte, emit func(event, data []byte)) error {
	data := jsonraw.String(chunk)
	if data == "[DONE]" || s.done {
		return nil
	}
	if !jsonraw.ValidString(data) {
		return errors.New("anthropic: malformed OpenAI stream chunk")
	}
	if jsonraw.Field(data, "error") != "" {
		msg := gjson.Get(data, "error.message").Str
		if msg == "" {
			msg = "upstream stream error"
		}
		return errors.New(msg)
	}
	if !s.started {
		s.start(jsonraw.Field(data, "id"), jsonraw.Field(data, "model"), emit)
	}
	var choice string
	jsonraw.Elems(jsonraw.Field(data, "choices"), func(c string) bool {
		if jsonraw.Int(jsonraw.Field(c, "index")) == 0 {
			choice = c
			return false
		}
		return true
	})
	if choice != "" {
		delta := jsonraw.Field(choice, "delta")
		for _, k := range [...]string{"content", "refusal"} {
			if text := jsonraw.Field(delta, k); !jsonraw.IsEmptyString(text) {
				s.textDelta(text, emit)
			}
		}
		jsonraw.Elems(jsonraw.Field(delta, "tool_calls"), func(tc string) bool {
			s.toolDelta(tc, emit)
			return true
		})
		if fr := jsonraw.Field(choice, "finish_reason"); jsonraw.IsString(fr) {
			s.stop = StopReason(fr[1 : len(fr)-1])
			s.closeBlock(emit)
		}
	}
	if u := jsonraw.Field(data, "usage"); len(u) > 0 && u[0] == '{' {
		s.prompt = jsonraw.Int(jsonraw.Field(u, "prompt_tokens"))
		s.output = jsonraw.Int(jsonraw.Field(u, "completion_tokens"))
		s.cached = jsonraw.Int(jsonraw.Path(u, "prompt_tokens_details", "cached_tokens"))
	}
	return nil
}

// Finish closes the open content block and emits message_delta and
// message_stop (and message_start first if no chunk came). Later calls do
// nothing.
func (s *OpenAIToAnthropicStream) Finish(emit func(event, data []byte)) {
	if s.done {
		return
	}
	if !s.started {
		s.start("", "", emit)
	}
	s.closeBlock(emit)
	if s.stop == "" {
		s.stop = "end_turn"
	}
	b := append(s.buf[:0], `{"type":"message_delta","delta":{"stop_reason":"`...)
	b = append(b, s.stop...)
	b = append(b, `","stop_sequence":null},"usage":`...)
	b = appendAnthropicUsage(b, s.prompt, s.output, s.cached)
	b = append(b, '}')
	emit(evMessageDelta, b)
	b = append(b[:0], `{"type":"message_stop"}`...)
	emit(evMessageStop, b)
	s.buf = b
	s.done = true
}

func (s *OpenAIToAnthropicStream) start(id, model string, emit func(event, data []byte)) {
	s.started = true
	b := append(s.buf[:0], `{"type":"message_start","message":{"id":`...)
	oid := ""
	if jsonraw.IsString(id) {
		oid = gjson.Parse(id).Str
	}
	b = openai.AppendString(b, MessageID(oid))
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	if s.model != "" {
		b = openai.AppendString(b, s.model)
	} else {
		b = append(b, jsonraw.StringOr(model, `""`)...)
	}
	b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	b = appendAnthropicUsage(b, 0, 0, 0)
	b = append(b, `}}`...)
	emit(evMessageStart, b)
	s.buf = b
}

func (s *OpenAIToAnthropicStream) closeBlock(emit func(event, data []byte)) {
	if s.open < 0 {
		return
	}
	b := append(s.buf[:0], `{"type":"content_block_stop","index":`...)
	b = strconv.AppendInt(b, int64(s.open), 10)
	b = append(b, '}')
	emit(evBlockStop, b)
	s.buf = b
	s.open = -1
}

func (s *OpenAIToAnthropicStream) startBlock(emit func(event, data []byte)) int {
	s.closeBlock(emit)
	s.open = s.next
	s.next++
	return s.open
}

func (s *OpenAIToAnthropicStream) textDelta(text string, emit func(event, data []byte)) {
	if s.open < 0 || s.isTool {
		i := s.startBlock(emit)
		s.isTool = false
		b := append(s.buf[:0], `{"type":"content_block_start","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"content_block":{"type":"text","text":""}}`...)
		emit(evBlockStart, b)
		s.buf = b
	}
	b := append(s.buf[:0], `{"type":"content_block_delta","index":`...)
	b = strconv.AppendInt(b, int64(s.open), 10)
	b = append(b, `,"delta":{"type":"text_delta","text":`...)
	b = append(b, text...)
	b = append(b, `}}`...)
	emit(evBlockDelta, b)
	s.buf = b
}

func (s *OpenAIToAnthropicStream) toolDelta(tc string, emit func(event, data []byte)) {
	idx := jsonraw.Int(jsonraw.Field(tc, "index"))
	fn := jsonraw.Field(tc, "function")
	id, name := jsonraw.Field(tc, "id"), jsonraw.Field(fn, "name")
	if s.open < 0 || !s.isTool || s.tool != idx || !jsonraw.IsEmptyString(id) && id != string(s.toolID) {
		// A new tool call (OpenAI sends its id and name in its first delta;
		// some compatible servers repeat them in every delta).
		i := s.startBlock(emit)
		s.isTool, s.tool = true, idx
		s.toolID = append(s.toolID[:0], id...)
		b := append(s.buf[:0], `{"type":"content_block_start","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"content_block":{"type":"tool_use","id":`...)
		if jsonraw.IsEmptyString(id) {
			b = append(b, `"toolu_`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, '"')
		} else {
			b = append(b, id...)
		}
		b = append(b, `,"name":`...)
		b = append(b, jsonraw.StringOr(name, `""`)...)
		b = append(b, `,"input":{}}}`...)
		emit(evBlockStart, b)
		s.buf = b
	}
	if args := jsonraw.Field(fn, "arguments"); !jsonraw.IsEmptyString(args) {
		b := append(s.buf[:0], `{"type":"content_block_delta","index":`...)
		b = strconv.AppendInt(b, int64(s.open), 10)
		b = append(b, `,"delta":{"type":"input_json_delta","partial_json":`...)
		b = append(b, args...)
		b = append(b, `}}`...)
		emit(evBlockDelta, b)
		s.buf = b
	}
}
