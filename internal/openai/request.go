package openai

import (
	"bytes"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
)

// Op is the kind of OpenAI operation a request asks for.
type Op uint8

// The operations the gateway serves.
const (
	OpChat Op = iota
	OpCompletions
	OpEmbeddings
	OpResponses
)

// String returns the operation's path below /v1.
func (o Op) String() string {
	switch o {
	case OpChat:
		return "chat/completions"
	case OpCompletions:
		return "completions"
	case OpEmbeddings:
		return "embeddings"
	case OpResponses:
		return "responses"
	}
	return "unknown"
}

// Request is a read-only view of an inbound request body. It holds the raw
// bytes and the few fields the gateway routes on; everything else passes
// through untouched.
type Request struct {
	Op Op
	// Body is the client's JSON body. Its bytes must not be modified once
	// parsed: ParseRequest reads it in place (without a copy), UpstreamBody
	// splices it at the offsets ParseRequest recorded and may return it as
	// is, to be shared with upstream requests still being written. (Setting
	// Body to another slice is fine: UpstreamBody notices.)
	Body  []byte
	Model string
	// Stream is true for "stream": true.
	Stream bool
	// ClientUsage is true when the client asked for the usage chunk
	// (stream_options.include_usage).
	ClientUsage bool
	// MaxTokens is max_completion_tokens, max_tokens or max_output_tokens,
	// whichever is set; 0 when none is.
	MaxTokens int64
	// Messages is the number of chat messages (or Responses input items).
	Messages int
	// Temperature and TopP are the sampling parameters, when the body
	// sets them as numbers (HasTemperature, HasTopP).
	Temperature, TopP       float64
	HasTemperature, HasTopP bool

	// layout is where ParseRequest found the fields UpstreamBody rewrites.
	layout layout
}

// ReleaseBody drops the request's reference to its body (Body and what
// ParseRequest recorded of it), so that a request kept for a stream's life
// does not keep the body too. Call it when nothing will read the body
// again: after the attempts, never while one may still run.
func (r *Request) ReleaseBody() {
	r.Body = nil
	r.layout = layout{}
}

// layout records, for the body ParseRequest read, where the top-level
// "model" value lies and whether "stream_options" is present, so that
// UpstreamBody can splice without parsing again.
type layout struct {
	src        *byte // the parsed body, to detect a Body replaced since
	srcLen     int
	modelStart int // offset of the "model" value (its opening quote)
	modelEnd   int // offset just past its closing quote
	streamOpts bool
	steering   bool // has SteeringMembers to drop
}

// bytesString views b as a string without copying. The string must not
// outlive a modification of b.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// ParseInPlace is gjson.ParseBytes without its copy of data: the result's
// Raw and (unescaped) Str alias data, so they are valid only while data is
// not modified; clone any string kept longer (strings.Clone).
func ParseInPlace(data []byte) gjson.Result { return gjson.Parse(bytesString(data)) }

// GetInPlace is gjson.GetBytes without its copy of the result, under the
// same rule as ParseInPlace.
func GetInPlace(data []byte, path string) gjson.Result { return gjson.Get(bytesString(data), path) }

// Bounds on a request's counts, as OpenAI documents them: n at most 128
// choices, at most 128 tools, at most 2048 embedding inputs.
const (
	MaxChoices         = 128
	MaxTools           = 128
	MaxEmbeddingInputs = 2048
)

// MaxModelName bounds the length of a model name in bytes: it is echoed in
// response headers, logs and metrics labels.
const MaxModelName = 256

// SteeringMembers are top-level request members that proxies such as
// LiteLLM read to choose an upstream, a key or a per-request config. The
// gateway never acts on them and never forwards them, so that no client can
// steer a proxy behind it.
var SteeringMembers = []string{"api_base", "base_url", "api_key", "api_version", "user_config",
	"custom_llm_provider", "extra_headers", "mock_response"}

func isSteering(name string) bool {
	for _, m := range SteeringMembers {
		if name == m {
			return true
		}
	}
	return false
}

