package cohere

import (
	"net/http"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// builder accumulates a translated request body. The first refusal is kept
// in err and stops the translation.
type builder struct {
	b    []byte
	drop bool
	err  *provider.Error
}

// unsupported refuses an OpenAI feature Cohere cannot honour, or, with
// DropUnsupported, reports true so that the caller leaves it out.
func (w *builder) unsupported(param, what string) bool {
	if w.drop {
		return true
	}
	if w.err == nil {
		w.err = &provider.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Param: param,
			Code: "unsupported_parameter", Message: "Unsupported parameter: " + what + " is not supported by Cohere."}
	}
	return false
}

// invalid refuses a malformed request; never dropped.
func (w *builder) invalid(param, msg string) {
	if w.err == nil {
		w.err = &provider.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Param: param,
			Code: "invalid_value", Message: msg}
	}
}

func (w *builder) str(v gjson.Result) {
	// A string member of a validated body: its raw form is a valid JSON
	// string literal, copied as is.
	w.b = append(w.b, v.Raw...)
}

// strOr appends v when it is a string, else def (a JSON literal).
func (w *builder) strOr(v gjson.Result, def string) {
	if v.Type == gjson.String {
		w.b = append(w.b, v.Raw...)
	} else {
		w.b = append(w.b, def...)
	}
}

// buildChat translates an OpenAI chat completion request into a Cohere v2
// chat request (https://docs.cohere.com/reference/chat):
//
//   - messages: system and developer → system; user → user (text and
//     image_url parts); assistant → assistant with tool_calls, its text
//     becoming tool_plan when it calls tools; tool → tool with
//     tool_call_id and the result as a document (string content) or text
//     parts;
//   - max_completion_tokens / max_tokens → max_tokens; temperature,
//     seed, frequency_penalty, presence_penalty as is; top_p → p;
//     top_k → k; stop → stop_sequences;
//   - tools (functions) as is, any "strict": true → strict_tools;
//     tool_choice "required" → "REQUIRED", "none" → "NONE", "auto" → left
//     out; a specific function is unsupported;
//   - response_format json_object → {"type":"json_object"}, json_schema →
//     {"type":"json_object","json_schema": schema}; text → left out.
//
// n > 1, logit_bias, logprobs, top_logprobs, parallel_tool_calls false,
// audio, prediction, web_search_options, legacy functions and
// reasoning_effort are refused with a 400 unsupported_parameter (or dropped
// with DropUnsupported). model is replaced by the upstream model; stream,
// stream_options (usage is always reported), user, metadata, store,
// service_tier and unknown members are left out. null members count as
// absent.
func buildChat(req *openai.Request, model string, drop bool) ([]byte, *provider.Error) {
	root := gjson.ParseBytes(req.Body)
	w := &builder{b: make([]byte, 0, len(req.Body)+128), drop: drop}
	type pass struct {
		to string
		v  gjson.Result
	}
	var (
		messages, tools, toolChoice, format, stop, maxTokens, maxCompletion gjson.Result
		scalars                                                             [8]pass
		nScalars                                                            int
	)
	root.ForEach(func(k, v gjson.Result) bool {
		if v.Type == gjson.Null {
			return true
		}
		to := ""
		switch k.Str {
		case "messages":
			messages = v
		case "tools":
			tools = v
		case "tool_choice":
			toolChoice = v
		case "response_format":
			format = v
		case "stop":
			stop = v
		case "max_tokens":
			maxTokens = v
		case "max_completion_tokens":
			maxCompletion = v
		case "temperature", "seed", "frequency_penalty", "presence_penalty":
			to = k.Str
		case "top_p":
			to = "p"
		case "top_k":
			to = "k"
		case "n":
			if v.Type != gjson.Number || v.Int() != 1 {
				w.unsupported("n", "'n' other than 1")
			}
		case "logit_bias":
			if v.IsObject() && hasMembers(v) {
				w.unsupported("logit_bias", "'logit_bias'")
			}
		case "logprobs":
			if v.Type == gjson.True {
				w.unsupported("logprobs", "'logprobs'")
			}
		case "top_logprobs":
			if v.Int() > 0 {
				w.unsupported("top_logprobs", "'top_logprobs'")
			}
		case "parallel_tool_calls":
			if v.Type == gjson.False {
				w.unsupported("parallel_tool_calls", "'parallel_tool_calls' false")
			}
		case "modalities":
			v.ForEach(func(_, m gjson.Result) bool {
				if m.Str != "text" {
					w.unsupported("modalities", "the '"+m.Str+"' modality")
					return false
				}
				return true
			})
		case "audio", "prediction", "web_search_options", "functions", "function_call", "reasoning_effort":
			w.unsupported(k.Str, "'"+k.Str+"'")
		}
		if to != "" && nScalars < len(scalars) {
			scalars[nScalars] = pass{to, v}
			nScalars++
		}
		return w.err == nil
	})
	if w.err != nil {
		return nil, w.err
	}

	w.b = append(w.b, `{"model":`...)
	w.b = openai.AppendString(w.b, model)
	w.b = append(w.b, `,"messages":`...)
	w.messages(messages)
	if req.Stream {
		w.b = append(w.b, `,"stream":true`...)
	}
	if maxCompletion.Exists() {
		maxTokens = maxCompletion
	}
	if maxTokens.Exists() {
		w.b = append(w.b, `,"max_tokens":`...)
		w.b = append(w.b, maxTokens.Raw...)
	}
	for _, s := range scalars[:nScalars] {
		w.b = append(w.b, ',', '"')
		w.b = append(w.b, s.to...)
		w.b = append(w.b, '"', ':')
		w.b = append(w.b, s.v.Raw...)
	}
	switch {
	case !stop.Exists():
	case stop.Type == gjson.String:
		w.b = append(w.b, `,"stop_sequences":[`...)
		w.str(stop)
		w.b = append(w.b, ']')
	case stop.IsArray():
		w.b = append(w.b, `,"stop_sequences":`...)
		w.b = append(w.b, stop.Raw...)
	default:
		w.invalid("stop", "Invalid type for 'stop': expected a string or an array of strings.")
	}
	if format.Exists() {
		w.responseFormat(format)
	}
	if tools.Exists() {
		w.tools(tools)
	}
	if toolChoice.Exists() {
		w.toolChoice(toolChoice)
	}
	w.b = append(w.b, '}')
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}

