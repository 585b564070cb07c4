package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Cohere's native v2 API, as documented at
//
//	https://docs.cohere.com/reference/chat         POST /v2/chat
//	https://docs.cohere.com/reference/chat-stream  POST /v2/chat with "stream": true
//	https://docs.cohere.com/reference/embed        POST /v2/embed
//	https://docs.cohere.com/reference/errors       error bodies {"id","message"}
//
// Requests need "Authorization: Bearer <token>" (any non-empty token). The
// Behavior knobs apply as for the OpenAI endpoints: Status (answered in
// Cohere's error shape, with Retry-After), TTFT, ChunkDelay, Chunks,
// FailAfter, Hang, Echo, ToolCall and Garbage.

// cohereRequest holds the fields of a v2 chat or embed body that shape the
// answer. Unknown fields are ignored.
type cohereRequest struct {
	Model           string          `json:"model"`
	Stream          bool            `json:"stream"`
	Messages        []message       `json:"messages"`
	MaxTokens       int             `json:"max_tokens"`
	Tools           json.RawMessage `json:"tools"`
	Texts           []string        `json:"texts"`
	InputType       string          `json:"input_type"`
	EmbeddingTypes  []string        `json:"embedding_types"`
	OutputDimension int             `json:"output_dimension"`
}

// cohere answers the native Cohere v2 API.
func (s *Server) cohere(x *exchange) {
	if x.r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		x.cohereError(http.StatusMethodNotAllowed, "method "+x.r.Method+" not allowed, use POST")
		return
	}
	auth := x.r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		x.cohereError(http.StatusUnauthorized, "no api key supplied")
		return
	}
	var q cohereRequest
	if err := json.Unmarshal(x.body, &q); err != nil {
		x.cohereError(http.StatusBadRequest, "invalid request: could not parse the JSON body: "+err.Error())
		return
	}
	if q.Model == "" {
		x.cohereError(http.StatusBadRequest, "invalid request: a model parameter is required for this endpoint.")
		return
	}
	// Share the OpenAI request view: Cohere's messages and tools have the
	// same "content" and {"type":"function","function":{...}} shapes, so
	// prompt token counting and firstToolCall work unchanged.
	x.req = request{Model: q.Model, Stream: q.Stream, Messages: q.Messages, MaxTokens: q.MaxTokens, Tools: q.Tools}
	x.model = q.Model
	b, err := s.resolve(x.r.Header, x.model)
	if err != nil {
		x.cohereError(http.StatusBadRequest, err.Error())
		return
	}
	x.b = b
	if !x.coherePreamble() {
		return
	}
	if x.r.URL.Path == "/v2/embed" {
		x.cohereEmbed(&q)
		return
	}
	x.cohereChat()
}

// coherePreamble is preamble with errors in Cohere's shape.
func (x *exchange) coherePreamble() bool {
	if x.b.Status < 400 || x.b.Hang {
		return x.preamble()
	}
	if !x.sleep(x.b.TTFT) {
		return false
	}
	if x.b.RetryAfter != "" {
		x.w.Header().Set("Retry-After", x.b.RetryAfter)
	}
	x.cohereError(x.b.Status, cohereErrorMessage(x.b.Status))
	return false
}

// cohereErrorMessage is the scripted error's message, worded like the
// examples of https://docs.cohere.com/reference/errors.
func cohereErrorMessage(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "invalid api token"
	case http.StatusTooManyRequests:
		return "You are using a Trial key, which is limited to 10 API calls / minute. (fakellm: scripted error 429)"
	case http.StatusNotFound:
		return "model not found, make sure the correct model ID was used and that you have access to the model."
	}
	return "fakellm: scripted error " + strconv.Itoa(status) + " " + http.StatusText(status)
}

// cohereError writes Cohere's error body {"id":..,"message":..}.
func (x *exchange) cohereError(status int, msg string) {
	b := make([]byte, 0, 96+len(msg))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, x.s.newUUID())
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, "}\n"...)
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	x.w.WriteHeader(status)
	_, _ = x.w.Write(b)
}

// newUUID returns a random-looking, unique version-4 style UUID.
func (s *Server) newUUID() string {
	n := s.seq.Add(1)
	hi, lo := mix64(s.seed+n), mix64(^s.seed+n)
	b := make([]byte, 0, 36)
	b = appendHex(b, hi>>32, 8)
	b = append(b, '-')
	b = appendHex(b, hi>>16, 4)
	b = append(b, '-')
	b = appendHex(b, 0x4000|(hi&0x0fff), 4)
	b = append(b, '-')
	b = appendHex(b, 0x8000|(lo>>48&0x3fff), 4)
	b = append(b, '-')
	b = appendHex(b, lo, 12)
	return string(b)
}

