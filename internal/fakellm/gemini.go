package fakellm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// gemini answers Google's Gemini API (generativelanguage, v1beta; also
// served under /v1):
//
//	POST /v1beta/models/{model}:generateContent
//	POST /v1beta/models/{model}:streamGenerateContent?alt=sse
//	POST /v1beta/models/{model}:embedContent
//	POST /v1beta/models/{model}:batchEmbedContents
//
// https://ai.google.dev/api/generate-content
// https://ai.google.dev/api/embeddings
//
// The API key is read from the x-goog-api-key header or the "key" query
// parameter; without one the answer is Google's 403 PERMISSION_DENIED.
// Errors use Google's envelope {"error":{"code","message","status",
// "details"}}; a scripted Status with a numeric RetryAfter carries a
// google.rpc.RetryInfo detail (retryDelay "30s") and, like Google, no
// Retry-After header (a RetryAfter that is not a number of seconds is sent
// as the header instead).
//
// generateContent answers a GenerateContentResponse: one candidate per
// generationConfig.candidateCount, {"content":{"parts":[{"text"}],"role":
// "model"},"finishReason","index"}, usageMetadata (promptTokenCount,
// candidatesTokenCount, totalTokenCount), modelVersion and responseId,
// pretty-printed as Google does. finishReason is STOP, or MAX_TOKENS when
// generationConfig.maxOutputTokens cut the canned answer.
//
// streamGenerateContent?alt=sse sends one "data: {GenerateContentResponse}"
// event per content chunk, each line ended by CRLF as Google's servers do,
// with a cumulative usageMetadata in every event and the finishReason in the
// last one; there is no [DONE]. Without alt=sse the same responses are
// streamed as a JSON array.
//
// ToolCall answers a functionCall part (whole, in one chunk) for the first
// functionDeclaration of the request's tools, its args built from the
// declared parameters (see [Behavior.ToolCall]). Echo, Chunks, ChunkDelay,
// TTFT, FailAfter (the stream is cut without the finishReason event), Hang
// and Garbage behave as on the OpenAI endpoints.
//
// Prompt tokens: every content counts 3 plus the words of its text parts;
// the system instruction counts its words. Completion tokens: the number of
// content chunks per candidate.
//
// The embeddings methods return [Embed] of each content's text (its text
// parts joined by spaces) with outputDimensionality dimensions
// ([DefaultDimensions] by default); batchEmbedContents requires every
// request's model to be "models/{model}" of the URL.
func (s *Server) gemini(x *exchange) {
	p := x.r.URL.Path
	rest, ok := strings.CutPrefix(p, "/v1beta/")
	if !ok {
		rest, _ = strings.CutPrefix(p, "/v1/")
	}
	i := strings.LastIndexByte(rest, ':')
	name, method := rest[:i], rest[i+1:]
	model, ok := strings.CutPrefix(name, "models/")
	switch {
	case !ok || model == "" || strings.Contains(model, "/"):
		x.writeGoogleError(http.StatusNotFound, "Invalid resource name "+strconv.Quote(name)+".", nil)
		return
	case method != "generateContent" && method != "streamGenerateContent" &&
		method != "embedContent" && method != "batchEmbedContents":
		x.writeGoogleError(http.StatusNotFound, "Method "+strconv.Quote(method)+" not found for "+name+".", nil)
		return
	case x.r.Method != http.MethodPost:
		x.w.Header().Set("Allow", http.MethodPost)
		x.writeGoogleError(http.StatusMethodNotAllowed, "Method "+x.r.Method+" not allowed, use POST.", nil)
		return
	}
	if x.r.Header.Get("X-Goog-Api-Key") == "" && x.r.URL.Query().Get("key") == "" {
		x.writeGoogleError(http.StatusForbidden, "Method doesn't allow unregistered callers (callers without established identity). "+
			"Please use API Key or other form of API consumer identity to call this API.", nil)
		return
	}
	var q geminiRequest
	if err := json.Unmarshal(x.body, &q); err != nil {
		x.writeGoogleError(http.StatusBadRequest, "Invalid JSON payload received. "+err.Error(), nil)
		return
	}
	x.model = model
	var msg string
	switch method {
	case "generateContent", "streamGenerateContent":
		msg = q.validateGenerate()
	case "embedContent":
		if q.Content == nil {
			msg = "* EmbedContentRequest.content: content is not specified"
		}
	case "batchEmbedContents":
		msg = q.validateBatch(model)
	}
	if msg != "" {
		x.writeGoogleError(http.StatusBadRequest, msg, nil)
		return
	}
	b, err := s.resolve(x.r.Header, model)
	if err != nil {
		x.writeGoogleError(http.StatusBadRequest, err.Error(), nil)
		return
	}
	x.b = b
	if !x.geminiPreamble() {
		return
	}
	switch method {
	case "generateContent":
		x.geminiGenerate(&q, false)
	case "streamGenerateContent":
		x.geminiGenerate(&q, true)
	case "embedContent":
		x.geminiEmbed([]geminiEmbedRequest{{Content: *q.Content, OutputDimensionality: q.OutputDimensionality, OutputSnake: q.OutputSnake}}, false)
	case "batchEmbedContents":
		x.geminiEmbed(q.Requests, true)
	}
}