func hasMembers(v gjson.Result) bool {
	n := false
	v.ForEach(func(_, _ gjson.Result) bool { n = true; return false })
	return n
}

// messages appends the translated messages array.
func (w *builder) messages(msgs gjson.Result) {
	w.b = append(w.b, '[')
	n := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		mark := len(w.b)
		if n > 0 {
			w.b = append(w.b, ',')
		}
		if w.message(m) {
			n++
		} else {
			w.b = w.b[:mark]
		}
		return w.err == nil
	})
	w.b = append(w.b, ']')
}

// message appends one message; false when it was dropped (or refused).
func (w *builder) message(m gjson.Result) bool {
	if !m.IsObject() {
		w.invalid("messages", "Invalid type for 'messages': each message must be an object.")
		return false
	}
	content := m.Get("content")
	switch role := m.Get("role"); role.Str {
	case "system", "developer":
		w.b = append(w.b, `{"role":"system","content":`...)
		w.textContent(content, false)
	case "user":
		w.b = append(w.b, `{"role":"user","content":`...)
		w.userContent(content)
	case "assistant":
		w.assistant(m, content)
	case "tool":
		w.b = append(w.b, `{"role":"tool","tool_call_id":`...)
		w.strOr(m.Get("tool_call_id"), `""`)
		w.b = append(w.b, `,"content":`...)
		w.toolContent(content)
	case "function":
		w.unsupported("messages", "the legacy 'function' message role")
		return false
	default:
		w.invalid("messages", "Invalid value for 'role': "+strconv.Quote(role.Str)+" is not a supported message role.")
		return false
	}
	w.b = append(w.b, '}')
	return w.err == nil
}

// textContent appends a string or an array of text content parts (refusal
// parts too when refusals is set) as Cohere content. null becomes "".
func (w *builder) textContent(c gjson.Result, refusals bool) {
	switch {
	case c.Type == gjson.String:
		w.str(c)
	case c.IsArray():
		w.b = append(w.b, '[')
		n := 0
		c.ForEach(func(_, part gjson.Result) bool {
			text := part.Get("text")
			switch typ := part.Get("type").Str; {
			case typ == "text":
			case typ == "refusal" && refusals:
				text = part.Get("refusal")
			default:
				w.unsupported("messages", "the '"+typ+"' content part here")
				return w.err == nil
			}
			if n > 0 {
				w.b = append(w.b, ',')
			}
			n++
			w.b = append(w.b, `{"type":"text","text":`...)
			w.strOr(text, `""`)
			w.b = append(w.b, '}')
			return true
		})
		w.b = append(w.b, ']')
	case !c.Exists() || c.Type == gjson.Null:
		w.b = append(w.b, `""`...)
	default:
		w.invalid("messages", "Invalid type for message 'content': expected a string or an array of content parts.")
	}
}

