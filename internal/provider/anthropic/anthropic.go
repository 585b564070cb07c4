// Package anthropic is the translator of Anthropic's Messages API for OpenAI
// clients: it turns an OpenAI chat completion request into a Messages
// request, and the Messages answer (a message object, or its event stream)
// back into OpenAI's chat.completion / chat.completion.chunk shapes. The
// provider.Transport sends the requests and reads the answers; native.go
// passes Anthropic-format requests through it untranslated.
//
// It also exports the reverse direction (inbound.go): an Anthropic Messages
// request into an OpenAI chat request, an OpenAI answer into an Anthropic
// message, OpenAI chunks into Anthropic stream events, and Anthropic's error
// body, so that the gateway can serve /v1/messages in front of any provider.
//
// API reference:
//
//	https://docs.anthropic.com/en/api/messages            (request, message object)
//	https://docs.anthropic.com/en/api/messages-streaming  (event stream)
//	https://docs.anthropic.com/en/api/errors              (error shape, statuses)
//
// Mapping decisions that are not obvious from the two references are
// documented on [RequestFromOpenAI], [ResponseToOpenAI] and the stream
// decoder (stream.go).
package anthropic

import (
	"cmp"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Defaults applied by [New] to zero [Config] fields.
const (
	DefaultBaseURL   = "https://api.anthropic.com"
	DefaultVersion   = "2023-06-01"
	DefaultMaxTokens = 4096
)

// Config configures one Anthropic upstream.
type Config struct {
	// Name is the provider's configured name.
	Name string
	// BaseURL is the API root in the SDKs' form, without "/v1" (a trailing
	// "/v1" is tolerated and removed). Default [DefaultBaseURL].
	BaseURL string
	// APIKey is sent as x-api-key.
	APIKey string
	// Version is the anthropic-version header. Default [DefaultVersion].
	Version string
	// Headers are added to every upstream request (e.g. anthropic-beta).
	Headers http.Header
	// DropUnsupported silently drops the OpenAI request parameters the
	// Messages API cannot honour (n > 1, logprobs, penalties, seed,
	// response_format json...) and clamps temperature to 1, instead of
	// answering 400. Message content is never dropped.
	DropUnsupported bool
	// DefaultMaxTokens is max_tokens (required by Anthropic) when neither the
	// request nor the route sets one. Default [DefaultMaxTokens].
	DefaultMaxTokens int64
}

// Translator maps OpenAI chat completions to the Messages API.
type Translator struct {
	version         string
	dropUnsupported bool
	maxTokens       int64
}

var (
	_ provider.Translator = (*Translator)(nil)
	_ provider.Answer     = (*Translator)(nil)
)

// Speaks implements provider.Speaker: Anthropic's Messages API.
func (t *Translator) Speaks(f provider.Format) bool { return f == provider.FormatAnthropic }

// DropsUnsupported implements provider.UnsupportedDropper.
func (t *Translator) DropsUnsupported() bool { return t.dropUnsupported }

// NewTranslator returns the translator; zero values take the defaults
// ([DefaultVersion], [DefaultMaxTokens]).
func NewTranslator(version string, dropUnsupported bool, defaultMaxTokens int64) *Translator {
	if version == "" {
		version = DefaultVersion
	}
	if defaultMaxTokens <= 0 {
		defaultMaxTokens = DefaultMaxTokens
	}
	return &Translator{version: version, dropUnsupported: dropUnsupported, maxTokens: defaultMaxTokens}
}

// Endpoint implements provider.Translator: the base URL without "/v1",
// then "/v1"; every request carries the anthropic-version header.
func (t *Translator) Endpoint(base string, h http.Header) string {
	h.Set("Anthropic-Version", t.version)
	return strings.TrimSuffix(base, "/v1") + "/v1"
}

// messagesPath is the Messages endpoint below [Translator.Endpoint].
const messagesPath = "messages"

// Request implements provider.Translator. Only chat completions are
// supported; other operations fail with a 400 naming the operation.
func (t *Translator) Request(call *provider.Call) (provider.Request, error) {
	if call.Req.Op != openai.OpChat {
		return provider.Request{}, provider.Unsupported(call.Req.Op, "the Anthropic Messages API", openai.OpChat)
	}
	maxTokens := call.MaxTokens
	if maxTokens <= 0 {
		maxTokens = t.maxTokens
	}
	body, err := RequestFromOpenAI(call.Req.Body, RequestOptions{
		Model: call.Model, MaxTokens: maxTokens, DropUnsupported: t.dropUnsupported,
	})
	if err != nil {
		return provider.Request{}, err
	}
	return provider.Request{Path: messagesPath, Body: body, Stream: call.Req.Stream, Answer: t}, nil
}

// Body implements provider.Answer with [ResponseToOpenAI].
func (t *Translator) Body(native []byte) ([]byte, error) {
	return ResponseToOpenAI(native, time.Now().Unix())
}

// Decoder implements provider.Answer.
func (t *Translator) Decoder() provider.Decoder { return NewDecoder(time.Now().Unix()) }

// ParseError implements provider.Translator with [ParseError].
func (t *Translator) ParseError(status int, body []byte) *provider.Error {
	return ParseError(status, body)
}

// Provider is an Anthropic Messages API upstream: provider.Provider for
// chat completions, and provider.MessagesProvider.
type Provider struct{ *provider.Transport }

var _ provider.Provider = (*Provider)(nil)

// New checks cfg, fills in its defaults and returns the provider; h is its
// pooled client.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	t, err := provider.New(provider.Config{Name: cfg.Name, BaseURL: cmp.Or(cfg.BaseURL, DefaultBaseURL), APIKey: cfg.APIKey,
		Auth: Auth, Headers: cfg.Headers, HTTP: h}, NewTranslator(cfg.Version, cfg.DropUnsupported, cfg.DefaultMaxTokens))
	if err != nil {
		return nil, err
	}
	return &Provider{t}, nil
}

