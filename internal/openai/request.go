package openai

import (
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
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
	Op    Op
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
}

// ParseRequest validates body as a JSON object and reads the routing fields.
// It does not allocate beyond the model string.
func ParseRequest(op Op, body []byte) (*Request, *Error) {
	if !gjson.ValidBytes(body) {
		return nil, BadRequest("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)", "", "invalid_json")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, BadRequest("The request body must be a JSON object.", "", "invalid_json")
	}
	req := &Request{Op: op, Body: body}
	var model, stream, streamOpts, maxTokens, maxCompletion, maxOutput, messages gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			model = v
		case "stream":
			stream = v
		case "stream_options":
			streamOpts = v
		case "max_tokens":
			maxTokens = v
		case "max_completion_tokens":
			maxCompletion = v
		case "max_output_tokens":
			maxOutput = v
		case "messages":
			messages = v
		case "input":
			if op == OpResponses {
				messages = v
			}
		}
		return true
	})
	if model.Type != gjson.String || model.Str == "" {
		return nil, BadRequest("you must provide a model parameter", "model", "missing_model")
	}
	req.Model = model.Str
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
	for _, mt := range [...]gjson.Result{maxCompletion, maxTokens, maxOutput} {
		if !mt.Exists() || mt.Type == gjson.Null {
			continue
		}
		if mt.Type != gjson.Number || mt.Int() < 1 || float64(mt.Int()) != mt.Num {
			return nil, BadRequest("Invalid value for max tokens: expected a positive integer.", "max_tokens", "invalid_value")
		}
		req.MaxTokens = mt.Int()
		break
	}
	switch {
	case messages.IsArray():
		n := 0
		messages.ForEach(func(_, _ gjson.Result) bool { n++; return true })
		req.Messages = n
	case op == OpChat:
		return nil, BadRequest("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
	}
	return req, nil
}

// UpstreamBody returns the body to send upstream: model replaced by the
// upstream model name and, for streams, usage requested so the gateway can
// always account tokens. body is not modified.
func (r *Request) UpstreamBody(model string) ([]byte, error) {
	body := r.Body
	var err error
	if model != r.Model {
		if body, err = sjson.SetBytes(body, "model", model); err != nil {
			return nil, err
		}
	}
	if r.Stream && !r.ClientUsage && (r.Op == OpChat || r.Op == OpCompletions) {
		if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			return nil, err
		}
	}
	return body, nil
}