// userContent appends a user message content: a string, or text and
// image_url parts.
func (w *builder) userContent(c gjson.Result) {
	if !c.IsArray() {
		w.textContent(c, false)
		return
	}
	w.b = append(w.b, '[')
	n := 0
	c.ForEach(func(_, part gjson.Result) bool {
		mark := len(w.b)
		if n > 0 {
			w.b = append(w.b, ',')
		}
		switch typ := part.Get("type").Str; typ {
		case "text":
			w.b = append(w.b, `{"type":"text","text":`...)
			w.strOr(part.Get("text"), `""`)
			w.b = append(w.b, '}')
		case "image_url":
			img := part.Get("image_url")
			u, detail := img.Get("url"), img.Get("detail")
			if img.Type == gjson.String {
				u, detail = img, gjson.Result{}
			}
			if u.Type != gjson.String {
				w.invalid("messages", "Missing required parameter: 'image_url.url'.")
				return false
			}
			w.b = append(w.b, `{"type":"image_url","image_url":{"url":`...)
			w.str(u)
			if detail.Type == gjson.String {
				w.b = append(w.b, `,"detail":`...)
				w.str(detail)
			}
			w.b = append(w.b, `}}`...)
		default:
			w.b = w.b[:mark]
			w.unsupported("messages", "the '"+typ+"' content part")
			return w.err == nil
		}
		n++
		return true
	})
	w.b = append(w.b, ']')
}

// assistant appends an assistant message. With tool calls, its text goes
// to tool_plan (Cohere's reasoning before calling tools).
func (w *builder) assistant(m, content gjson.Result) {
	w.b = append(w.b, `{"role":"assistant"`...)
	calls := m.Get("tool_calls")
	if !calls.IsArray() || !hasMembers(calls) {
		w.b = append(w.b, `,"content":`...)
		w.textContent(content, true)
		return
	}
	if plan := joinText(content); plan != "" {
		w.b = append(w.b, `,"tool_plan":`...)
		w.b = openai.AppendString(w.b, plan)
	}
	w.b = append(w.b, `,"tool_calls":[`...)
	n := 0
	calls.ForEach(func(_, tc gjson.Result) bool {
		if t := tc.Get("type"); t.Exists() && t.Str != "function" {
			w.unsupported("messages", "the '"+t.Str+"' tool call type")
			return w.err == nil
		}
		if n > 0 {
			w.b = append(w.b, ',')
		}
		n++
		f := tc.Get("function")
		w.b = append(w.b, `{"id":`...)
		w.strOr(tc.Get("id"), `""`)
		w.b = append(w.b, `,"type":"function","function":{"name":`...)
		w.strOr(f.Get("name"), `""`)
		w.b = append(w.b, `,"arguments":`...)
		w.strOr(f.Get("arguments"), `"{}"`)
		w.b = append(w.b, `}}`...)
		return true
	})
	w.b = append(w.b, ']')
}

// joinText returns the text of a string content or of its text (and
// refusal) parts.
func joinText(c gjson.Result) string {
	if c.Type == gjson.String {
		return c.Str
	}
	var s string
	c.ForEach(func(_, part gjson.Result) bool {
		if t := part.Get("text"); t.Type == gjson.String {
			s += t.Str
		} else if r := part.Get("refusal"); r.Type == gjson.String {
			s += r.Str
		}
		return true
	})
	return s
}

// toolContent appends a tool result: a string becomes one document
// {"type":"document","document":{"data":...}}, text parts stay text parts.
func (w *builder) toolContent(c gjson.Result) {
	if c.IsArray() {
		w.textContent(c, false)
		return
	}
	w.b = append(w.b, `[{"type":"document","document":{"data":`...)
	switch c.Type {
	case gjson.String:
		w.str(c)
	case gjson.Null:
		w.b = append(w.b, `""`...)
	default:
		w.invalid("messages", "Invalid type for tool message 'content': expected a string or an array of text parts.")
	}
	w.b = append(w.b, `}}]`...)
}

// tools appends the function tools; Cohere's tool shape is OpenAI's.
func (w *builder) tools(tools gjson.Result) {
	if !tools.IsArray() {
		w.invalid("tools", "Invalid type for 'tools': expected an array.")
		return
	}
	mark := len(w.b)
	w.b = append(w.b, `,"tools":[`...)
	n, strict := 0, false
	tools.ForEach(func(_, t gjson.Result) bool {
		if typ := t.Get("type"); typ.Exists() && typ.Str != "function" {
			w.unsupported("tools", "the '"+typ.Str+"' tool type")
			return w.err == nil
		}
		f := t.Get("function")
		name := f.Get("name")
		if name.Type != gjson.String {
			w.invalid("tools", "Missing required parameter: 'tools[].function.name'.")
			return false
		}
		if n > 0 {
			w.b = append(w.b, ',')
		}
		n++
		w.b = append(w.b, `{"type":"function","function":{"name":`...)
		w.str(name)
		if d := f.Get("description"); d.Type == gjson.String {
			w.b = append(w.b, `,"description":`...)
			w.str(d)
		}
		if p := f.Get("parameters"); p.IsObject() {
			w.b = append(w.b, `,"parameters":`...)
			w.b = append(w.b, p.Raw...)
		}
		w.b = append(w.b, `}}`...)
		strict = strict || f.Get("strict").Type == gjson.True
		return true
	})
	w.b = append(w.b, ']')
	switch {
	case n == 0:
		w.b = w.b[:mark]
	case strict:
		w.b = append(w.b, `,"strict_tools":true`...)
	}
}

