package gemini

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// buildChat translates an OpenAI chat completion request into a Gemini
// GenerateContentRequest (https://ai.google.dev/api/generate-content#request-body):
//
//	messages            system/developer → systemInstruction.parts (all of
//	                    them, in order: Gemini has a single system
//	                    instruction); user → role "user"; assistant → role
//	                    "model"; tool (and legacy function) → role "user"
//	                    with functionResponse parts. Consecutive turns of the
//	                    same role are merged; empty texts are left out
//	                    (Gemini refuses empty text parts).
//	content parts       text → {text}; image_url data: URL → inlineData;
//	                    http(s) image URL → fileData{fileUri, mimeType} with
//	                    the type guessed from the extension (400 when it
//	                    cannot be); input_audio → inlineData audio/wav|mp3;
//	                    file with file_data → inlineData.
//	tool_calls          functionCall{id, name, args}; the Gemini 3 thought
//	                    signature travels in tool_calls[].extra_content.google
//	                    .thought_signature as Google's own OpenAI endpoint
//	                    does; when a client dropped it, the first call of the
//	                    message gets Google's documented placeholder.
//	tool messages       functionResponse{id, name (looked up from the
//	                    assistant tool call with that id), response}: the
//	                    tool's text when it is a JSON object, else
//	                    {"result": text}.
//	tools / functions   tools[{functionDeclarations[{name, description,
//	                    parameters}]}], parameters cleaned (schema.go).
//	tool_choice         toolConfig.functionCallingConfig: none → NONE,
//	                    auto → AUTO, required → ANY, a named function → ANY
//	                    + allowedFunctionNames; allowed_tools → ANY + names
//	                    (required) or AUTO over only those declarations.
//	temperature, top_p, seed, presence_penalty, frequency_penalty, n, stop,
//	max_(completion_)tokens
//	                    generationConfig temperature, topP, seed,
//	                    presencePenalty, frequencyPenalty, candidateCount,
//	                    stopSequences, maxOutputTokens.
//	response_format     json_object → responseMimeType application/json;
//	                    json_schema → responseMimeType + responseSchema.
//	reasoning_effort    generationConfig.thinkingConfig.thinkingBudget:
//	                    none 0, minimal/low 1024, medium 8192, high 24576
//	                    (the budgets of Google's OpenAI compatibility layer).
//
// Refused with 400 unsupported_parameter unless dropUnsupported:
// logit_bias (non-empty), logprobs (true), top_logprobs,
// parallel_tool_calls (false: Gemini may always call several functions),
// modalities other than ["text"], audio, prediction, web_search_options,
// non-function tools. stream_options is implied (usage is always reported)
// and parameters without effect on the answer (user, metadata, store,
// service_tier, ...) or unknown to OpenAI are ignored.
func buildChat(req *openai.Request, dropUnsupported bool) ([]byte, *provider.Error) {
	b := chatBuilder{drop: dropUnsupported}
	return b.build(req)
}

type chatBuilder struct {
	drop bool

	contents []byte // Content objects, comma-separated
	role     string // role of the open Content, "" when none
	sys      []byte // systemInstruction parts, comma-separated
	gen      []byte // generationConfig members, comma-separated
	decls    []byte // functionDeclarations, comma-separated
	nDecls   int
	calls    map[string]string // tool_call id → function name
	schema   schemaCleaner
}

func badRequest(param, code, msg string) *provider.Error {
	return &provider.Error{Kind: provider.KindStatus, Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest,
		Param: param, Code: code, Message: msg}
}

// unsupported reports a parameter Gemini cannot honour, or nil when such
// parameters are dropped.
func (b *chatBuilder) unsupported(param string) *provider.Error {
	if b.drop {
		return nil
	}
	return badRequest(param, "unsupported_parameter",
		"Unsupported parameter: '"+param+"' is not supported by this model's provider (Google Gemini).")
}