// geminiRequest holds the fields of the Gemini request bodies that matter
// here. Google accepts both the lowerCamel and the snake_case spelling of
// field names; both are read.
type geminiRequest struct {
	Contents          []geminiContent  `json:"contents"`
	SystemInstruction *geminiContent   `json:"systemInstruction"`
	SystemSnake       *geminiContent   `json:"system_instruction"`
	Tools             []geminiTool     `json:"tools"`
	GenerationConfig  *geminiGenConfig `json:"generationConfig"`
	GenerationSnake   *geminiGenConfig `json:"generation_config"`

	// embedContent / batchEmbedContents
	Content              *geminiContent       `json:"content"`
	OutputDimensionality int                  `json:"outputDimensionality"`
	OutputSnake          int                  `json:"output_dimensionality"`
	Requests             []geminiEmbedRequest `json:"requests"`
}

type geminiContent struct {
	Role  string       `json:"role"`
	Parts []geminiPart `json:"parts"`
}

// geminiPart is a Part; exactly one of its data fields must be set.
type geminiPart struct {
	Text             *string         `json:"text"`
	InlineData       json.RawMessage `json:"inlineData"`
	InlineSnake      json.RawMessage `json:"inline_data"`
	FileData         json.RawMessage `json:"fileData"`
	FileSnake        json.RawMessage `json:"file_data"`
	FunctionCall     json.RawMessage `json:"functionCall"`
	FunctionCallSn   json.RawMessage `json:"function_call"`
	FunctionResponse json.RawMessage `json:"functionResponse"`
	FunctionRespSn   json.RawMessage `json:"function_response"`
}

func (p *geminiPart) fields() int {
	n := 0
	if p.Text != nil {
		n++
	}
	for _, f := range [...]json.RawMessage{p.InlineData, p.InlineSnake, p.FileData, p.FileSnake,
		p.FunctionCall, p.FunctionCallSn, p.FunctionResponse, p.FunctionRespSn} {
		if len(f) > 0 && string(f) != "null" {
			n++
		}
	}
	return n
}

type geminiTool struct {
	FunctionDeclarations []geminiFunction `json:"functionDeclarations"`
	FunctionSnake        []geminiFunction `json:"function_declarations"`
}

type geminiFunction struct {
	Name           string          `json:"name"`
	Parameters     json.RawMessage `json:"parameters"`
	ParametersJSON json.RawMessage `json:"parametersJsonSchema"`
}

type geminiGenConfig struct {
	MaxOutputTokens int `json:"maxOutputTokens"`
	MaxSnake        int `json:"max_output_tokens"`
	CandidateCount  int `json:"candidateCount"`
	CandidateSnake  int `json:"candidate_count"`
}

type geminiEmbedRequest struct {
	Model                string        `json:"model"`
	Content              geminiContent `json:"content"`
	OutputDimensionality int           `json:"outputDimensionality"`
	OutputSnake          int           `json:"output_dimensionality"`
}

// text joins the content's text parts with spaces.
func (c *geminiContent) text() string {
	var sb strings.Builder
	for _, p := range c.Parts {
		if p.Text != nil {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(*p.Text)
		}
	}
	return sb.String()
}

// validateGenerate checks what Google's API checks on the contents and
// returns its error message, or "".
func (q *geminiRequest) validateGenerate() string {
	if len(q.Contents) == 0 {
		return "* GenerateContentRequest.contents: contents is not specified"
	}
	for i, c := range q.Contents {
		at := "GenerateContentRequest.contents[" + strconv.Itoa(i) + "]"
		if c.Role != "" && c.Role != "user" && c.Role != "model" {
			return "Please use a valid role: user, model."
		}
		if len(c.Parts) == 0 {
			return "* " + at + ".parts: contents.parts must not be empty."
		}
		for j, p := range c.Parts {
			switch n := p.fields(); {
			case n == 0:
				return "* " + at + ".parts[" + strconv.Itoa(j) + "].data: required oneof field 'data' must have one initialized field"
			case n > 1:
				return "* " + at + ".parts[" + strconv.Itoa(j) + "].data: oneof field 'data' is already set. Cannot set 'text'"
			case p.Text != nil && *p.Text == "":
				return "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again."
			}
		}
	}
	return ""
}