// cohereFinish maps the answer's finish to Cohere's finish_reason.
func cohereFinish(a *answer) string {
	switch a.finish {
	case "length":
		return "MAX_TOKENS"
	case "tool_calls":
		return "TOOL_CALL"
	}
	return "COMPLETE"
}

// cohereChat answers POST /v2/chat.
//
// Non-stream: {"id","finish_reason","message":{"role":"assistant",
// "content":[{"type":"text","text"}]} (or "tool_plan" and "tool_calls"),
// "usage":{"billed_units":{..},"tokens":{..}}}.
//
// Stream: "event: <type>\ndata: {"type":<type>,...}" events: message-start,
// content-start, content-delta per piece, content-end, message-end (with
// finish_reason and usage); for a tool call tool-plan-delta, tool-call-start,
// tool-call-delta per arguments piece, tool-call-end, message-end.
func (x *exchange) cohereChat() {
	c := cohereChat{x: x, id: x.s.newUUID(), prompt: x.s.scalePrompt(x.req.promptTokens())}
	if x.b.ToolCall {
		tc := firstToolCall(x.req.Tools)
		c.tool = &tc
		id := x.s.newID("")
		c.callID = tc.name + "_" + id[:12]
		c.ans = answer{pieces: splitEven(tc.args, x.b.Chunks), finish: "tool_calls"}
	} else {
		c.ans = x.textAnswer(x.req.MaxTokens)
	}
	if x.req.Stream {
		c.stream()
	} else {
		c.json()
	}
}

type cohereChat struct {
	x      *exchange
	id     string
	prompt int
	ans    answer
	tool   *toolCall
	callID string
}

// appendUsage appends the usage object; billed units and tokens agree.
func (c *cohereChat) appendUsage(b []byte) []byte {
	out := c.ans.tokens()
	b = append(b, `{"billed_units":{"input_tokens":`...)
	b = appendInt(b, c.prompt)
	b = appendKeyInt(b, "output_tokens", out)
	b = append(b, `},"tokens":{"input_tokens":`...)
	b = appendInt(b, c.prompt)
	b = appendKeyInt(b, "output_tokens", out)
	return append(b, "}}"...)
}

func (c *cohereChat) toolPlan() string {
	return "I will call " + c.tool.name + "."
}

func (c *cohereChat) json() {
	b := make([]byte, 0, 384+2*c.ans.size())
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.id)
	b = append(b, `,"finish_reason":"`...)
	b = append(b, cohereFinish(&c.ans)...)
	b = append(b, `","message":{"role":"assistant",`...)
	if c.tool != nil {
		b = append(b, `"tool_plan":`...)
		b = appendJSONString(b, c.toolPlan())
		b = append(b, `,"tool_calls":[{"id":`...)
		b = appendJSONString(b, c.callID)
		b = append(b, `,"type":"function","function":{"name":`...)
		b = appendJSONString(b, c.tool.name)
		b = append(b, `,"arguments":`...)
		b = appendJSONString(b, c.tool.args)
		b = append(b, `}}]}`...)
	} else {
		b = append(b, `"content":[{"type":"text","text":`...)
		b = c.ans.appendContent(b)
		b = append(b, `}]}`...)
	}
	b = append(b, `,"usage":`...)
	b = c.appendUsage(b)
	b = append(b, '}')
	c.x.writeJSON(http.StatusOK, b)
}

// appendEvent starts an event of the given type: "event: <typ>\ndata:
// {"type":"<typ>"". The caller closes the object and adds "\n\n".
func appendCohereEvent(b []byte, typ string) []byte {
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: {\"type\":\""...)
	b = append(b, typ...)
	return append(b, '"')
}