func invalidType(param, want string) *provider.Error {
	return badRequest(param, "invalid_type", "Invalid type for '"+param+"': expected "+want+".")
}

func invalidValue(param, msg string) *provider.Error {
	return badRequest(param, "invalid_value", "Invalid value for '"+param+"': "+msg)
}

// isNull reports whether v is absent or JSON null.
func isNull(v gjson.Result) bool { return !v.Exists() || v.Type == gjson.Null }

func (b *chatBuilder) build(req *openai.Request) ([]byte, *provider.Error) {
	root := parse(req.Body)
	var messages, tools, functions, toolChoice, functionCall, respFormat, stop gjson.Result
	var err *provider.Error
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages":
			messages = v
		case "tools":
			tools = v
		case "functions":
			functions = v
		case "tool_choice":
			toolChoice = v
		case "function_call":
			functionCall = v
		case "response_format":
			respFormat = v
		case "stop":
			stop = v
		case "temperature":
			err = b.number(k.Str, "temperature", v)
		case "top_p":
			err = b.number(k.Str, "topP", v)
		case "presence_penalty":
			err = b.number(k.Str, "presencePenalty", v)
		case "frequency_penalty":
			err = b.number(k.Str, "frequencyPenalty", v)
		case "seed":
			err = b.integer(k.Str, "seed", v)
		case "n":
			err = b.integer(k.Str, "candidateCount", v)
		case "reasoning_effort":
			err = b.reasoning(v)
		case "logit_bias":
			if !isNull(v) && !(v.IsObject() && emptyObject(v)) {
				err = b.unsupported(k.Str)
			}
		case "logprobs":
			if v.Type == gjson.True {
				err = b.unsupported(k.Str)
			}
		case "top_logprobs":
			if !isNull(v) {
				err = b.unsupported(k.Str)
			}
		case "parallel_tool_calls":
			if v.Type == gjson.False {
				err = b.unsupported(k.Str)
			}
		case "modalities":
			if !isNull(v) && !onlyText(v) {
				err = b.unsupported(k.Str)
			}
		case "audio", "prediction", "web_search_options":
			if !isNull(v) {
				err = b.unsupported(k.Str)
			}
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	if req.MaxTokens > 0 {
		b.gen = b.member(b.gen, "maxOutputTokens")
		b.gen = appendInt(b.gen, req.MaxTokens)
	}
	if err := b.stop(stop); err != nil {
		return nil, err
	}
	if err := b.responseFormat(respFormat); err != nil {
		return nil, err
	}
	if !messages.IsArray() {
		return nil, badRequest("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
	}
	i := 0
	messages.ForEach(func(_, m gjson.Result) bool {
		err = b.message(i, m)
		i++
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	if b.role != "" {
		b.contents = append(b.contents, "]}"...)
	}

	choice, err := b.toolChoice(toolChoice, functionCall)
	if err != nil {
		return nil, err
	}
	if err := b.tools(tools, functions, choice.only); err != nil {
		return nil, err
	}

	out := make([]byte, 0, len(b.contents)+len(b.sys)+len(b.gen)+len(b.decls)+256)
	out = append(out, `{"contents":[`...)
	out = append(out, b.contents...)
	out = append(out, ']')
	if len(b.sys) > 0 {
		out = append(out, `,"systemInstruction":{"parts":[`...)
		out = append(out, b.sys...)
		out = append(out, "]}"...)
	}
	if b.nDecls > 0 {
		out = append(out, `,"tools":[{"functionDeclarations":[`...)
		out = append(out, b.decls...)
		out = append(out, "]}]"...)
		if choice.mode != "" {
			out = append(out, `,"toolConfig":{"functionCallingConfig":{"mode":"`...)
			out = append(out, choice.mode...)
			out = append(out, '"')
			if len(choice.names) > 0 {
				out = append(out, `,"allowedFunctionNames":[`...)
				for j, n := range choice.names {
					if j > 0 {
						out = append(out, ',')
					}
					out = openai.AppendString(out, n)
				}
				out = append(out, ']')
			}
			out = append(out, "}}"...)
		}
	}
	if len(b.gen) > 0 {
		out = append(out, `,"generationConfig":{`...)
		out = append(out, b.gen...)
		out = append(out, '}')
	}
	return append(out, '}'), nil
}

func emptyObject(v gjson.Result) bool {
	empty := true
	v.ForEach(func(_, _ gjson.Result) bool { empty = false; return false })
	return empty
}

func onlyText(v gjson.Result) bool {
	if !v.IsArray() {
		return false
	}
	ok := true
	v.ForEach(func(_, m gjson.Result) bool {
		ok = m.Type == gjson.String && m.Str == "text"
		return ok
	})
	return ok
}

// member appends the separator and `"key":` to a member list.
func (b *chatBuilder) member(dst []byte, key string) []byte {
	if len(dst) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func (b *chatBuilder) number(param, key string, v gjson.Result) *provider.Error {
	if isNull(v) {
		return nil
	}
	if v.Type != gjson.Number {
		return invalidType(param, "a number")
	}
	b.gen = b.member(b.gen, key)
	b.gen = append(b.gen, v.Raw...)
	return nil
}

func (b *chatBuilder) integer(param, key string, v gjson.Result) *provider.Error {
	if isNull(v) {
		return nil
	}
	if v.Type != gjson.Number || float64(v.Int()) != v.Num {
		return invalidType(param, "an integer")
	}
	if key == "candidateCount" && v.Int() < 1 {
		return invalidValue(param, "expected an integer >= 1.")
	}
	b.gen = b.member(b.gen, key)
	b.gen = appendInt(b.gen, v.Int())
	return nil
}

func (b *chatBuilder) reasoning(v gjson.Result) *provider.Error {
	if isNull(v) {
		return nil
	}
	var budget int64
	switch v.Str {
	case "none":
		budget = 0
	case "minimal", "low":
		budget = 1024
	case "medium":
		budget = 8192
	case "high":
		budget = 24576
	default:
		return invalidValue("reasoning_effort", "expected one of 'none', 'minimal', 'low', 'medium', 'high'.")
	}
	b.gen = b.member(b.gen, "thinkingConfig")
	b.gen = append(b.gen, `{"thinkingBudget":`...)
	b.gen = appendInt(b.gen, budget)
	b.gen = append(b.gen, '}')
	return nil
}

func (b *chatBuilder) stop(v gjson.Result) *provider.Error {
	switch {
	case isNull(v):
		return nil
	case v.Type == gjson.String:
		if v.Str == "" {
			return nil
		}
		b.gen = b.member(b.gen, "stopSequences")
		b.gen = append(b.gen, '[')
		b.gen = appendStringValue(b.gen, v)
		b.gen = append(b.gen, ']')
		return nil
	case v.IsArray():
		list := make([]byte, 0, len(v.Raw))
		var err *provider.Error
		v.ForEach(func(_, s gjson.Result) bool {
			if s.Type != gjson.String {
				err = invalidType("stop", "a string or an array of strings")
				return false
			}
			if s.Str != "" {
				if len(list) > 0 {
					list = append(list, ',')
				}
				list = appendStringValue(list, s)
			}
			return true
		})
		if err != nil {
			return err
		}
		if len(list) > 0 {
			b.gen = b.member(b.gen, "stopSequences")
			b.gen = append(b.gen, '[')
			b.gen = append(b.gen, list...)
			b.gen = append(b.gen, ']')
		}
		return nil
	}
	return invalidType("stop", "a string or an array of strings")
}

func (b *chatBuilder) responseFormat(v gjson.Result) *provider.Error {
	if isNull(v) {
		return nil
	}
	if !v.IsObject() {
		return invalidType("response_format", "an object")
	}
	switch typ := v.Get("type").Str; typ {
	case "text":
		return nil
	case "json_object":
		b.gen = b.member(b.gen, "responseMimeType")
		b.gen = append(b.gen, `"application/json"`...)
		return nil
	case "json_schema":
		b.gen = b.member(b.gen, "responseMimeType")
		b.gen = append(b.gen, `"application/json"`...)
		schema := v.Get("json_schema.schema")
		if schema.IsObject() {
			s, err := b.schema.clean(schema, "response_format.json_schema.schema")
			if err != nil {
				return err
			}
			b.gen = b.member(b.gen, "responseSchema")
			b.gen = append(b.gen, s...)
		}
		return nil
	default:
		return invalidValue("response_format.type", "expected 'text', 'json_object' or 'json_schema'.")
	}
}

// part starts a part of a Content with the given role, merging it into
// the open Content when that has the same role.
func (b *chatBuilder) part(role string) {
	if b.role == role {
		b.contents = append(b.contents, ',')
		return
	}
	if b.role != "" {
		b.contents = append(b.contents, "]},"...)
	}
	b.contents = append(b.contents, `{"role":"`...)
	b.contents = append(b.contents, role...)
	b.contents = append(b.contents, `","parts":[`...)
	b.role = role
}

func (b *chatBuilder) message(i int, m gjson.Result) *provider.Error {
	at := "messages[" + strconv.Itoa(i) + "]"
	if !m.IsObject() {
		return invalidType(at, "an object")
	}
	content := m.Get("content")
	switch role := m.Get("role").Str; role {
	case "system", "developer":
		return b.systemContent(content, at+".content")
	case "user":
		return b.userContent(content, at+".content")
	case "assistant":
		return b.assistant(m, content, at)
	case "tool":
		id := m.Get("tool_call_id")
		if id.Type != gjson.String || id.Str == "" {
			return badRequest(at+".tool_call_id", "missing_required_parameter", "Missing required parameter: '"+at+".tool_call_id'.")
		}
		name, ok := b.calls[id.Str]
		if !ok {
			if n := m.Get("name"); n.Type == gjson.String && n.Str != "" {
				name = n.Str
			} else {
				return invalidValue(at+".tool_call_id", "no preceding assistant message has a tool call with id "+quote(id.Str)+".")
			}
		}
		return b.functionResponse(id, name, content, at+".content")
	case "function":
		n := m.Get("name")
		if n.Type != gjson.String || n.Str == "" {
			return badRequest(at+".name", "missing_required_parameter", "Missing required parameter: '"+at+".name'.")
		}
		return b.functionResponse(gjson.Result{}, n.Str, content, at+".content")
	default:
		return invalidValue(at+".role", "expected 'system', 'developer', 'user', 'assistant' or 'tool'.")
	}
}

// systemContent appends the text of a system message to systemInstruction.
func (b *chatBuilder) systemContent(c gjson.Result, at string) *provider.Error {
	add := func(t gjson.Result) {
		if len(t.Raw) <= 2 {
			return
		}
		if len(b.sys) > 0 {
			b.sys = append(b.sys, ',')
		}
		b.sys = append(b.sys, `{"text":`...)
		b.sys = appendStringValue(b.sys, t)
		b.sys = append(b.sys, '}')
	}
	switch {
	case isNull(c):
		return nil
	case c.Type == gjson.String:
		add(c)
		return nil
	case c.IsArray():
		var err *provider.Error
		j := 0
		c.ForEach(func(_, p gjson.Result) bool {
			switch p.Get("type").Str {
			case "text", "input_text":
				t := p.Get("text")
				if t.Type != gjson.String {
					err = invalidType(at+"["+strconv.Itoa(j)+"].text", "a string")
					return false
				}
				add(t)
			default:
				err = invalidValue(at+"["+strconv.Itoa(j)+"].type", "system and developer messages may only contain text.")
				return false
			}
			j++
			return true
		})
		return err
	}
	return invalidType(at, "a string or an array of content parts")
}

// textPart appends a {text} part unless t is empty.
func (b *chatBuilder) textPart(role string, t gjson.Result) {
	if len(t.Raw) <= 2 {
		return
	}
	b.part(role)
	b.contents = append(b.contents, `{"text":`...)
	b.contents = appendStringValue(b.contents, t)
	b.contents = append(b.contents, '}')
}

func (b *chatBuilder) userContent(c gjson.Result, at string) *provider.Error {
	switch {
	case isNull(c):
		return nil
	case c.Type == gjson.String:
		b.textPart("user", c)
		return nil
	case !c.IsArray():
		return invalidType(at, "a string or an array of content parts")
	}
	var err *provider.Error
	j := 0
	c.ForEach(func(_, p gjson.Result) bool {
		err = b.userPart(p, at+"["+strconv.Itoa(j)+"]")
		j++
		return err == nil
	})
	return err
}

func (b *chatBuilder) userPart(p gjson.Result, at string) *provider.Error {
	switch typ := p.Get("type").Str; typ {
	case "text", "input_text":
		t := p.Get("text")
		if t.Type != gjson.String {
			return invalidType(at+".text", "a string")
		}
		b.textPart("user", t)
		return nil
	case "image_url":
		u := p.Get("image_url")
		if u.IsObject() {
			u = u.Get("url")
		}
		if u.Type != gjson.String {
			return invalidType(at+".image_url.url", "a string")
		}
		return b.media(u.Str, "", at+".image_url.url", true)
	case "input_audio":
		data, format := p.Get("input_audio.data"), p.Get("input_audio.format").Str
		if data.Type != gjson.String || data.Str == "" {
			return invalidType(at+".input_audio.data", "a base64 string")
		}
		var mime string
		switch format {
		case "wav":
			mime = "audio/wav"
		case "mp3":
			mime = "audio/mp3"
		default:
			return invalidValue(at+".input_audio.format", "expected 'wav' or 'mp3'.")
		}
		b.inline(mime, data.Str)
		return nil
	case "file":
		f := p.Get("file")
		if fd := f.Get("file_data"); fd.Type == gjson.String && fd.Str != "" {
			return b.media(fd.Str, f.Get("filename").Str, at+".file.file_data", false)
		}
		if !isNull(f.Get("file_id")) {
			return badRequest(at+".file.file_id", "unsupported_value",
				"Uploaded file ids are not supported by this model's provider (Google Gemini); send the file inline in file_data.")
		}
		return invalidType(at+".file.file_data", "a data URL")
	default:
		return invalidValue(at+".type", "unsupported content part type "+quote(typ)+".")
	}
}

// media appends the part for a data: URL (inlineData), or, when allowURL,
// an http(s) URL (fileData). filename helps guess the type of bare base64.
func (b *chatBuilder) media(u, filename, at string, allowURL bool) *provider.Error {
	if rest, ok := cutPrefixFold(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		if !ok {
			return invalidValue(at, "malformed data URL.")
		}
		mime, params, _ := strings.Cut(meta, ";")
		if mime == "" {
			mime = mimeByExt(filename)
		}
		if mime == "" {
			return invalidValue(at, "the data URL has no media type.")
		}
		if !hasParam(params, "base64") {
			raw, err := url.PathUnescape(data)
			if err != nil {
				return invalidValue(at, "malformed data URL.")
			}
			data = base64.StdEncoding.EncodeToString([]byte(raw))
		}
		mime = strings.ToLower(strings.TrimSpace(mime))
		if mime == "image/jpg" {
			mime = "image/jpeg" // a common misspelling Gemini refuses
		}
		b.inline(mime, data)
		return nil
	}
	if !allowURL {
		if filename != "" && mimeByExt(filename) != "" {
			// bare base64 with a filename (some clients send it so)
			b.inline(mimeByExt(filename), u)
			return nil
		}
		return invalidValue(at, "expected a data: URL.")
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return invalidValue(at, "expected a data: URL or an http(s) URL.")
	}
	mime := mimeByExt(pu.Path)
	if mime == "" {
		return invalidValue(at, "cannot tell the image type of "+quote(u)+
			"; use a data: URL or a URL ending in .png, .jpg, .jpeg, .webp, .heic or .heif.")
	}
	b.part("user")
	b.contents = append(b.contents, `{"fileData":{"mimeType":"`...)
	b.contents = append(b.contents, mime...)
	b.contents = append(b.contents, `","fileUri":`...)
	b.contents = openai.AppendString(b.contents, u)
	b.contents = append(b.contents, "}}"...)
	return nil
}

func (b *chatBuilder) inline(mime, data string) {
	b.part("user")
	b.contents = append(b.contents, `{"inlineData":{"mimeType":`...)
	b.contents = openai.AppendString(b.contents, mime)
	b.contents = append(b.contents, `,"data":`...)
	b.contents = openai.AppendString(b.contents, data)
	b.contents = append(b.contents, "}}"...)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func hasParam(params, name string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		if strings.EqualFold(strings.TrimSpace(p), name) {
			return true
		}
	}
	return false
}

// mimeByExt guesses the media type Gemini accepts from a file name or URL
// path (https://ai.google.dev/gemini-api/docs/image-understanding lists
// PNG, JPEG, WEBP, HEIC and HEIF; PDF and common audio are accepted as
// documents and audio).
func mimeByExt(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".webp":
		return "image/webp"
	case ".heic":
		return "image/heic"
	case ".heif":
		return "image/heif"
	case ".pdf":
		return "application/pdf"
	case ".wav":
		return "audio/wav"
	case ".mp3":
		return "audio/mp3"
	}
	return ""
}

func (b *chatBuilder) assistant(m, content gjson.Result, at string) *provider.Error {
	switch {
	case isNull(content):
	case content.Type == gjson.String:
		b.textPart("model", content)
	case content.IsArray():
		var err *provider.Error
		j := 0
		content.ForEach(func(_, p gjson.Result) bool {
			switch p.Get("type").Str {
			case "text", "output_text":
				t := p.Get("text")
				if t.Type != gjson.String {
					err = invalidType(at+".content["+strconv.Itoa(j)+"].text", "a string")
					return false
				}
				b.textPart("model", t)
			case "refusal":
				if t := p.Get("refusal"); t.Type == gjson.String {
					b.textPart("model", t)
				}
			default:
				err = invalidValue(at+".content["+strconv.Itoa(j)+"].type", "assistant messages may only contain text.")
				return false
			}
			j++
			return true
		})
		if err != nil {
			return err
		}
	default:
		return invalidType(at+".content", "a string or an array of content parts")
	}
	var err *provider.Error
	j := 0
	m.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
		tat := at + ".tool_calls[" + strconv.Itoa(j) + "]"
		j++
		if t := tc.Get("type"); t.Exists() && t.Str != "function" {
			err = b.unsupported(tat + ".type")
			return err == nil
		}
		f := tc.Get("function")
		err = b.functionCall(tc.Get("id"), f.Get("name"), f.Get("arguments"), tc.Get("extra_content.google.thought_signature"), tat+".function", j == 1)
		return err == nil
	})
	if err != nil {
		return err
	}
	if fc := m.Get("function_call"); fc.IsObject() {
		return b.functionCall(gjson.Result{}, fc.Get("name"), fc.Get("arguments"), gjson.Result{}, at+".function_call", true)
	}
	return nil
}

// skipSignature is the placeholder thought signature the Gemini API
// documents for function calls whose signature is lost ("transferring a
// trace from a different model", or clients that drop extra_content):
// Gemini 3 refuses a model turn whose first function call has no
// signature, earlier models ignore it.
// https://ai.google.dev/gemini-api/docs/thought-signatures
const skipSignature = "skip_thought_signature_validator"

// functionCall appends a functionCall part to the model turn. The first
// call of an assistant message carries a thought signature: the client's,
// or skipSignature.
func (b *chatBuilder) functionCall(id, name, args, sig gjson.Result, at string, first bool) *provider.Error {
	if name.Type != gjson.String || name.Str == "" {
		return badRequest(at+".name", "missing_required_parameter", "Missing required parameter: '"+at+".name'.")
	}
	a := strings.TrimSpace(args.Str)
	switch {
	case isNull(args) || a == "":
		a = "{}"
	case args.Type != gjson.String:
		return invalidType(at+".arguments", "a string")
	case !jsonraw.ValidRequestString(a) || !gjson.Parse(a).IsObject():
		return invalidValue(at+".arguments", "expected a JSON object.")
	}
	if id.Type == gjson.String && id.Str != "" {
		if b.calls == nil {
			b.calls = make(map[string]string)
		}
		b.calls[id.Str] = name.Str
	}
	b.part("model")
	b.contents = append(b.contents, `{"functionCall":{`...)
	if id.Type == gjson.String && id.Str != "" {
		b.contents = append(b.contents, `"id":`...)
		b.contents = appendStringValue(b.contents, id)
		b.contents = append(b.contents, ',')
	}
	b.contents = append(b.contents, `"name":`...)
	b.contents = appendStringValue(b.contents, name)
	b.contents = append(b.contents, `,"args":`...)
	b.contents = appendCompact(b.contents, a)
	b.contents = append(b.contents, '}')
	if sig.Type == gjson.String && sig.Str != "" {
		b.contents = append(b.contents, `,"thoughtSignature":`...)
		b.contents = appendStringValue(b.contents, sig)
	} else if first {
		b.contents = append(b.contents, `,"thoughtSignature":"`+skipSignature+`"`...)
	}
	b.contents = append(b.contents, '}')
	return nil
}

// functionResponse appends a functionResponse part to a user turn.
func (b *chatBuilder) functionResponse(id gjson.Result, name string, c gjson.Result, at string) *provider.Error {
	var text string
	switch {
	case isNull(c):
	case c.Type == gjson.String:
		text = c.Str
	case c.IsArray():
		var sb strings.Builder
		var err *provider.Error
		c.ForEach(func(_, p gjson.Result) bool {
			t := p.Get("text")
			if p.Get("type").Str != "text" || t.Type != gjson.String {
				err = invalidValue(at, "tool messages may only contain text.")
				return false
			}
			sb.WriteString(t.Str)
			return true
		})
		if err != nil {
			return err
		}
		text = sb.String()
	default:
		return invalidType(at, "a string or an array of text parts")
	}
	b.part("user")
	b.contents = append(b.contents, `{"functionResponse":{`...)
	if id.Type == gjson.String && id.Str != "" {
		b.contents = append(b.contents, `"id":`...)
		b.contents = appendStringValue(b.contents, id)
		b.contents = append(b.contents, ',')
	}
	b.contents = append(b.contents, `"name":`...)
	b.contents = openai.AppendString(b.contents, name)
	b.contents = append(b.contents, `,"response":`...)
	if t := strings.TrimSpace(text); jsonraw.ValidRequestString(t) && gjson.Parse(t).IsObject() {
		b.contents = appendCompact(b.contents, t)
	} else {
		b.contents = append(b.contents, `{"result":`...)
		b.contents = openai.AppendString(b.contents, text)
		b.contents = append(b.contents, '}')
	}
	b.contents = append(b.contents, "}}"...)
	return nil
}

// choice is the translated tool_choice.
type choice struct {
	mode  string   // AUTO, ANY, NONE or "" (unset)
	names []string // allowedFunctionNames
	only  []string // declarations to keep (allowed_tools in auto mode)
}

func (b *chatBuilder) toolChoice(tc, legacy gjson.Result) (choice, *provider.Error) {
	if isNull(tc) {
		tc = legacy
	}
	switch {
	case isNull(tc):
		return choice{}, nil
	case tc.Type == gjson.String:
		switch tc.Str {
		case "none":
			return choice{mode: "NONE"}, nil
		case "auto":
			return choice{mode: "AUTO"}, nil
		case "required":
			return choice{mode: "ANY"}, nil
		}
		return choice{}, invalidValue("tool_choice", "expected 'none', 'auto', 'required' or an object.")
	case !tc.IsObject():
		return choice{}, invalidType("tool_choice", "a string or an object")
	}
	typ := tc.Get("type").Str
	switch {
	case typ == "function" || typ == "" && tc.Get("name").Exists():
		name := tc.Get("function.name")
		if !name.Exists() {
			name = tc.Get("name") // legacy function_call {"name"}
		}
		if name.Type != gjson.String || name.Str == "" {
			return choice{}, badRequest("tool_choice.function.name", "missing_required_parameter", "Missing required parameter: 'tool_choice.function.name'.")
		}
		return choice{mode: "ANY", names: []string{name.Str}}, nil
	case typ == "allowed_tools":
		var names []string
		tc.Get("allowed_tools.tools").ForEach(func(_, t gjson.Result) bool {
			if n := t.Get("function.name"); n.Type == gjson.String {
				names = append(names, n.Str)
			} else if n := t.Get("name"); n.Type == gjson.String {
				names = append(names, n.Str)
			}
			return true
		})
		switch tc.Get("allowed_tools.mode").Str {
		case "required":
			return choice{mode: "ANY", names: names}, nil
		case "auto", "":
			return choice{mode: "AUTO", only: names}, nil
		}
		return choice{}, invalidValue("tool_choice.allowed_tools.mode", "expected 'auto' or 'required'.")
	}
	if e := b.unsupported("tool_choice"); e != nil {
		return choice{}, e
	}
	return choice{}, nil
}

// tools appends the function declarations of tools (and legacy functions),
// keeping only the names in only when it is non-nil.
func (b *chatBuilder) tools(tools, functions gjson.Result, only []string) *provider.Error {
	var err *provider.Error
	declare := func(f gjson.Result, at string) {
		name := f.Get("name")
		if name.Type != gjson.String || name.Str == "" {
			err = badRequest(at+".name", "missing_required_parameter", "Missing required parameter: '"+at+".name'.")
			return
		}
		if only != nil && !contains(only, name.Str) {
			return
		}
		if b.nDecls > 0 {
			b.decls = append(b.decls, ',')
		}
		b.nDecls++
		b.decls = append(b.decls, `{"name":`...)
		b.decls = appendStringValue(b.decls, name)
		if d := f.Get("description"); d.Type == gjson.String && d.Str != "" {
			b.decls = append(b.decls, `,"description":`...)
			b.decls = appendStringValue(b.decls, d)
		}
		if params := f.Get("parameters"); params.IsObject() {
			s, e := b.schema.clean(params, at+".parameters")
			if e != nil {
				err = e
				return
			}
			// Gemini refuses an OBJECT without properties: a function
			// without parameters simply has none.
			if !emptyObjectSchema(s) {
				b.decls = append(b.decls, `,"parameters":`...)
				b.decls = append(b.decls, s...)
			}
		}
		b.decls = append(b.decls, '}')
	}
	j := 0
	if !isNull(tools) && !tools.IsArray() {
		return invalidType("tools", "an array")
	}
	tools.ForEach(func(_, t gjson.Result) bool {
		at := "tools[" + strconv.Itoa(j) + "]"
		j++
		if typ := t.Get("type").Str; typ != "function" {
			err = b.unsupported(at + ".type")
			return err == nil
		}
		declare(t.Get("function"), at+".function")
		return err == nil
	})
	if err != nil {
		return err
	}
	j = 0
	functions.ForEach(func(_, f gjson.Result) bool {
		declare(f, "functions["+strconv.Itoa(j)+"]")
		j++
		return err == nil
	})
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
