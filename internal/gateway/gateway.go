// Package gateway is the request pipeline: it reads an OpenAI-compatible
// request, routes its model through the routing table, calls providers with
// retries, backoff, Retry-After and fallbacks, and streams the answer back
// while teeing usage to accounting.
package gateway

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	antdialect "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect/anthropic"
	oaidialect "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/glob"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

// Response headers set on every proxied answer.
const (
	// Spelled in Go's canonical form so Header.Set need not rewrite them;
	// on the wire (and case-insensitively) they are X-AI-Gateway-*.
	HeaderProvider = "X-Ai-Gateway-Provider"
	HeaderModel    = "X-Ai-Gateway-Model"
	HeaderAttempts = "X-Ai-Gateway-Attempts"
)

// Defaults.
const (
	DefaultMaxBodyBytes  = 8 << 20
	DefaultMaxMessages   = 2048
	DefaultDeadline      = 2 * time.Minute
	DefaultRetryBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultMaxRetryAfter = 10 * time.Second
)

// Config configures a Gateway. Zero values take the defaults.
type Config struct {
	Providers map[string]provider.Provider
	Routes    *route.Table
	// Health is the circuit breaker; shared across reloads by the caller.
	Health *route.Health
	// MaxBodyBytes bounds request bodies (413 above).
	MaxBodyBytes int64
	// MaxMessages bounds messages per request (400 above).
	MaxMessages int
	// MaxTokens caps max_tokens a client may ask for (400 above); 0 = no cap.
	MaxTokens int64
	// MaxJSONDepth bounds the nesting of request bodies (400 above).
	// Default: jsonraw.DefaultMaxDepth; at most jsonraw.MaxDepthLimit.
	MaxJSONDepth int
	// Redactor removes configured secrets from upstream error text before
	// it reaches a client or a log.
	Redactor *provider.Redactor
	// Deadline bounds the time spent on attempts, backoff and fallbacks
	// before a first byte is sent. It never cuts a healthy stream.
	Deadline time.Duration
	// RetryBackoff is the base of the exponential backoff (full jitter);
	// MaxBackoff caps one wait.
	RetryBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps how long the gateway waits on an upstream's
	// Retry-After; longer hints cool the target down and move on.
	MaxRetryAfter time.Duration
	Logger        *zap.Logger
	// Created is the "created" timestamp of models in /v1/models.
	Created int64
	// Models, when set, restricts the served models to these names/globs.
	Models []string
	// Guard enforces gateway keys, limits and budgets; nil = open gateway.
	Guard *Guard
	// Stages run after the admission, in order, before the attempt loop
	// (see Stage).
	Stages []Stage
	// Drain, when set, ends live streams with a terminal error event when
	// the process exits; shared by the caller across reloads.
	Drain *Drain
	// Telemetry traces requests; nil when tracing is off.
	Telemetry Telemetry
	// Calibration learns how the token estimate compares with the
	// upstreams' reported usage (calibrate.go); nil: no calibration.
	Calibration *tokens.Calibration
}

// Gateway serves OpenAI-compatible requests. It is safe for concurrent use.
type Gateway struct {
	cfg Config
	log *zap.Logger
}

// Info describes how a request was served, for placeholders and logs.
type Info struct {
	Format        provider.Format // the client's wire format
	Op            openai.Op
	Key           string // gateway key name ("" when the gateway is open)
	Model         string // requested model
	Route         string // routing table entry that matched (pattern)
	Provider      string // provider that answered (or last tried)
	UpstreamModel string
	Attempts      int
	Stream        bool
	Usage         openai.Usage
	TTFT          time.Duration // time to first streamed event / to the answer
	// Status is the HTTP status the client got: 499 when it left first,
	// 599 when a stream broke after its 200 (for logs and metrics).
	Status int
	// Outcome is how the request ended.
	Outcome Outcome
	// Limited is the error code when the guard refused the request.
	Limited string

	// What the stages did, filled by each (telemetry, metrics, headers
	// and placeholders read them once the request has ended).

	// Cache is the response cache's verdict: "hit", "semantic-hit",
	// "miss", "bypass" or "refresh"; "" when the request was not cached.
	Cache string
	// CacheSaved is the usage a cache hit did not spend (the stored
	// answer's), and CacheSavedUSD its price.
	CacheSaved    openai.Usage
	CacheSavedUSD float64
	// RAG is "used" when retrieved context was injected, "skipped" when
	// retrieval failed and the prompt went as it was; RAGSources the
	// injected chunks in rank order ("<source>#<chunk index>"), RAGTime
	// the retrieval's duration.
	RAG        string
	RAGSources []string
	RAGTime    time.Duration
	// Guardrails counts what the guardrails did, by action and detector
	// (e.g. "masked=email:2,card:1"), never the values; Truncated what
	// truncation dropped ("messages=6 tokens=3120").
	Guardrails string
	Truncated  string

	// Hedges counts the attempts started beside a slow one (hedged
	// requests); Attempts counts them too.
	Hedges int
}

