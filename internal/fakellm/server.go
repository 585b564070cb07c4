// Package fakellm is a scriptable fake LLM upstream that speaks OpenAI's wire
// format. It is meant for end-to-end tests (mounted in-process with
// net/http/httptest), benchmarks and demos (see cmd/fakellm).
//
// Supported endpoints, each served with and without the "/v1" prefix (and
// under "/openai/v1"):
//
//	POST /v1/chat/completions   https://platform.openai.com/docs/api-reference/chat
//	POST /v1/completions        https://platform.openai.com/docs/api-reference/completions
//	POST /v1/embeddings         https://platform.openai.com/docs/api-reference/embeddings
//	POST /v1/responses          https://platform.openai.com/docs/api-reference/responses
//	GET  /v1/models             https://platform.openai.com/docs/api-reference/models/list
//	GET  /v1/models/{id}        https://platform.openai.com/docs/api-reference/models/retrieve
//
// Azure OpenAI's deployment shape is accepted as well, the deployment name
// standing in for the model:
//
//	POST /openai/deployments/{deployment}/chat/completions?api-version=...
//	POST /openai/deployments/{deployment}/completions?api-version=...
//	POST /openai/deployments/{deployment}/embeddings?api-version=...
//
// GET /_fakellm/stats returns request counters as JSON (not recorded itself).
//
// Answers are deterministic: "Hello from <Name> word3 word4 ..." with one
// word per stream chunk. The way a request is answered (errors, delays,
// truncated streams, echo, tool calls...) is chosen by a [Behavior], picked
// in this order of precedence: a one-shot behaviour queued with
// [Server.Enqueue], then X-Fake-* request headers, then the script of the
// requested model ([Server.Script]), then the default script (model ""),
// and finally the plain [Options]. The X-Fake-* headers ([HeaderStatus],
// [HeaderTTFT], [HeaderEcho]...) make the same knobs usable from curl:
//
//	curl -N localhost:9999/v1/chat/completions -H 'X-Fake-Chunk-Delay: 100ms' \
//	  -d '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
//
// Token counts are deterministic (see [CountPromptTokens]); the completion
// token count is the number of content chunks produced, per choice.
package fakellm

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default values applied by [New] to zero [Options] fields.
const (
	DefaultChunks = 5
	DefaultName   = "fakellm"
	// DefaultModel is always listed by GET /v1/models.
	DefaultModel = "fake-model"
)

// Options configures a [Server]. The zero value is usable.
type Options struct {
	// TTFT is the delay before the response headers and the first token.
	TTFT time.Duration
	// ChunkDelay is the delay between two content chunks of a stream.
	ChunkDelay time.Duration
	// Chunks is the number of content chunks (words) in an answer.
	// Default [DefaultChunks].
	Chunks int
	// Name shows up in answers ("Hello from <Name> ..."). Default [DefaultName].
	Name string
	// OnChunk, if set, is called in stream mode right after content chunk i
	// (0-based: a word, an echo piece, a tool-argument fragment or a
	// Responses output delta) has been written and flushed. It is called
	// from the handler goroutine and must be safe for concurrent use.
	OnChunk func(i int, sent time.Time)
	// RateLimit, if set, holds clients to a requests-per-window quota
	// with OpenAI's rate-limit headers and 429s (see [RateLimit]).
	RateLimit *RateLimit
	// PromptTokenScale, when > 0, multiplies the prompt tokens reported in
	// usage (rounded), so that an upstream whose tokenizer counts more
	// (or less) than one token a word can be imitated. Default: 1.
	PromptTokenScale float64
}

// Server is the fake upstream. It implements [http.Handler] and is safe for
// concurrent use. Create it with [New].
type Server struct {
	opts  Options
	words []string // precomputed answer pieces: "Hello", " from", " <Name>", " word3"...
	seed  uint64   // per-server id salt
	seq   atomic.Uint64

	mu      sync.Mutex
	scripts map[string]Behavior
	queue   []Behavior
	stats   recorder
	limiter rateLimiter
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.Chunks <= 0 {
		opts.Chunks = DefaultChunks
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	s := &Server{
		opts:    opts,
		seed:    rand.Uint64(),
		scripts: make(map[string]Behavior),
	}
	s.words = make([]string, 0, max(opts.Chunks, 64))
	for i := range cap(s.words) {
		s.words = append(s.words, s.word(i))
	}
	s.stats.init()
	return s
}

// endpoint identifies the API an incoming request targets.
type endpoint uint8

const (
	epUnknown endpoint = iota
	epChat
	epCompletions
	epEmbeddings
	epResponses
	epModels
	epModel
)

// statsPath serves the JSON counters; requests to it are not recorded.
const statsPath = "/_fakellm/stats"

// route maps a URL path to an endpoint. For Azure deployment paths it also
// returns the deployment name; for /models/{id} the model id.
func route(path string) (ep endpoint, deployment, modelID string) {
	if rest, ok := strings.CutPrefix(path, "/openai/deployments/"); ok {
		dep, op, ok := strings.Cut(rest, "/")
		if !ok || dep == "" {
			return epUnknown, "", ""
		}
		switch op {
		case "chat/completions":
			return epChat, dep, ""
		case "completions":
			return epCompletions, dep, ""
		case "embeddings":
			return epEmbeddings, dep, ""
		}
		return epUnknown, "", ""
	}
	if rest, ok := strings.CutPrefix(path, "/openai/v1/"); ok {
		path = "/" + rest
	} else if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
		path = "/" + rest
	}
	switch path {
	case "/chat/completions":
		return epChat, "", ""
	case "/completions":
		return epCompletions, "", ""
	case "/embeddings":
		return epEmbeddings, "", ""
	case "/responses":
		return epResponses, "", ""
	case "/models":
		return epModels, "", ""
	}
	if id, ok := strings.CutPrefix(path, "/models/"); ok && id != "" {
		return epModel, "", id
	}
	return epUnknown, "", ""
}

