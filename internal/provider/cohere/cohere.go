// Package cohere is the translator that serves OpenAI-format chat
// completions and embeddings from Cohere's v2 API. Requests are translated
// to Cohere's shape, answers (JSON and event streams) back to OpenAI's; the
// provider.Transport sends and reads them. Nothing unmarshals a whole body:
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
	"cmp"
	"math/rand/v2"
	"net/http"
	"strconv"
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

// Translator maps OpenAI chat completions and embeddings to Cohere's
// /v2/chat and /v2/embed.
type Translator struct {
	dropUnsupported bool
	inputType       string
}

var _ provider.Translator = (*Translator)(nil)

// DropsUnsupported implements provider.UnsupportedDropper.
func (t *Translator) DropsUnsupported() bool { return t.dropUnsupported }

// NewTranslator returns the translator; see [Config.DropUnsupported] and
// [Config.InputType] (default [DefaultInputType]).
func NewTranslator(dropUnsupported bool, inputType string) *Translator {
	if inputType == "" {
		inputType = DefaultInputType
	}
	return &Translator{dropUnsupported: dropUnsupported, inputType: inputType}
}

// Endpoint implements provider.Translator: paths follow the base URL.
func (t *Translator) Endpoint(base string, _ http.Header) string { return base }

// Request implements provider.Translator. Cohere needs no output cap, so
// call.MaxTokens is not applied; the client's own max tokens are.
func (t *Translator) Request(call *provider.Call) (provider.Request, error) {
	a := &answer{op: call.Req.Op, model: call.Model}
	var (
		body []byte
		path string
		perr *provider.Error
	)
	switch call.Req.Op {
	case openai.OpChat:
		body, perr = buildChat(call.Req, call.Model, t.dropUnsupported)
		path = "v2/chat"
	case openai.OpEmbeddings:
		body, a.b64, perr = buildEmbed(call.Req, call.Model, t.inputType)
		path = "v2/embed"
	default:
		perr = provider.Unsupported(call.Req.Op, "the Cohere v2 API", openai.OpChat, openai.OpEmbeddings)
	}
	if perr != nil {
		perr.Kind = provider.KindStatus
		return provider.Request{}, perr
	}
	stream := call.Req.Stream && call.Req.Op == openai.OpChat
	return provider.Request{Path: path, Body: body, Stream: stream, Answer: a}, nil
}

// answer translates the answer to one call.
type answer struct {
	op    openai.Op
	model string
	b64   bool // embeddings as base64
}

// Body implements provider.Answer.
func (a *answer) Body(native []byte) ([]byte, error) {
	if a.op == openai.OpEmbeddings {
		return provider.Answered(embedResponse(native, a.model, a.b64))
	}
	return provider.Answered(chatResponse(native, a.model, time.Now().Unix(), fallbackID()))
}

// Decoder implements provider.Answer.
func (a *answer) Decoder() provider.Decoder {
	return newDecoder(a.model, time.Now().Unix(), fallbackID())
}

// ParseError implements provider.Translator with [ParseError]; Cohere's
// non-standard 498 "invalid token" status, a refused key, becomes 401.
func (t *Translator) ParseError(status int, body []byte) *provider.Error {
	e := ParseError(status, body)
	if status == 498 {
		e.Status = http.StatusUnauthorized
	}
	return e
}

// Provider is a Cohere upstream. It implements provider.Provider.
type Provider struct{ *provider.Transport }

// New checks cfg and returns the provider; h is its pooled client.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	t, err := provider.New(provider.Config{Name: cfg.Name, BaseURL: cmp.Or(cfg.BaseURL, DefaultBaseURL), AllowQuery: true,
		APIKey: cfg.APIKey, Auth: provider.BearerAuth, Headers: cfg.Headers, HTTP: h}, NewTranslator(cfg.DropUnsupported, cfg.InputType))
	if err != nil {
		return nil, err
	}
	return &Provider{t}, nil
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
				e.Message = provider.Truncate(m.Str)
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