// New returns a gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Routes == nil {
		return nil, errors.New("gateway: no routing table")
	}
	if cfg.Health == nil {
		cfg.Health = route.NewHealth(0, 0)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.MaxJSONDepth <= 0 {
		cfg.MaxJSONDepth = jsonraw.DefaultMaxDepth
	}
	cfg.MaxJSONDepth = min(cfg.MaxJSONDepth, jsonraw.MaxDepthLimit)
	if cfg.Deadline <= 0 {
		cfg.Deadline = DefaultDeadline
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Created == 0 {
		cfg.Created = time.Now().Unix()
	}
	if cfg.Guard != nil {
		cfg.Guard.defaults()
		cfg.Guard.cal = cfg.Calibration
	}
	return &Gateway{cfg: cfg, log: cfg.Logger}, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var info Info
	g.Serve(w, r, &info)
}

// endpoint is what a path serves: an operation in a client's dialect, or
// the models list.
type endpoint struct {
	op      openai.Op
	dialect dialect.Dialect
	models  bool
}

var (
	openaiDialect    = oaidialect.Dialect{}
	anthropicDialect = antdialect.Dialect{}
	// endpoints by path below /v1.
	endpoints = map[string]endpoint{
		"/chat/completions": {op: openai.OpChat, dialect: openaiDialect},
		"/completions":      {op: openai.OpCompletions, dialect: openaiDialect},
		"/embeddings":       {op: openai.OpEmbeddings, dialect: openaiDialect},
		"/responses":        {op: openai.OpResponses, dialect: openaiDialect},
		"/messages":         {op: openai.OpChat, dialect: anthropicDialect},
		"/models":           {dialect: openaiDialect, models: true},
	}
)

// Serve handles one request and fills info. The path may carry any prefix
// before the API path (e.g. /openai/v1/chat/completions).
//
// A request reads as: the endpoint picks the client's dialect, which parses
// the body; the stages run in order (authentication came first, then the
// request checks, the routing table, admission, and any configured
// stages); the attempt loop calls providers; the reply goes through the taps
// to the dialect, which writes it.
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request, info *Info) {
	path := r.URL.Path
	if i := strings.Index(path, "/v1/"); i >= 0 {
		path = path[i+3:]
	}
	ep, ok := endpoints[path]
	modelID := ""
	if !ok {
		if modelID, ok = strings.CutPrefix(path, "/models/"); !ok || modelID == "" {
			fail(w, openaiDialect, info, &openai.Error{Status: http.StatusNotFound, Type: openai.TypeInvalidRequest, Code: "unknown_url",
				Message: "Unknown request URL: " + r.Method + " " + r.URL.Path + "."})
			return
		}
		ep = endpoint{dialect: openaiDialect, models: true}
	}
	d := ep.dialect
	info.Format = d.Format()
	if ep.models {
		if !allow(w, r, d, info, http.MethodGet, http.MethodHead) {
			return
		}
	} else if !allow(w, r, d, info, http.MethodPost) {
		return
	}
	keyAt := g.traceNow()
	key, oerr := g.cfg.Guard.authenticate(r)
	keyDone := g.traceNow()
	if oerr != nil {
		fail(w, d, info, oerr)
		return
	}
	if key != nil {
		info.Key = key.Name
	}
	if ep.models {
		if modelID == "" {
			g.listModels(w, key, info)
		} else {
			g.getModel(w, key, modelID, info)
		}
		return
	}
	info.Op = ep.op
	body, oerr := g.readBody(r)
	if oerr != nil {
		fail(w, d, info, oerr)
		return
	}
	x := &Exchange{Key: key, Info: info, g: g, w: w, r: r, d: d, start: time.Now()}
	if oerr := d.Parse(&x.req, ep.op, body, r.Header, g.cfg.MaxJSONDepth); oerr != nil {
		fail(w, d, info, oerr)
		return
	}
	req := &x.req
	x.Req = req
	x.taps = x.tapBuf[:0]
	x.usage.info = info
	x.AddTap(&x.usage)
	info.Model, info.Stream = req.OpenAI.Model, req.OpenAI.Stream
	if oerr := g.check(x); oerr != nil {
		fail(w, d, info, oerr)
		return
	}
	g.startTrace(x, keyAt, keyDone)
	reply, oerr := g.runStages(x)
	if oerr != nil {
		x.end(OutcomeRefused)
		g.fail(w, d, info, oerr)
		return
	}
	if reply == nil {
		if req.OpenAI.Stream && g.cfg.Drain != nil {
			// The drain may end the request: its attempts run on a context
			// the drain cancels.
			var id uint64
			x.r, id = g.cfg.Drain.track(x.r)
			defer g.cfg.Drain.untrack(id)
		}
		var o Outcome
		if reply, o, oerr = g.attempt(x); reply == nil {
			if oerr != nil {
				g.fail(w, d, info, oerr)
			}
			x.end(o)
			return
		}
		if x.onReply != nil {
			reply = x.onReply(reply)
		}
		releaseBody(x, reply)
	}
	x.end(g.serveReply(x, reply))
}