func (c *cohereChat) stream() {
	x := c.x
	x.startStream()
	buf := make([]byte, 0, 1024)

	buf = append(buf, "event: message-start\ndata: {\"id\":"...)
	buf = appendJSONString(buf, c.id)
	buf = append(buf, `,"type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}`+"\n\n"...)
	if c.tool != nil {
		buf = appendCohereEvent(buf, "tool-plan-delta")
		buf = append(buf, `,"delta":{"message":{"tool_plan":`...)
		buf = appendJSONString(buf, c.toolPlan())
		buf = append(buf, "}}}\n\n"...)
		buf = appendCohereEvent(buf, "tool-call-start")
		buf = append(buf, `,"index":0,"delta":{"message":{"tool_calls":{"id":`...)
		buf = appendJSONString(buf, c.callID)
		buf = append(buf, `,"type":"function","function":{"name":`...)
		buf = appendJSONString(buf, c.tool.name)
		buf = append(buf, `,"arguments":""}}}}}`+"\n\n"...)
	} else {
		buf = appendCohereEvent(buf, "content-start")
		buf = append(buf, `,"index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}`+"\n\n"...)
	}
	if !x.send(buf) {
		return
	}
	last := len(c.ans.pieces) - 1
	for j, piece := range c.ans.pieces {
		buf = buf[:0]
		if c.tool != nil {
			buf = appendCohereEvent(buf, "tool-call-delta")
			buf = append(buf, `,"index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":`...)
			buf = appendJSONString(buf, piece)
			buf = append(buf, "}}}}}\n\n"...)
		} else {
			buf = appendCohereEvent(buf, "content-delta")
			buf = append(buf, `,"index":0,"delta":{"message":{"content":{"text":`...)
			buf = appendJSONString(buf, piece)
			buf = append(buf, "}}}}\n\n"...)
		}
		if !x.sendContent(buf) {
			return
		}
		if x.failDue(j == last) {
			abort(x.w)
			return
		}
	}
	buf = buf[:0]
	if c.tool != nil {
		buf = appendCohereEvent(buf, "tool-call-end")
	} else {
		buf = appendCohereEvent(buf, "content-end")
	}
	buf = append(buf, `,"index":0}`+"\n\n"...)
	buf = appendCohereEvent(buf, "message-end")
	buf = append(buf, `,"delta":{"finish_reason":"`...)
	buf = append(buf, cohereFinish(&c.ans)...)
	buf = append(buf, `","usage":`...)
	buf = c.appendUsage(buf)
	buf = append(buf, "}}\n\n"...)
	x.send(buf)
}

// cohereInputTypes are the text input types of https://docs.cohere.com/reference/embed.
var cohereInputTypes = map[string]bool{
	"search_document": true, "search_query": true, "classification": true, "clustering": true,
}

// cohereEmbed answers POST /v2/embed with float embeddings:
// {"id","embeddings":{"float":[[..]]},"texts":[..],"meta":{"api_version":
// {"version":"2"},"billed_units":{"input_tokens"}},"response_type":
// "embeddings_by_type"}. Vectors come from [Embed] with output_dimension
// (default [DefaultDimensions]) dimensions.
func (x *exchange) cohereEmbed(q *cohereRequest) {
	if len(q.Texts) == 0 {
		x.cohereError(http.StatusBadRequest, "invalid request: texts must be a non-empty list of strings")
		return
	}
	if len(q.Texts) > 96 {
		x.cohereError(http.StatusBadRequest, "invalid request: texts can have at most 96 elements")
		return
	}
	if !cohereInputTypes[q.InputType] {
		x.cohereError(http.StatusBadRequest, "invalid request: valid input_type must be provided with the provided model")
		return
	}
	for _, t := range q.EmbeddingTypes {
		if t != "float" {
			x.cohereError(http.StatusBadRequest, "invalid request: fakellm only supports the float embedding type, got "+strconv.Quote(t))
			return
		}
	}
	dims := q.OutputDimension
	if dims <= 0 {
		dims = DefaultDimensions
	}
	if dims > maxDimensions {
		x.cohereError(http.StatusBadRequest, "invalid request: output_dimension must be at most "+strconv.Itoa(maxDimensions))
		return
	}
	b := make([]byte, 0, 192+len(q.Texts)*(16+dims*12))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, x.s.newUUID())
	b = append(b, `,"embeddings":{"float":[`...)
	vec := make([]float32, dims)
	words := 0
	for i, t := range q.Texts {
		embedInto(vec, t)
		words += countWords(t)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, f := range vec {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
		}
		b = append(b, ']')
	}
	b = append(b, `]},"texts":[`...)
	for i, t := range q.Texts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t)
	}
	b = append(b, `],"meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":`...)
	b = appendInt(b, words)
	b = append(b, `}},"response_type":"embeddings_by_type"}`...)
	x.writeJSON(http.StatusOK, b)
}