// CheckBody validates a request body before anything reads it: JSON of at
// most maxDepth levels (0 = jsonraw.DefaultMaxDepth), strings in UTF-8, and
// no object with two members of one name (escaped spellings count as the
// same name), so that what the gateway authorizes, limits and prices is
// exactly what an upstream reads, whichever of duplicates it would take.
func CheckBody(body []byte, maxDepth int) *Error {
	ce := jsonraw.Check(body, maxDepth, jsonraw.Unique|jsonraw.UTF8)
	if ce == nil {
		return nil
	}
	switch ce.Problem {
	case jsonraw.ProblemUTF8:
		return BadRequest("The request body is not valid UTF-8 (at byte "+strconv.Itoa(ce.Offset)+").", "", "invalid_json")
	case jsonraw.ProblemDepth:
		if maxDepth <= 0 {
			maxDepth = jsonraw.DefaultMaxDepth
		}
		return BadRequest("The request body nests JSON deeper than "+strconv.Itoa(maxDepth)+" levels.", "", "invalid_json")
	case jsonraw.ProblemDuplicate:
		param := ce.Member
		if ce.Path != "" {
			param = ce.Path + "." + ce.Member
		}
		return BadRequest("The request body has a duplicate member "+strconv.Quote(param)+": each member may appear only once.", param, "invalid_json")
	}
	return BadRequest("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)", "", "invalid_json")
}

