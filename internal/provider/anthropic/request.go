package anthropic

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// RequestOptions tune [RequestFromOpenAI].
type RequestOptions struct {
	// Model is the upstream model; empty keeps the request's "model".
	Model string
	// MaxTokens is max_tokens when the request sets neither
	// max_completion_tokens nor max_tokens; <= 0 means [DefaultMaxTokens].
	MaxTokens int64
	// DropUnsupported drops parameters Anthropic cannot honour instead of
	// failing (see [Config.DropUnsupported]).
	DropUnsupported bool
}

// RequestFromOpenAI translates an OpenAI chat completion request
// (https://platform.openai.com/docs/api-reference/chat/create) into an
// Anthropic Messages request (https://docs.anthropic.com/en/api/messages).
// A request that cannot be translated yields a *provider.Error with status
// 400 (its Provider field is left empty).
//
// Messages:
//   - "system" and "developer" messages, wherever they are, become the
//     top-level "system": a string for a single string message, else text
//     blocks (a part's "cache_control" is kept, enabling prompt caching);
//   - user and assistant contents become content (a string, or blocks):
//     text parts, image_url parts (data: URLs as base64 sources, http(s)
//     URLs as url sources), file parts holding a PDF data URL (document
//     blocks) and assistant refusal parts (text);
//   - assistant "tool_calls" become tool_use blocks whose input is the
//     parsed "arguments" (invalid JSON or a non-object is a 400);
//   - "tool" messages become tool_result blocks of a user turn;
//   - consecutive messages of the same Anthropic role are merged into one
//     turn, as Anthropic requires alternating roles; empty messages are
//     skipped.
//
// Parameters: max_completion_tokens / max_tokens (else opt.MaxTokens) →
// max_tokens; stop → stop_sequences; temperature (OpenAI's range is 0–2,
// Anthropic's 0–1: above 1 is a 400, or clamped to 1 with DropUnsupported);
// top_p and top_k pass through; user and metadata.user_id →
// metadata.user_id; tools (function) → {name, description, input_schema};
// tool_choice auto/none/required/{function} → auto/none/any/tool;
// parallel_tool_calls false → tool_choice.disable_parallel_tool_use; stream.
//
// Parameters Anthropic cannot honour — n > 1, logprobs, top_logprobs,
// presence_penalty, frequency_penalty (non-zero), logit_bias, seed,
// response_format other than text, audio, modalities other than text,
// prediction, functions, function_call, reasoning_effort,
// web_search_options, non-function tools — are a 400 invalid_request_error
// with code "unsupported_parameter" and the parameter as param, unless
// opt.DropUnsupported, in which case they are dropped. Content that cannot
// be represented (audio, non-PDF files, file ids) is always a 400. Other
// fields (stream_options, store, service_tier, metadata's other keys,
// unknown extensions) are dropped silently: Anthropic rejects unknown
// fields, and usage is always reported in its streams.
func RequestFromOpenAI(body []byte, opt RequestOptions) ([]byte, error) {
	if !jsonraw.ValidRequest(body) {
		return nil, invalid("", "invalid_json", "The request body is not valid JSON.")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, invalid("", "invalid_json", "The request body must be a JSON object.")
	}
	var f fields
	root.ForEach(func(k, v gjson.Result) bool {
		if v.Type == gjson.Null {
			return true // an explicit null is the same as absent
		}
		switch k.Str {
		case "model":
			f.model = v
		case "messages":
			f.messages = v
		case "max_tokens":
			f.maxTokens = v
		case "max_completion_tokens":
			f.maxCompletion = v
		case "temperature":
			f.temperature = v
		case "top_p":
			f.topP = v
		case "top_k":
			f.topK = v
		case "stop":
			f.stop = v
		case "stream":
			f.stream = v
		case "user":
			f.user = v
		case "metadata":
			f.metadata = v
		case "tools":
			f.tools = v
		case "tool_choice":
			f.toolChoice = v
		case "parallel_tool_calls":
			f.parallel = v
		case "n":
			if v.Type != gjson.Number || v.Num != 1 {
				f.unsupported = append(f.unsupported, "n")
			}
		case "logprobs":
			if v.Type != gjson.False {
				f.unsupported = append(f.unsupported, "logprobs")
			}
		case "top_logprobs":
			if v.Type != gjson.Number || v.Num != 0 {
				f.unsupported = append(f.unsupported, "top_logprobs")
			}
		case "presence_penalty", "frequency_penalty":
			if v.Type != gjson.Number || v.Num != 0 {
				f.unsupported = append(f.unsupported, k.Str)
			}
		case "logit_bias":
			if !v.IsObject() || len(v.Map()) > 0 {
				f.unsupported = append(f.unsupported, "logit_bias")
			}
		case "response_format":
			if v.Get("type").Str != "text" {
				f.unsupported = append(f.unsupported, "response_format")
			}
		case "modalities":
			v.ForEach(func(_, m gjson.Result) bool {
				if m.Str != "text" {
					f.unsupported = append(f.unsupported, "modalities")
					return false
				}
				return true
			})
		case "seed", "audio", "prediction", "functions", "function_call", "reasoning_effort", "web_search_options":
			f.unsupported = append(f.unsupported, k.Str)
		}
		return true
	})
	if len(f.unsupported) > 0 && !opt.DropUnsupported {
		name := f.unsupported[0]
		return nil, invalid(name, "unsupported_parameter",
			"Unsupported parameter: '"+name+"' is not supported by the Anthropic Messages API.")
	}

	model := opt.Model
	if model == "" {
		if f.model.Type != gjson.String || f.model.Str == "" {
			return nil, invalid("model", "missing_model", "you must provide a model parameter")
		}
		model = f.model.Str
	}
	maxTokens := opt.MaxTokens
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	for _, mt := range [...]gjson.Result{f.maxCompletion, f.maxTokens} {
		if !mt.Exists() {
			continue
		}
		if mt.Type != gjson.Number || mt.Int() < 1 || float64(mt.Int()) != mt.Num {
			return nil, invalid("max_tokens", "invalid_value", "Invalid value for max tokens: expected a positive integer.")
		}
		maxTokens = mt.Int()
		break
	}

	var c conv
	if !f.messages.IsArray() {
		return nil, invalid("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
	}
	if err := c.messages(f.messages); err != nil {
		return nil, err
	}

	out := make([]byte, 0, len(body)+256)
	out = append(out, `{"model":`...)
	out = openai.AppendString(out, model)
	out = append(out, `,"max_tokens":`...)
	out = strconv.AppendInt(out, maxTokens, 10)
	if c.sys.n > 0 || c.sys.hasStr {
		out = append(out, `,"system":`...)
		out = c.sys.appendContent(out)
	}
	out = append(out, `,"messages":[`...)
	out = append(out, c.msgs...)
	out = append(out, ']')

	if f.temperature.Exists() {
		if f.temperature.Type != gjson.Number {
			return nil, invalid("temperature", "invalid_type", "Invalid type for 'temperature': expected a number.")
		}
		switch {
		case f.temperature.Num <= 1:
			out = append(out, `,"temperature":`...)
			out = append(out, f.temperature.Raw...)
		case opt.DropUnsupported:
			out = append(out, `,"temperature":1`...)
		default:
			return nil, invalid("temperature", "unsupported_value",
				"Unsupported value: 'temperature' must be between 0 and 1 for the Anthropic Messages API, got "+f.temperature.Raw+".")
		}
	}
	for _, p := range [...]struct {
		name string
		v    gjson.Result
	}{{"top_p", f.topP}, {"top_k", f.topK}} {
		if !p.v.Exists() {
			continue
		}
		if p.v.Type != gjson.Number {
			return nil, invalid(p.name, "invalid_type", "Invalid type for '"+p.name+"': expected a number.")
		}
		out = append(out, ',', '"')
		out = append(out, p.name...)
		out = append(out, '"', ':')
		out = append(out, p.v.Raw...)
	}
	if f.stop.Exists() {
		var err error
		if out, err = appendStop(out, f.stop); err != nil {
			return nil, err
		}
	}
	if f.stream.Exists() {
		if f.stream.Type != gjson.True && f.stream.Type != gjson.False {
			return nil, invalid("stream", "invalid_type", "Invalid type for 'stream': expected a boolean.")
		}
		if f.stream.Type == gjson.True {
			out = append(out, `,"stream":true`...)
		}
	}
	userID := f.metadata.Get("user_id")
	if userID.Type != gjson.String {
		userID = f.user
	}
	if userID.Type == gjson.String && userID.Str != "" {
		out = append(out, `,"metadata":{"user_id":`...)
		out = append(out, userID.Raw...)
		out = append(out, '}')
	}
	if f.tools.Exists() {
		var err error
		if out, err = appendTools(out, f, opt.DropUnsupported); err != nil {
			return nil, err
		}
	}
	return append(out, '}'), nil
}

// fields are the top-level members of a chat request that matter.
type fields struct {
	model, messages, maxTokens, maxCompletion   gjson.Result
	temperature, topP, topK, stop, stream       gjson.Result
	user, metadata, tools, toolChoice, parallel gjson.Result
	unsupported                                 []string
}

// invalid is a 400 invalid_request_error.
func invalid(param, code, msg string) *provider.Error {
	return &provider.Error{
		Kind: provider.KindStatus, Status: http.StatusBadRequest,
		Type: openai.TypeInvalidRequest, Param: param, Code: code, Message: msg,
	}
}

func appendStop(out []byte, stop gjson.Result) ([]byte, error) {
	switch {
	case stop.Type == gjson.String:
		if stop.Str == "" {
			return out, nil
		}
		out = append(out, `,"stop_sequences":[`...)
		out = append(out, stop.Raw...)
		return append(out, ']'), nil
	case stop.IsArray():
		arr := stop.Array()
		if len(arr) == 0 {
			return out, nil
		}
		out = append(out, `,"stop_sequences":[`...)
		for i, s := range arr {
			if s.Type != gjson.String {
				return nil, invalid("stop", "invalid_type", "Invalid type for 'stop': expected a string or an array of strings.")
			}
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, s.Raw...)
		}
		return append(out, ']'), nil
	}
	return nil, invalid("stop", "invalid_type", "Invalid type for 'stop': expected a string or an array of strings.")
}