// Protocols are the protocols a fakellm server speaks: HTTP/1.1 and
// HTTP/2 with prior knowledge over cleartext (h2c, RFC 9113 section 3.3),
// so that a gateway's h2c upstream can be tested against it.
func Protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// ServeHTTP implements [http.Handler].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == statsPath {
		s.serveStats(w, r)
		return
	}
	body, err := readBody(r)
	s.begin(r, body)
	defer s.end()
	x := &exchange{s: s, w: w, r: r, body: body}
	if err != nil {
		// The client went away (or the transport failed) while sending.
		x.cancelled()
		return
	}
	if s.serveNative(x) {
		return
	}

	ep, deployment, modelID := route(r.URL.Path)
	if ep == epUnknown {
		x.writeError(http.StatusNotFound, "Invalid URL ("+r.Method+" "+r.URL.Path+")", "", "")
		return
	}
	wantMethod := http.MethodPost
	if ep == epModels || ep == epModel {
		wantMethod = http.MethodGet
	}
	if r.Method != wantMethod {
		w.Header().Set("Allow", wantMethod)
		x.writeError(http.StatusMethodNotAllowed, "Method "+r.Method+" not allowed for "+r.URL.Path+", use "+wantMethod, "", "method_not_allowed")
		return
	}
	switch ep {
	case epModels:
		s.serveModels(w)
		return
	case epModel:
		s.serveModel(x, modelID)
		return
	}

	if err := json.Unmarshal(body, &x.req); err != nil {
		x.writeError(http.StatusBadRequest, "We could not parse the JSON body of your request: "+err.Error(), "", "")
		return
	}
	x.model = x.req.Model
	if deployment != "" {
		x.model = deployment
	}
	if x.model == "" {
		x.writeError(http.StatusBadRequest, "you must provide a model parameter", "model", "")
		return
	}
	if !x.rateLimit() {
		return
	}
	b, err := s.resolve(r.Header, x.model)
	if err != nil {
		x.writeError(http.StatusBadRequest, err.Error(), "", "")
		return
	}
	x.b = b
	if !x.preamble() {
		return
	}
	switch ep {
	case epChat:
		x.chat()
	case epCompletions:
		x.completions()
	case epEmbeddings:
		x.embeddings()
	case epResponses:
		x.responses()
	}
}

// readBody reads the whole request body into a slice that is never reused.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > 0 && r.ContentLength < 64<<20 {
		b := make([]byte, r.ContentLength)
		_, err := io.ReadFull(r.Body, b)
		return b, err
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(r.Body)
	return buf.Bytes(), err
}

// request holds the fields of all supported request bodies that influence
// the answer. Unknown fields are ignored.
type request struct {
	Model               string          `json:"model"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	N                   int             `json:"n"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	MaxOutputTokens     int             `json:"max_output_tokens"`
	Messages            []message       `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
	Instructions        *string         `json:"instructions"`
	Tools               json.RawMessage `json:"tools"`
	Dimensions          int             `json:"dimensions"`
	EncodingFormat      string          `json:"encoding_format"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type message struct {
	Content json.RawMessage `json:"content"`
}

// includeUsage reports whether stream_options.include_usage was requested.
func (q *request) includeUsage() bool {
	return q.StreamOptions != nil && q.StreamOptions.IncludeUsage
}

// choices returns the number of choices to generate ("n"), within [1, 128].
func (q *request) choices() int {
	return min(max(q.N, 1), 128)
}

// newID returns prefix followed by 24 hex digits, unique per server.
func (s *Server) newID(prefix string) string {
	n := s.seq.Add(1)
	b := make([]byte, 0, len(prefix)+24)
	b = append(b, prefix...)
	b = appendHex(b, mix64(s.seed+n), 16)
	b = appendHex(b, n, 8)
	return string(b)
}

// mix64 is the SplitMix64 finaliser, a bijection used to make ids look random.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func appendHex(b []byte, v uint64, digits int) []byte {
	const hexDigits = "0123456789abcdef"
	for i := digits - 1; i >= 0; i-- {
		b = append(b, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return b
}