func (q *geminiRequest) validateBatch(model string) string {
	if len(q.Requests) == 0 {
		return "* BatchEmbedContentsRequest.requests: requests is not specified"
	}
	for i, r := range q.Requests {
		if r.Model != "models/"+model {
			return "* BatchEmbedContentsRequest.requests[" + strconv.Itoa(i) + "].model: the model of every request must be \"models/" +
				model + "\", the model of the batch."
		}
	}
	return ""
}

func (q *geminiRequest) genConfig() geminiGenConfig {
	var g geminiGenConfig
	for _, c := range [...]*geminiGenConfig{q.GenerationConfig, q.GenerationSnake} {
		if c != nil {
			g.MaxOutputTokens = max(g.MaxOutputTokens, c.MaxOutputTokens, c.MaxSnake)
			g.CandidateCount = max(g.CandidateCount, c.CandidateCount, c.CandidateSnake)
		}
	}
	return g
}

// promptTokens counts 3 plus the words of the text parts per content, and
// the words of the system instruction.
func (q *geminiRequest) promptTokens() int {
	n := 0
	for i := range q.Contents {
		n += 3 + countWords(q.Contents[i].text())
	}
	for _, si := range [...]*geminiContent{q.SystemInstruction, q.SystemSnake} {
		if si != nil {
			n += countWords(si.text())
		}
	}
	return n
}

// firstFunction returns the call the fake model makes for ToolCall.
func (q *geminiRequest) firstFunction() toolCall {
	for _, t := range q.Tools {
		for _, decls := range [...][]geminiFunction{t.FunctionDeclarations, t.FunctionSnake} {
			for _, f := range decls {
				if f.Name == "" {
					continue
				}
				params := f.Parameters
				if len(params) == 0 {
					params = f.ParametersJSON
				}
				return toolCall{name: f.Name, args: buildArgs(params)}
			}
		}
	}
	return toolCall{name: fallbackToolName, args: fallbackToolArgs}
}

// googleStatus is the google.rpc.Code name Google uses with an HTTP status.
// https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
func googleStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	case http.StatusInternalServerError:
		return "INTERNAL"
	}
	if code >= 400 && code < 500 {
		return "FAILED_PRECONDITION"
	}
	return "UNKNOWN"
}

// writeGoogleError writes Google's error envelope (a google.rpc.Status),
// pretty-printed; details are raw JSON objects.
func (x *exchange) writeGoogleError(code int, msg string, details [][]byte) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{"code":`...)
	b = appendInt(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"status":"`...)
	b = append(b, googleStatus(code)...)
	b = append(b, '"')
	if len(details) > 0 {
		b = append(b, `,"details":[`...)
		for i, d := range details {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, d...)
		}
		b = append(b, ']')
	}
	b = append(b, "}}"...)
	b = indentJSON(b)
	h := x.w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	x.w.WriteHeader(code)
	_, _ = x.w.Write(b)
}

