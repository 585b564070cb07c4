// Package cohere serves OpenAI-format chat completions and embeddings from
// Cohere's v2 API. Requests are translated to Cohere's shape, answers (JSON
// and event streams) back to OpenAI's; nothing unmarshals a whole body:
// gjson reads, hand-rolled appends write.
//
// API reference:
//
//	https://docs.cohere.com/reference/chat         POST /v2/chat
//	https://docs.cohere.com/reference/chat-stream  POST /v2/chat, "stream": true
//	https://docs.cohere.com/reference/embed        POST /v2/embed
//	https://docs.cohere.com/reference/errors       status codes, {"id","message"} bodies
//
// Only chat completions (openai.OpChat) and embeddings (openai.OpEmbeddings)
// are served; other operations are refused with a 400.
package cohere

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// DefaultBaseURL is Cohere's public API endpoint.
const DefaultBaseURL = "https://api.cohere.com"

// DefaultInputType is the embed input_type used when neither the config nor
// the request chooses one: embeddings requested through OpenAI's API are
// most often stored documents.
const DefaultInputType = "search_document"

// Config configures one Cohere provider.
type Config struct {
	Name string
	// BaseURL defaults to DefaultBaseURL; "/v2/chat" and "/v2/embed" are
	// appended.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>".
	APIKey string
	// Headers are added to every upstream request.
	Headers http.Header
	// DropUnsupported silently drops OpenAI parameters Cohere cannot honour
	// (n > 1, logit_bias, logprobs, parallel_tool_calls false, a specific
	// tool_choice, audio/file content parts...) instead of refusing the
	// request with a 400 unsupported_parameter error.
	DropUnsupported bool
	// InputType is the embed input_type ("search_document" by default,
	// "search_query", "classification" or "clustering"). A request may
	// override it with a non-standard "input_type" string member.
	InputType string
}

// Provider is a Cohere upstream. It implements provider.Provider.
type Provider struct {
	cfg      Config
	chatURL  string
	embedURL string
	http     *provider.HTTP
}

// New validates cfg and returns the provider; h is its pooled client.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if _, err := provider.CheckBaseURLAllowQuery(cfg.Name, cfg.BaseURL); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("provider %q: no HTTP client", cfg.Name)
	}
	if cfg.InputType == "" {
		cfg.InputType = DefaultInputType
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	return &Provider{cfg: cfg, chatURL: base + "/v2/chat", embedURL: base + "/v2/embed", http: h}, nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return p.cfg.Name }

// Do implements provider.Provider. Cohere needs no output cap, so
// call.MaxTokens is not applied; the client's own max tokens are.
func (p *Provider) Do(ctx context.Context, call *provider.Call) (*provider.Response, error) {
	var (
		body   []byte
		target string
		b64    bool
		perr   *provider.Error
	)
	switch call.Req.Op {
	case openai.OpChat:
		body, perr = buildChat(call.Req, call.Model, p.cfg.DropUnsupported)
		target = p.chatURL
	case openai.OpEmbeddings:
		body, b64, perr = buildEmbed(call.Req, call.Model, p.cfg.InputType)
		target = p.embedURL
	default:
		perr = &provider.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "unsupported_operation",
			Message: "The " + call.Req.Op.String() + " operation is not supported by Cohere; use chat/completions or embeddings."}
	}
	if perr != nil {
		perr.Provider, perr.Kind = p.cfg.Name, provider.KindStatus
		return nil, perr
	}
	stream := call.Req.Stream && call.Req.Op == openai.OpChat
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindConnect}
	}
	h := req.Header
	provider.SetJSONHeaders(h, p.cfg.Headers, stream)
	if p.cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
	x, err := p.http.Send(ctx, req, ParseError)
	if err != nil {
		if pe, ok := err.(*provider.Error); ok && pe.Status == 498 {
			// Cohere's non-standard "invalid token" status: a refused key.
			pe.Status = http.StatusUnauthorized
		}
		return nil, err
	}
	created := time.Now().Unix()
	if stream {
		return &provider.Response{Stream: newStream(x.Body, x.Close, p.cfg.Name, call.Model, created, fallbackID())}, nil
	}
	defer x.Close()
	raw, err := x.ReadAll()
	if err != nil {
		return nil, err
	}
	var out []byte
	if call.Req.Op == openai.OpEmbeddings {
		out, perr = embedResponse(raw, call.Model, b64)
	} else {
		out, perr = chatResponse(raw, call.Model, created, fallbackID())
	}
	if perr != nil {
		perr.Provider = p.cfg.Name
		return nil, perr
	}
	return &provider.Response{Body: out}, nil
}

// fallbackID names an answer whose upstream id is missing.
func fallbackID() string {
	return "chatcmpl-" + strconv.FormatUint(rand.Uint64(), 36)
}

// ParseError reads Cohere's error body, {"message": "..."} optionally with
// an "id" (https://docs.cohere.com/reference/errors), and types it by status
// the way OpenAI would. An OpenAI-shaped envelope (from a proxy in between)
// is read as well. 429 and 5xx are retryable through their status.
func ParseError(status int, body []byte) *provider.Error {
	var e *provider.Error
	if jsonraw.Valid(body) && gjson.GetBytes(body, "error").IsObject() {
		e = provider.ParseOpenAIError(status, body)
	} else {
		e = &provider.Error{Status: status}
		if jsonraw.Valid(body) {
			if m := gjson.GetBytes(body, "message"); m.Type == gjson.String {
				e.Message = truncate(m.Str)
			}
		}
	}
	if e.Type == "" {
		e.Type = errorType(status)
	}
	if e.Code == "" && status == http.StatusTooManyRequests {
		e.Code = "rate_limit_exceeded"
	}
	return e
}

// errorType maps Cohere's statuses to OpenAI's error types.
func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized, 498: // 498: invalid token
		return openai.TypeAuthentication
	case http.StatusPaymentRequired:
		return openai.TypeInsufficient
	case http.StatusForbidden:
		return openai.TypePermission
	case http.StatusNotFound:
		return openai.TypeNotFound
	case http.StatusTooManyRequests:
		return openai.TypeRateLimit
	}
	if status >= 500 {
		return openai.TypeServer
	}
	return openai.TypeInvalidRequest
}

func truncate(s string) string {
	const max = 1024
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