// check holds the request to the gateway's bounds, finds its route and
// checks the key may use its model.
func (g *Gateway) check(x *Exchange) *openai.Error {
	req := x.Req.OpenAI
	if req.Messages > g.cfg.MaxMessages {
		return openai.BadRequest("Too many messages: the gateway accepts at most "+itoa(int64(g.cfg.MaxMessages))+".", "messages", "too_many_messages")
	}
	if g.cfg.MaxTokens > 0 && req.MaxTokens > g.cfg.MaxTokens {
		return openai.BadRequest("max_tokens is too large: the gateway accepts at most "+itoa(g.cfg.MaxTokens)+".", "max_tokens", "max_tokens_exceeded")
	}
	rt, ok := g.cfg.Routes.Lookup(req.Model)
	if !ok || !g.allowed(x.Key, req.Model) {
		return openai.ModelNotFound(req.Model)
	}
	x.Route = rt
	x.Info.Route = rt.Pattern
	return nil
}

func (g *Gateway) readBody(r *http.Request) ([]byte, *openai.Error) {
	max := g.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return nil, g.tooLarge()
	}
	size := r.ContentLength
	if size < 0 {
		size = 4096
	}
	// One buffer sized by Content-Length (+1 so that the read that sees EOF
	// needs no growth), read into directly, never past max+1 bytes.
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):min(int64(cap(buf)), max+1)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return nil, g.tooLarge()
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, openai.BadRequest("Could not read the request body.", "", "invalid_body")
		}
	}
}

func (g *Gateway) tooLarge() *openai.Error {
	return &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest, Code: "request_too_large",
		Message: "Request body too large: the limit is " + itoa(g.cfg.MaxBodyBytes) + " bytes."}
}

// allowed reports whether this gateway, and the key if any, serve model.
func (g *Gateway) allowed(key *auth.Key, model string) bool {
	if key != nil && !key.Policy.AllowsModel(model) {
		return false
	}
	if len(g.cfg.Models) == 0 {
		return true
	}
	for _, p := range g.cfg.Models {
		if glob.Match(p, model) {
			return true
		}
	}
	return false
}

// allow checks the method, answering 405 with Allow otherwise.
func allow(w http.ResponseWriter, r *http.Request, d dialect.Dialect, info *Info, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	fail(w, d, info, &openai.Error{Status: http.StatusMethodNotAllowed, Type: openai.TypeInvalidRequest, Code: "method_not_allowed",
		Message: "Method " + r.Method + " is not allowed here; use " + strings.Join(methods, " or ") + "."})
	return false
}

// fail answers e in the client's dialect.
func fail(w http.ResponseWriter, d dialect.Dialect, info *Info, e *openai.Error) {
	info.Status = e.Status
	d.WriteError(w, e)
}