// indentJSON pretty-prints b with two spaces, as Google's JSON answers are.
func indentJSON(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b) * 2)
	if json.Indent(&buf, b, "", "  ") != nil {
		return b
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// geminiPreamble is preamble with Google's error shape: Hang, TTFT,
// Status (+RetryAfter as a RetryInfo detail), Garbage.
func (x *exchange) geminiPreamble() bool {
	if x.b.Hang {
		<-x.r.Context().Done()
		x.cancelled()
		return false
	}
	if !x.sleep(x.b.TTFT) {
		return false
	}
	if x.b.Status >= 400 {
		var details [][]byte
		if ra := x.b.RetryAfter; ra != "" {
			if secs, err := strconv.ParseFloat(ra, 64); err == nil && secs >= 0 {
				d := []byte(`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"`)
				d = strconv.AppendFloat(d, secs, 'f', -1, 64)
				details = append(details, append(d, `s"}`...))
			} else {
				x.w.Header().Set("Retry-After", ra)
			}
		}
		x.writeGoogleError(x.b.Status, "fakellm: scripted error "+strconv.Itoa(x.b.Status)+" "+http.StatusText(x.b.Status), details)
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

// geminiAnswer is the state of a generateContent answer.
type geminiAnswer struct {
	x      *exchange
	id     string
	n      int // candidates
	prompt int
	ans    answer
	tool   *toolCall
}

// geminiGenerate answers generateContent (stream false) or
// streamGenerateContent.
func (x *exchange) geminiGenerate(q *geminiRequest, stream bool) {
	cfg := q.genConfig()
	g := geminiAnswer{
		x:      x,
		id:     x.s.newID(""),
		n:      min(max(cfg.CandidateCount, 1), 128),
		prompt: x.s.scalePrompt(q.promptTokens()),
	}
	if x.b.ToolCall {
		tc := q.firstFunction()
		g.tool = &tc
		g.ans = answer{pieces: []string{""}, finish: "stop"}
	} else {
		g.ans = x.textAnswer(cfg.MaxOutputTokens)
	}
	if !stream {
		b := g.appendResponse(make([]byte, 0, 512+g.n*(160+2*g.ans.size())), 0, len(g.ans.pieces), true)
		x.writeJSON(http.StatusOK, indentJSON(b))
		return
	}
	sse := x.r.URL.Query().Get("alt") == "sse"
	if sse {
		x.startStream()
	} else {
		x.w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		x.w.WriteHeader(http.StatusOK)
		x.rc = http.NewResponseController(x.w)
	}
	buf := make([]byte, 0, 1024)
	last := len(g.ans.pieces) - 1
	for j := range g.ans.pieces {
		cut := x.b.FailAfter > 0 && (j+1 >= x.b.FailAfter || j == last)
		buf = buf[:0]
		switch {
		case sse:
			buf = append(buf, "data: "...)
		case j == 0:
			buf = append(buf, '[')
		default:
			buf = append(buf, ",\r\n"...)
		}
		buf = g.appendResponse(buf, j, j+1, j == last && !cut)
		switch {
		case sse:
			buf = append(buf, "\r\n\r\n"...)
		case j == last && !cut:
			buf = append(buf, ']')
		}
		if !x.sendContent(buf) {
			return
		}
		if cut {
			abort(x.w)
			return
		}
	}
}

// appendResponse appends a GenerateContentResponse holding the pieces
// [from, to) of every candidate, with the finishReason when final, and the
// usage of the pieces up to to.
func (g *geminiAnswer) appendResponse(b []byte, from, to int, final bool) []byte {
	b = append(b, `{"candidates":[`...)
	for i := range g.n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"content":{"parts":[`...)
		if g.tool != nil {
			b = append(b, `{"functionCall":{"name":`...)
			b = appendJSONString(b, g.tool.name)
			b = append(b, `,"args":`...)
			b = append(b, g.tool.args...)
			b = append(b, `}}`...)
		} else {
			b = append(b, `{"text":"`...)
			for _, p := range g.ans.pieces[from:to] {
				b = appendEscaped(b, p)
			}
			b = append(b, `"}`...)
		}
		b = append(b, `],"role":"model"}`...)
		if final {
			finish := "STOP"
			if g.ans.finish == "length" {
				finish = "MAX_TOKENS"
			}
			b = append(b, `,"finishReason":"`...)
			b = append(b, finish...)
			b = append(b, '"')
		}
		b = append(b, `,"index":`...)
		b = appendInt(b, i)
		b = append(b, '}')
	}
	out := to * g.n
	b = append(b, `],"usageMetadata":{"promptTokenCount":`...)
	b = appendInt(b, g.prompt)
	b = appendKeyInt(b, "candidatesTokenCount", out)
	b = appendKeyInt(b, "totalTokenCount", g.prompt+out)
	b = append(b, `,"promptTokensDetails":[{"modality":"TEXT","tokenCount":`...)
	b = appendInt(b, g.prompt)
	b = append(b, `}]},"modelVersion":`...)
	b = appendJSONString(b, g.x.model)
	b = append(b, `,"responseId":`...)
	b = appendJSONString(b, g.id)
	return append(b, '}')
}

// geminiEmbed answers embedContent (batch false: {"embedding":{"values"}})
// or batchEmbedContents ({"embeddings":[{"values"}]}).
func (x *exchange) geminiEmbed(reqs []geminiEmbedRequest, batch bool) {
	b := make([]byte, 0, 256)
	if batch {
		b = append(b, `{"embeddings":[`...)
	} else {
		b = append(b, `{"embedding":`...)
	}
	for i, r := range reqs {
		dims := max(r.OutputDimensionality, r.OutputSnake)
		if dims <= 0 {
			dims = DefaultDimensions
		}
		if dims > maxDimensions {
			x.writeGoogleError(http.StatusBadRequest, "outputDimensionality must be at most "+strconv.Itoa(maxDimensions), nil)
			return
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"values":[`...)
		for j, f := range Embed(r.Content.text(), dims) {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
		}
		b = append(b, "]}"...)
	}
	if batch {
		b = append(b, ']')
	}
	b = append(b, '}')
	x.writeJSON(http.StatusOK, indentJSON(b))
}
