// Package gateway is the request pipeline: it reads an OpenAI-compatible
// request, routes its model through the routing table, calls providers with
// retries, backoff, Retry-After and fallbacks, and streams the answer back
// while teeing usage to accounting.
package gateway

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/glob"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
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
	// Drain, when set, ends live streams with a terminal error event when
	// the process exits; shared by the caller across reloads.
	Drain *Drain
}

// Gateway serves OpenAI-compatible requests. It is safe for concurrent use.
type Gateway struct {
	cfg Config
	log *zap.Logger
}

// Format is the wire format a client speaks.
type Format uint8

// Client wire formats.
const (
	FormatOpenAI    Format = iota
	FormatAnthropic        // POST /v1/messages
)

// Info describes how a request was served, for placeholders and logs.
type Info struct {
	Format        Format
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
	Status        int
	// Limited is the error code when the guard refused the request.
	Limited string
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
	}
	return &Gateway{cfg: cfg, log: cfg.Logger}, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var info Info
	g.Serve(w, r, &info)
}

// Serve handles one request and fills info. The path may carry any prefix
// before the OpenAI path (e.g. /openai/v1/chat/completions).
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request, info *Info) {
	path := r.URL.Path
	if i := strings.Index(path, "/v1/"); i >= 0 {
		path = path[i+3:]
	}
	var op openai.Op
	modelID, models := "", false
	switch path {
	case "/chat/completions":
		op = openai.OpChat
	case "/completions":
		op = openai.OpCompletions
	case "/embeddings":
		op = openai.OpEmbeddings
	case "/responses":
		op = openai.OpResponses
	case "/messages":
		op, info.Format = openai.OpChat, FormatAnthropic
	case "/models":
		models = true
	default:
		var ok bool
		if modelID, ok = strings.CutPrefix(path, "/models/"); !ok || modelID == "" {
			fail(w, info, &openai.Error{Status: http.StatusNotFound, Type: openai.TypeInvalidRequest, Code: "unknown_url",
				Message: "Unknown request URL: " + r.Method + " " + r.URL.Path + "."})
			return
		}
		models = true
	}
	if models {
		if !allow(w, r, info, http.MethodGet, http.MethodHead) {
			return
		}
	} else if !allow(w, r, info, http.MethodPost) {
		return
	}
	key, oerr := g.cfg.Guard.authenticate(r)
	if oerr != nil {
		fail(w, info, oerr)
		return
	}
	if key != nil {
		info.Key = key.Name
	}
	if models {
		if modelID == "" {
			g.listModels(w, key, info)
		} else {
			g.getModel(w, key, modelID, info)
		}
		return
	}
	info.Op = op
	body, oerr := g.readBody(r)
	if oerr != nil {
		fail(w, info, oerr)
		return
	}
	var err error
	var native []byte
	if info.Format == FormatAnthropic {
		if oerr := openai.CheckBody(body, g.cfg.MaxJSONDepth); oerr != nil {
			fail(w, info, oerr)
			return
		}
		native = openai.StripSteering(body)
		if body, err = anthropic.RequestToOpenAI(native); err != nil {
			oe, ok := err.(*openai.Error)
			if !ok {
				oe = openai.BadRequest("The request could not be translated.", "", "invalid_request")
			}
			fail(w, info, oe)
			return
		}
	}
	req, oerr := openai.ParseRequest(op, body, g.cfg.MaxJSONDepth)
	if oerr != nil {
		fail(w, info, oerr)
		return
	}
	info.Model, info.Stream = req.Model, req.Stream
	if req.Messages > g.cfg.MaxMessages {
		fail(w, info, openai.BadRequest("Too many messages: the gateway accepts at most "+itoa(int64(g.cfg.MaxMessages))+".", "messages", "too_many_messages"))
		return
	}
	if g.cfg.MaxTokens > 0 && req.MaxTokens > g.cfg.MaxTokens {
		fail(w, info, openai.BadRequest("max_tokens is too large: the gateway accepts at most "+itoa(g.cfg.MaxTokens)+".", "max_tokens", "max_tokens_exceeded"))
		return
	}
	rt, ok := g.cfg.Routes.Lookup(req.Model)
	if !ok || !g.allowed(key, req.Model) {
		fail(w, info, openai.ModelNotFound(req.Model))
		return
	}
	info.Route = rt.Pattern
	if g.cfg.Guard != nil {
		adm, oerr := g.cfg.Guard.admit(r.Context(), w.Header(), key, req, rt)
		if oerr != nil {
			info.Limited = oerr.Code
			fail(w, info, oerr)
			return
		}
		defer func() { adm.finish(r.Context(), outcomeOf(info.Status), info) }()
	}
	if req.Stream && g.cfg.Drain != nil {
		g.proxyDrainable(w, r, key, req, native, rt, info)
		return
	}
	g.proxy(w, r, key, req, native, rt, info)
}

// outcomeOf tells how an admitted request ended from the status it
// recorded: 599 a stream that broke after its 200, 499 a client that left.
func outcomeOf(status int) Outcome {
	switch status {
	case http.StatusOK:
		return OutcomeCompleted
	case 599:
		return OutcomeStreamBroken
	case 499:
		return OutcomeClientGone
	}
	return OutcomeUpstreamError
}

func (g *Gateway) readBody(r *http.Request) ([]byte, *openai.Error) {
	max := g.cfg.MaxBodyBytes
	tooLarge := &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest, Code: "request_too_large",
		Message: "Request body too large: the limit is " + itoa(max) + " bytes."}
	if r.ContentLength > max {
		return nil, tooLarge
	}
	size := r.ContentLength
	if size < 0 {
		size = 4096
	}
	buf := make([]byte, 0, size+1)
	body := http.MaxBytesReader(nil, r.Body, max)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge
			}
			if err == io.EOF {
				return buf, nil
			}
			return nil, openai.BadRequest("Could not read the request body.", "", "invalid_body")
		}
	}
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
func allow(w http.ResponseWriter, r *http.Request, info *Info, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	fail(w, info, &openai.Error{Status: http.StatusMethodNotAllowed, Type: openai.TypeInvalidRequest, Code: "method_not_allowed",
		Message: "Method " + r.Method + " is not allowed here; use " + strings.Join(methods, " or ") + "."})
	return false
}

// fail answers with an error in the client's format: OpenAI's envelope, or
// Anthropic's for /v1/messages.
func fail(w http.ResponseWriter, info *Info, e *openai.Error) {
	info.Status = e.Status
	if info.Format != FormatAnthropic {
		openai.WriteError(w, e)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(anthropic.ErrorBody(e.Status, e.Message))
}