// Auth is how Anthropic takes the API key: the x-api-key header.
var Auth = provider.KeyHeader("X-Api-Key")

// URL is the Messages endpoint requests are sent to.
func (p *Provider) URL() string { return p.Transport.URL(messagesPath) }

// ParseError is the provider.ErrorParser for Anthropic's error body
// {"type":"error","error":{"type","message"},"request_id"}
// (https://docs.anthropic.com/en/api/errors). Anthropic's error type is
// mapped to OpenAI's type and code (see [ErrorTypeToOpenAI]). A body of
// another shape yields an error with no message (the status speaks).
func ParseError(status int, body []byte) *provider.Error {
	e := &provider.Error{Kind: provider.KindStatus, Status: status}
	if !jsonraw.Valid(body) {
		return e
	}
	obj := gjson.GetBytes(body, "error")
	if !obj.IsObject() {
		// Some proxies in front of Anthropic answer in OpenAI's shape.
		pe := provider.ParseOpenAIError(status, body)
		pe.Kind = provider.KindStatus
		return pe
	}
	if m := obj.Get("message"); m.Type == gjson.String {
		e.Message = provider.Truncate(m.Str)
	}
	if t := obj.Get("type"); t.Type == gjson.String {
		e.Type, e.Code = ErrorTypeToOpenAI(t.Str)
	}
	return e
}

// ErrorTypeToOpenAI maps an Anthropic error type to OpenAI's error type and
// code: invalid_request_error, authentication_error, permission_error and
// not_found_error keep their name (OpenAI uses the same ones);
// request_too_large becomes invalid_request_error/request_too_large,
// rate_limit_error rate_limit_exceeded/rate_limit_exceeded, billing_error
// insufficient_quota/insufficient_quota, overloaded_error
// server_error/overloaded, api_error server_error/api_error, timeout_error
// timeout_error/timeout. Unknown types become server_error with the
// Anthropic type as code.
func ErrorTypeToOpenAI(typ string) (oaType, code string) {
	switch typ {
	case "invalid_request_error":
		return openai.TypeInvalidRequest, ""
	case "authentication_error":
		return openai.TypeAuthentication, "invalid_api_key"
	case "permission_error":
		return openai.TypePermission, ""
	case "not_found_error":
		return openai.TypeNotFound, ""
	case "request_too_large":
		return openai.TypeInvalidRequest, "request_too_large"
	case "rate_limit_error":
		return openai.TypeRateLimit, "rate_limit_exceeded"
	case "billing_error":
		return openai.TypeInsufficient, "insufficient_quota"
	case "overloaded_error":
		return openai.TypeServer, "overloaded"
	case "api_error":
		return openai.TypeServer, "api_error"
	case "timeout_error":
		return openai.TypeTimeout, "timeout"
	}
	return openai.TypeServer, typ
}

// errorTypeStatus is the HTTP status Anthropic uses for an error type, for
// errors reported inside a stream (where the HTTP status is already 200).
func errorTypeStatus(typ string) int {
	switch typ {
	case "invalid_request_error":
		return http.StatusBadRequest
	case "authentication_error":
		return http.StatusUnauthorized
	case "billing_error":
		return http.StatusPaymentRequired
	case "permission_error":
		return http.StatusForbidden
	case "not_found_error":
		return http.StatusNotFound
	case "request_too_large":
		return http.StatusRequestEntityTooLarge
	case "rate_limit_error":
		return http.StatusTooManyRequests
	case "api_error":
		return http.StatusInternalServerError
	case "timeout_error":
		return http.StatusGatewayTimeout
	case "overloaded_error":
		return 529
	}
	return http.StatusInternalServerError
}

func quote(s string) string { return string(openai.AppendString(nil, s)) }