// appendTools appends "tools" and "tool_choice". Nothing is written for an
// empty tool list (tool_choice is then meaningless).
func appendTools(out []byte, f fields, drop bool) ([]byte, error) {
	if !f.tools.IsArray() {
		return nil, invalid("tools", "invalid_type", "Invalid type for 'tools': expected an array.")
	}
	start := len(out)
	out = append(out, `,"tools":[`...)
	n := 0
	var err error
	f.tools.ForEach(func(i, t gjson.Result) bool {
		param := "tools[" + strconv.Itoa(int(i.Num)) + "]"
		if typ := t.Get("type"); typ.Exists() && typ.Str != "function" {
			if drop {
				return true
			}
			err = invalid(param+".type", "unsupported_parameter",
				"Unsupported parameter: '"+param+".type' = "+quote(typ.String())+": the Anthropic Messages API supports function tools only.")
			return false
		}
		fn := t.Get("function")
		name := fn.Get("name")
		if name.Type != gjson.String || name.Str == "" {
			err = invalid(param+".function.name", "missing_required_parameter", "Missing required parameter: '"+param+".function.name'.")
			return false
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, `{"name":`...)
		out = append(out, name.Raw...)
		if d := fn.Get("description"); d.Type == gjson.String {
			out = append(out, `,"description":`...)
			out = append(out, d.Raw...)
		}
		out = append(out, `,"input_schema":`...)
		if p := fn.Get("parameters"); p.IsObject() {
			out = append(out, p.Raw...)
		} else {
			out = append(out, `{"type":"object","properties":{}}`...)
		}
		if cc := t.Get("cache_control"); cc.IsObject() {
			out = append(out, `,"cache_control":`...)
			out = append(out, cc.Raw...)
		}
		out = append(out, '}')
		return true
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return out[:start], nil
	}
	out = append(out, ']')

	tc := f.toolChoice
	typ := "auto"
	var name string
	switch {
	case !tc.Exists():
	case tc.Type == gjson.String:
		switch tc.Str {
		case "auto":
		case "none":
			typ = "none"
		case "required":
			typ = "any"
		default:
			return nil, invalid("tool_choice", "invalid_value", "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a function.")
		}
	case tc.IsObject():
		nm := tc.Get("function.name")
		if tc.Get("type").Str != "function" || nm.Type != gjson.String || nm.Str == "" {
			return nil, invalid("tool_choice", "invalid_value", "Invalid value for 'tool_choice': expected {\"type\":\"function\",\"function\":{\"name\":...}}.")
		}
		typ, name = "tool", nm.Raw
	default:
		return nil, invalid("tool_choice", "invalid_type", "Invalid type for 'tool_choice'.")
	}
	noParallel := f.parallel.Type == gjson.False && typ != "none"
	if !tc.Exists() && !noParallel {
		return out, nil // Anthropic's default is auto
	}
	out = append(out, `,"tool_choice":{"type":"`...)
	out = append(out, typ...)
	out = append(out, '"')
	if name != "" {
		out = append(out, `,"name":`...)
		out = append(out, name...)
	}
	if noParallel {
		out = append(out, `,"disable_parallel_tool_use":true`...)
	}
	return append(out, '}'), nil
}

// content accumulates the content of one Anthropic turn (or of system):
// a single string kept as such, or content blocks.
type content struct {
	str    string // raw JSON string literal, when hasStr
	hasStr bool
	blocks []byte // comma-separated blocks
	n      int
}

func (c *content) reset() { *c = content{blocks: c.blocks[:0]} }

func (c *content) empty() bool { return !c.hasStr && c.n == 0 }

// addString adds a string content (raw JSON literal); empty ones are skipped.
func (c *content) addString(raw string) {
	if raw == `""` {
		return
	}
	if c.empty() {
		c.str, c.hasStr = raw, true
		return
	}
	c.addText(raw, "")
}

// promote turns a pending single string into a text block.
func (c *content) promote() {
	if c.hasStr {
		c.hasStr = false
		s := c.str
		c.addText(s, "")
	}
}

// begin starts a new block, returning the buffer to append it to.
func (c *content) begin() []byte {
	c.promote()
	if c.n > 0 {
		c.blocks = append(c.blocks, ',')
	}
	c.n++
	return c.blocks
}

// addText adds a text block (raw string literal) with an optional raw
// cache_control object. Empty texts are skipped.
func (c *content) addText(raw, cacheControl string) {
	if raw == `""` {
		return
	}
	b := c.begin()
	b = append(b, `{"type":"text","text":`...)
	b = append(b, raw...)
	if cacheControl != "" {
		b = append(b, `,"cache_control":`...)
		b = append(b, cacheControl...)
	}
	c.blocks = append(b, '}')
}

func (c *content) appendContent(out []byte) []byte {
	if c.hasStr {
		return append(out, c.str...)
	}
	out = append(out, '[')
	out = append(out, c.blocks...)
	return append(out, ']')
}

// conv is the state of a messages conversion.
type conv struct {
	sys   content
	msg   content // scratch: the message being converted
	turn  content
	role  string // role of the open turn
	msgs  []byte // finished turns, comma-separated
	turns int
}

// add merges the content of one message into the turn of role, flushing
// the previous turn when the role changes. Empty contents are skipped, so
// that an empty message does not split a turn.
func (c *conv) add(role string, m *content) {
	if m.empty() {
		return
	}
	if c.role != role {
		c.flush()
		c.role = role
	}
	t := &c.turn
	if t.empty() {
		t.str, t.hasStr, t.n = m.str, m.hasStr, m.n
		t.blocks = append(t.blocks[:0], m.blocks...)
		return
	}
	t.promote()
	m.promote()
	t.blocks = append(t.blocks, ',')
	t.blocks = append(t.blocks, m.blocks...)
	t.n += m.n
}

func (c *conv) flush() {
	if c.role != "" && !c.turn.empty() {
		if c.turns > 0 {
			c.msgs = append(c.msgs, ',')
		}
		c.turns++
		c.msgs = append(c.msgs, `{"role":"`...)
		c.msgs = append(c.msgs, c.role...)
		c.msgs = append(c.msgs, `","content":`...)
		c.msgs = c.turn.appendContent(c.msgs)
		c.msgs = append(c.msgs, '}')
	}
	c.turn.reset()
	c.role = ""
}

func (c *conv) messages(msgs gjson.Result) error {
	var err error
	msgs.ForEach(func(i, m gjson.Result) bool {
		err = c.message(int(i.Num), m)
		return err == nil
	})
	if err != nil {
		return err
	}
	c.flush()
	return nil
}

func (c *conv) message(i int, m gjson.Result) error {
	param := "messages[" + strconv.Itoa(i) + "]"
	if !m.IsObject() {
		return invalid(param, "invalid_type", "Invalid type for '"+param+"': expected an object.")
	}
	role := m.Get("role").Str
	cont := m.Get("content")
	c.msg.reset()
	switch role {
	case "system", "developer":
		return addParts(&c.sys, cont, param, partsText)
	case "user":
		if err := addParts(&c.msg, cont, param, partsUser); err != nil {
			return err
		}
		c.add("user", &c.msg)
		return nil
	case "assistant":
		if m.Get("function_call").IsObject() {
			return invalid(param+".function_call", "unsupported_parameter", "Unsupported parameter: '"+param+".function_call' is not supported by the Anthropic Messages API; use tool_calls.")
		}
		if err := addParts(&c.msg, cont, param, partsAssistant); err != nil {
			return err
		}
		if err := c.toolCalls(m.Get("tool_calls"), param); err != nil {
			return err
		}
		c.add("assistant", &c.msg)
		return nil
	case "tool":
		id := m.Get("tool_call_id")
		if id.Type != gjson.String || id.Str == "" {
			return invalid(param+".tool_call_id", "missing_required_parameter", "Missing required parameter: '"+param+".tool_call_id'.")
		}
		var res content
		if err := addParts(&res, cont, param, partsToolResult); err != nil {
			return err
		}
		b := c.msg.begin()
		b = append(b, `{"type":"tool_result","tool_use_id":`...)
		b = append(b, id.Raw...)
		if !res.empty() {
			b = append(b, `,"content":`...)
			b = res.appendContent(b)
		}
		c.msg.blocks = append(b, '}')
		c.add("user", &c.msg)
		return nil
	case "":
		return invalid(param+".role", "missing_required_parameter", "Missing required parameter: '"+param+".role'.")
	}
	return invalid(param+".role", "invalid_value", "Invalid value for '"+param+".role': "+quote(role)+" is not supported by the Anthropic Messages API.")
}

func (c *conv) toolCalls(tcs gjson.Result, param string) error {
	if !tcs.Exists() || tcs.Type == gjson.Null {
		return nil
	}
	if !tcs.IsArray() {
		return invalid(param+".tool_calls", "invalid_type", "Invalid type for '"+param+".tool_calls': expected an array.")
	}
	var err error
	tcs.ForEach(func(j, tc gjson.Result) bool {
		p := param + ".tool_calls[" + strconv.Itoa(int(j.Num)) + "]"
		id, name := tc.Get("id"), tc.Get("function.name")
		if id.Type != gjson.String || id.Str == "" {
			err = invalid(p+".id", "missing_required_parameter", "Missing required parameter: '"+p+".id'.")
			return false
		}
		if name.Type != gjson.String || name.Str == "" {
			err = invalid(p+".function.name", "missing_required_parameter", "Missing required parameter: '"+p+".function.name'.")
			return false
		}
		args := tc.Get("function.arguments")
		input := strings.TrimSpace(args.Str)
		if input == "" {
			input = "{}"
		}
		if args.Exists() && args.Type != gjson.String || !jsonraw.ValidRequestString(input) || input[0] != '{' {
			err = invalid(p+".function.arguments", "invalid_value",
				"Invalid value for '"+p+".function.arguments': expected a JSON object encoded as a string.")
			return false
		}
		b := c.msg.begin()
		b = append(b, `{"type":"tool_use","id":`...)
		b = append(b, id.Raw...)
		b = append(b, `,"name":`...)
		b = append(b, name.Raw...)
		b = append(b, `,"input":`...)
		b = append(b, input...)
		c.msg.blocks = append(b, '}')
		return true
	})
	return err
}

// Which content parts a message kind accepts.
const (
	partsText       = iota // system: text only
	partsUser              // text, image_url, file
	partsAssistant         // text, refusal
	partsToolResult        // text, image_url
)

// addParts adds a message content (a string, an array of parts or null).
func addParts(dst *content, cont gjson.Result, param string, kind int) error {
	switch {
	case !cont.Exists() || cont.Type == gjson.Null:
		return nil
	case cont.Type == gjson.String:
		dst.addString(cont.Raw)
		return nil
	case !cont.IsArray():
		return invalid(param+".content", "invalid_type", "Invalid type for '"+param+".content': expected a string or an array of content parts.")
	}
	var err error
	cont.ForEach(func(j, part gjson.Result) bool {
		err = addPart(dst, part, param+".content["+strconv.Itoa(int(j.Num))+"]", kind)
		return err == nil
	})
	return err
}

func addPart(dst *content, part gjson.Result, param string, kind int) error {
	if part.Type == gjson.String { // tolerated: a bare string part
		dst.addText(part.Raw, "")
		return nil
	}
	typ := part.Get("type").Str
	switch {
	case typ == "text":
		text := part.Get("text")
		if text.Type != gjson.String {
			return invalid(param+".text", "invalid_type", "Invalid type for '"+param+".text': expected a string.")
		}
		cc := part.Get("cache_control")
		if !cc.IsObject() {
			cc = gjson.Result{}
		}
		dst.addText(text.Raw, cc.Raw)
		return nil
	case typ == "refusal" && kind == partsAssistant:
		if r := part.Get("refusal"); r.Type == gjson.String {
			dst.addText(r.Raw, "")
		}
		return nil
	case typ == "image_url" && (kind == partsUser || kind == partsToolResult):
		u := part.Get("image_url")
		if u.IsObject() {
			u = u.Get("url")
		}
		if u.Type != gjson.String {
			return invalid(param+".image_url.url", "invalid_type", "Invalid type for '"+param+".image_url.url': expected a string.")
		}
		return addImage(dst, u.Str, param)
	case typ == "file" && kind == partsUser:
		data := part.Get("file.file_data")
		mt, b64, ok := parseDataURL(data.Str)
		if data.Type != gjson.String || !ok || mt != "application/pdf" {
			return invalid(param+".file", "unsupported_value",
				"Unsupported file in '"+param+"': the Anthropic Messages API accepts PDF files sent as base64 data URLs in file_data.")
		}
		b := dst.begin()
		b = append(b, `{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":`...)
		b = openai.AppendString(b, b64)
		dst.blocks = append(b, `}}`...)
		return nil
	}
	return invalid(param+".type", "unsupported_value",
		"Unsupported content part type "+quote(typ)+" in '"+param+"' for the Anthropic Messages API.")
}

func addImage(dst *content, u, param string) error {
	if strings.HasPrefix(u, "data:") {
		mt, b64, ok := parseDataURL(u)
		if !ok || !strings.HasPrefix(mt, "image/") {
			return invalid(param+".image_url.url", "invalid_value",
				"Invalid image data URL in '"+param+"': expected data:image/<type>;base64,<data>.")
		}
		b := dst.begin()
		b = append(b, `{"type":"image","source":{"type":"base64","media_type":`...)
		b = openai.AppendString(b, mt)
		b = append(b, `,"data":`...)
		b = openai.AppendString(b, b64)
		dst.blocks = append(b, `}}`...)
		return nil
	}
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		b := dst.begin()
		b = append(b, `{"type":"image","source":{"type":"url","url":`...)
		b = openai.AppendString(b, u)
		dst.blocks = append(b, `}}`...)
		return nil
	}
	return invalid(param+".image_url.url", "invalid_value",
		"Invalid image URL in '"+param+"': expected an http(s) URL or a base64 data URL.")
}

// parseDataURL splits "data:<media type>[;params];base64,<data>". Only
// base64 data URLs are accepted.
func parseDataURL(u string) (mediaType, data string, ok bool) {
	rest, found := strings.CutPrefix(u, "data:")
	if !found {
		return "", "", false
	}
	meta, data, found := strings.Cut(rest, ",")
	if !found {
		return "", "", false
	}
	meta, isB64 := strings.CutSuffix(meta, ";base64")
	if !isB64 {
		return "", "", false
	}
	mediaType, _, _ = strings.Cut(meta, ";")
	mediaType = strings.ToLower(strings.TrimSpace(mediaType))
	if mediaType == "" || data == "" {
		return "", "", false
	}
	return mediaType, data, true
}