// toolChoice appends Cohere's tool_choice for OpenAI's.
func (w *builder) toolChoice(tc gjson.Result) {
	if tc.Type != gjson.String {
		w.unsupported("tool_choice", "forcing a specific tool with 'tool_choice'")
		return
	}
	switch tc.Str {
	case "auto":
	case "none":
		w.b = append(w.b, `,"tool_choice":"NONE"`...)
	case "required":
		w.b = append(w.b, `,"tool_choice":"REQUIRED"`...)
	default:
		w.invalid("tool_choice", "Invalid value for 'tool_choice': expected 'none', 'auto' or 'required'.")
	}
}

// responseFormat appends Cohere's response_format for OpenAI's.
func (w *builder) responseFormat(f gjson.Result) {
	switch f.Get("type").Str {
	case "text":
	case "json_object":
		w.b = append(w.b, `,"response_format":{"type":"json_object"}`...)
	case "json_schema":
		w.b = append(w.b, `,"response_format":{"type":"json_object"`...)
		if s := f.Get("json_schema.schema"); s.IsObject() {
			w.b = append(w.b, `,"json_schema":`...)
			w.b = append(w.b, s.Raw...)
		}
		w.b = append(w.b, '}')
	default:
		w.invalid("response_format", "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.")
	}
}

// buildEmbed translates an OpenAI embeddings request into a Cohere v2 embed
// request (https://docs.cohere.com/reference/embed): input (a string or an
// array of strings) → texts, dimensions → output_dimension, always
// embedding_types ["float"] (base64 is encoded by the gateway, reported by
// b64), input_type from the request's non-standard "input_type" member or
// else the configured one. Token-array inputs are unsupported.
func buildEmbed(req *openai.Request, model, inputType string) (body []byte, b64 bool, err *provider.Error) {
	root := gjson.ParseBytes(req.Body)
	w := &builder{b: make([]byte, 0, len(req.Body)+128)}
	switch enc := root.Get("encoding_format"); {
	case !enc.Exists() || enc.Type == gjson.Null || enc.Str == "float":
	case enc.Str == "base64":
		b64 = true
	default:
		w.invalid("encoding_format", "Invalid value for 'encoding_format': expected 'float' or 'base64'.")
		return nil, false, w.err
	}
	if it := root.Get("input_type"); it.Type == gjson.String && it.Str != "" {
		inputType = it.Str
	}
	w.b = append(w.b, `{"model":`...)
	w.b = openai.AppendString(w.b, model)
	w.b = append(w.b, `,"texts":`...)
	switch input := root.Get("input"); {
	case input.Type == gjson.String:
		w.b = append(w.b, '[')
		w.str(input)
		w.b = append(w.b, ']')
	case input.IsArray():
		n := 0
		input.ForEach(func(_, v gjson.Result) bool {
			n++
			if v.Type != gjson.String {
				w.err = &provider.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Param: "input",
					Code: "unsupported_parameter", Message: "Unsupported parameter: token arrays in 'input' are not supported by Cohere; send strings."}
				return false
			}
			return true
		})
		if n == 0 {
			w.invalid("input", "Invalid value for 'input': it must not be empty.")
		}
		w.b = append(w.b, input.Raw...)
	default:
		w.invalid("input", "Missing required parameter: 'input' (a string or an array of strings).")
	}
	if w.err != nil {
		return nil, false, w.err
	}
	w.b = append(w.b, `,"input_type":`...)
	w.b = openai.AppendString(w.b, inputType)
	w.b = append(w.b, `,"embedding_types":["float"]`...)
	if d := root.Get("dimensions"); d.Exists() && d.Type != gjson.Null {
		if d.Type != gjson.Number || d.Int() < 1 || float64(d.Int()) != d.Num {
			w.invalid("dimensions", "Invalid value for 'dimensions': expected a positive integer.")
			return nil, false, w.err
		}
		w.b = append(w.b, `,"output_dimension":`...)
		w.b = strconv.AppendInt(w.b, d.Int(), 10)
	}
	w.b = append(w.b, '}')
	return w.b, b64, nil
}