// ParseRequest checks body with CheckBody (maxDepth levels at most) and
// reads the routing fields. It parses body in place: whatever the size of
// the body, it allocates the Request and the model string (plus any
// top-level member name written with escapes). body must not be modified
// afterwards (see Request.Body).
func ParseRequest(op Op, body []byte, maxDepth int) (*Request, *Error) {
	if oe := CheckBody(body, maxDepth); oe != nil {
		return nil, oe
	}
	// gjson.ParseBytes would copy the whole body into a string; the results
	// below alias body instead, and only the model name is kept (cloned).
	js := bytesString(body)
	root := gjson.Parse(js) // in place, see ParseInPlace
	if !root.IsObject() {
		return nil, BadRequest("The request body must be a JSON object.", "", "invalid_json")
	}
	req := &Request{Op: op, Body: body}
	lay := &req.layout
	var model, stream, streamOpts, maxTokens, maxCompletion, maxOutput, messages, n, tools, input gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			model = v
		case "stream":
			stream = v
		case "stream_options":
			streamOpts = v
			lay.streamOpts = true
		case "max_tokens":
			maxTokens = v
		case "max_completion_tokens":
			maxCompletion = v
		case "max_output_tokens":
			maxOutput = v
		case "messages":
			messages = v
		case "input":
			input = v
			if op == OpResponses {
				messages = v
			}
		case "n":
			n = v
		case "tools":
			tools = v
		case "temperature":
			req.Temperature, req.HasTemperature = v.Num, v.Type == gjson.Number
		case "top_p":
			req.TopP, req.HasTopP = v.Num, v.Type == gjson.Number
		default:
			if isSteering(k.Str) {
				lay.steering = true
			}
		}
		return true
	})
	if model.Type != gjson.String || model.Str == "" {
		return nil, BadRequest("you must provide a model parameter", "model", "missing_model")
	}
	if oe := CheckModelName(model.Str); oe != nil {
		return nil, oe
	}
	if strings.IndexByte(model.Raw, '\\') < 0 {
		// Without escapes gjson's Str aliases body: keep a copy of our own.
		req.Model = strings.Clone(model.Str)
	} else {
		req.Model = model.Str // unescaped into a new string already
	}
	lay.src, lay.srcLen = unsafe.SliceData(body), len(body)
	lay.modelStart = offsetIn(js, model.Raw)
	lay.modelEnd = lay.modelStart + len(model.Raw)
	switch stream.Type {
	case gjson.True:
		req.Stream = true
	case gjson.False, gjson.Null:
	default:
		if stream.Exists() {
			return nil, BadRequest("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
		}
	}
	if req.Stream && op == OpEmbeddings {
		return nil, BadRequest("Embeddings cannot be streamed.", "stream", "invalid_value")
	}
	req.ClientUsage = streamOpts.Get("include_usage").Type == gjson.True
	// The largest of the output caps given: the one the gateway checks and
	// reserves for is never below what an upstream may honour.
	for _, mt := range [...]gjson.Result{maxCompletion, maxTokens, maxOutput} {
		if !mt.Exists() || mt.Type == gjson.Null {
			continue
		}
		if mt.Type != gjson.Number || mt.Int() < 1 || float64(mt.Int()) != mt.Num {
			return nil, BadRequest("Invalid value for max tokens: expected a positive integer.", "max_tokens", "invalid_value")
		}
		req.MaxTokens = max(req.MaxTokens, mt.Int())
	}
	switch {
	case messages.IsArray():
		req.Messages = count(messages)
	case op == OpChat:
		return nil, BadRequest("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
	}
	if n.Exists() && n.Type != gjson.Null && (n.Type != gjson.Number || n.Num < 1 || n.Num > MaxChoices || n.Num != float64(int64(n.Num))) {
		return nil, BadRequest("Invalid value for 'n': expected an integer from 1 to "+strconv.Itoa(MaxChoices)+".", "n", "invalid_value")
	}
	if tools.IsArray() && count(tools) > MaxTools {
		return nil, BadRequest("Too many tools: at most "+strconv.Itoa(MaxTools)+" are supported.", "tools", "invalid_value")
	}
	if op == OpEmbeddings && input.IsArray() && count(input) > MaxEmbeddingInputs {
		return nil, BadRequest("Too many inputs: at most "+strconv.Itoa(MaxEmbeddingInputs)+" are supported.", "input", "invalid_value")
	}
	return req, nil
}

func count(arr gjson.Result) int {
	n := 0
	arr.ForEach(func(_, _ gjson.Result) bool { n++; return true })
	return n
}

// CheckModelName refuses a model name longer than MaxModelName bytes or
// holding control characters.
func CheckModelName(m string) *Error {
	if len(m) > MaxModelName {
		return BadRequest("The model name is too long: at most "+strconv.Itoa(MaxModelName)+" bytes.", "model", "invalid_value")
	}
	for i := 0; i < len(m); i++ {
		if m[i] < ' ' || m[i] == 0x7f {
			return BadRequest("The model name must not contain control characters.", "model", "invalid_value")
		}
	}
	return nil
}

// StripSteering returns body without its top-level SteeringMembers (body
// itself when it has none). body must have passed CheckBody.
func StripSteering(body []byte) []byte {
	var drop []string
	ParseInPlace(body).ForEach(func(k, _ gjson.Result) bool {
		if isSteering(k.Str) {
			drop = append(drop, k.Str)
		}
		return true
	})
	for _, k := range drop {
		if out, err := sjson.DeleteBytes(body, k); err == nil {
			body = out
		}
	}
	return body
}

// offsetIn returns the offset of sub in s; sub must be a substring of s
// (not a copy), as gjson's Raw fields are when parsing in place.
func offsetIn(s, sub string) int {
	return int(uintptr(unsafe.Pointer(unsafe.StringData(sub))) - uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

// usageOption is what UpstreamBody appends when the body has no
// stream_options: the same bytes sjson writes.
const usageOption = `"stream_options":{"include_usage":true}`

// UpstreamBody returns the body to send upstream: model replaced by the
// upstream model name, SteeringMembers dropped and, for streams, usage
// requested so the gateway can always account tokens. body is not
// modified.
//
// The common cases (a model name that needs no JSON escaping, no
// stream_options yet, nothing to drop) are spliced in one pass into one
// allocation; the others go through sjson, with the same output.
func (r *Request) UpstreamBody(model string) ([]byte, error) {
	lay := &r.layout
	setModel := model != r.Model
	setUsage := r.Stream && !r.ClientUsage && (r.Op == OpChat || r.Op == OpCompletions)
	if !setModel && !setUsage && !lay.steering {
		return r.Body, nil
	}
	if lay.src == unsafe.SliceData(r.Body) && lay.srcLen == len(r.Body) && lay.src != nil && !lay.steering &&
		(!setModel || plainString(model)) && (!setUsage || !lay.streamOpts) {
		return r.spliceBody(model, setModel, setUsage), nil
	}
	return r.upstreamBodySlow(model, setModel, setUsage)
}

// spliceBody builds exactly what the sjson path would: the model value
// replaced in place and, when usage is set, the option appended before the
// object's closing brace (sjson then drops the whitespace around the
// object).
func (r *Request) spliceBody(model string, setModel, setUsage bool) []byte {
	body, lay := r.Body, &r.layout
	first, last := 0, len(body)
	if setUsage {
		first = bytes.IndexByte(body, '{')
		last = bytes.LastIndexByte(body, '}')
	}
	n := last - first
	if setModel {
		n += len(model) + 2 - (lay.modelEnd - lay.modelStart)
	}
	if setUsage {
		n += 2 + len(usageOption)
	}
	out := make([]byte, 0, n)
	if setModel {
		out = append(out, body[first:lay.modelStart]...)
		out = append(out, '"')
		out = append(out, model...)
		out = append(out, '"')
		out = append(out, body[lay.modelEnd:last]...)
	} else {
		out = append(out, body[first:last]...)
	}
	if setUsage {
		// The object has a "model" member, so it is not empty: sjson puts a
		// comma.
		out = append(out, ',')
		out = append(out, usageOption...)
		out = append(out, '}')
	}
	return out
}

func (r *Request) upstreamBodySlow(model string, setModel, setUsage bool) ([]byte, error) {
	body := r.Body
	if r.layout.steering {
		body = StripSteering(body)
	}
	var err error
	if setModel {
		if body, err = sjson.SetBytes(body, "model", model); err != nil {
			return nil, err
		}
	}
	if setUsage {
		if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// plainString reports whether s is written in JSON as is between quotes
// (sjson's own test for when it does not marshal a string).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
