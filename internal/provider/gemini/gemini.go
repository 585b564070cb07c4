// Package gemini talks to the Google Gemini API (Google AI Studio,
// generativelanguage) behind OpenAI's API: Chat Completions (streamed or
// not) become generateContent / streamGenerateContent calls and Embeddings
// become batchEmbedContents calls; the answers are turned back into OpenAI's
// shapes, so the rest of the gateway only ever sees OpenAI's format.
//
// API reference:
//
//	https://ai.google.dev/api/generate-content   (generateContent, streamGenerateContent, GenerateContentResponse)
//	https://ai.google.dev/api/embeddings         (batchEmbedContents)
//	https://ai.google.dev/api/caching#Content    (Content, Part, FunctionCall, FunctionResponse)
//	https://ai.google.dev/gemini-api/docs/function-calling
//	https://ai.google.dev/gemini-api/docs/troubleshooting (error statuses)
//
// The translation rules (which OpenAI parameter becomes which Gemini field,
// which are refused) are documented on [Provider.Do] and in request.go,
// response.go, stream.go and schema.go.
package gemini

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// DefaultBaseURL is Google's public Gemini API endpoint.
const DefaultBaseURL = "https://generativelanguage.googleapis.com"

// APIVersion is the API version path appended to the base URL. v1beta is
// the version Google documents and the only one carrying every feature used
// here (systemInstruction, tools, responseSchema, thinkingConfig).
const APIVersion = "v1beta"

// Config configures one Gemini provider.
type Config struct {
	Name string
	// BaseURL defaults to [DefaultBaseURL]. "/v1beta" is appended unless
	// the URL already ends with an API version ("/v1beta" or "/v1").
	BaseURL string
	// APIKey is sent in the x-goog-api-key header, never in the URL (URLs
	// end up in logs).
	APIKey string
	// Headers are added to every upstream request.
	Headers http.Header
	// DropUnsupported silently drops OpenAI parameters Gemini cannot honour
	// (logit_bias, logprobs, parallel_tool_calls=false, ...) instead of
	// refusing the request with a 400 unsupported_parameter.
	DropUnsupported bool
}

// Provider is a Gemini upstream. It implements provider.Provider.
type Provider struct {
	cfg  Config
	base string // up to and including the API version, no trailing slash
	http *provider.HTTP
}

var _ provider.Provider = (*Provider)(nil)

// New validates cfg.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if _, err := provider.CheckBaseURL(cfg.Name, cfg.BaseURL); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("provider %q: no HTTP client", cfg.Name)
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasSuffix(base, "/"+APIVersion) && !strings.HasSuffix(base, "/v1") {
		base += "/" + APIVersion
	}
	return &Provider{cfg: cfg, base: base, http: h}, nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return p.cfg.Name }

// resourceName returns the model's resource name ("models/{model}" or
// "tunedModels/{model}"), or "" when model cannot be put in a URL safely.
func resourceName(model string) string {
	name := model
	if !strings.HasPrefix(model, "models/") && !strings.HasPrefix(model, "tunedModels/") {
		name = "models/" + model
	}
	_, id, _ := strings.Cut(name, "/")
	if id == "" || strings.ContainsAny(id, "/:?#%\\ \t\r\n") {
		return ""
	}
	return name
}

// URL returns the upstream URL of a model method, e.g.
// base/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse.
func (p *Provider) URL(model, method string) string {
	return p.base + "/" + resourceName(model) + ":" + method
}

// Do implements provider.Provider.
//
//   - Chat completions go to models/{model}:generateContent, or
//     :streamGenerateContent?alt=sse for streams (without alt=sse Google
//     streams a JSON array instead of events). The request is translated by
//     the rules of request.go; parameters Gemini cannot honour are refused
//     with a 400 unsupported_parameter naming them, unless
//     Config.DropUnsupported is set.
//   - Embeddings go to models/{model}:batchEmbedContents (embeddings.go).
//   - Completions and Responses are refused with a 400 unsupported_operation.
//
// Errors are *provider.Error; Google's error envelope is read by
// [ParseError], whose RetryInfo delay is kept when the answer carried no
// Retry-After header.
func (p *Provider) Do(ctx context.Context, call *provider.Call) (*provider.Response, error) {
	req := call.Req
	if resourceName(call.Model) == "" {
		return nil, p.invalid("model", "invalid_value", "The model name "+quote(call.Model)+" cannot be used with the Gemini API.")
	}
	var (
		body   []byte
		method string
		perr   *provider.Error
		emb    embedInfo
	)
	switch req.Op {
	case openai.OpChat:
		body, perr = buildChat(req, p.cfg.DropUnsupported)
		method = "generateContent"
		if req.Stream {
			method = "streamGenerateContent?alt=sse"
		}
	case openai.OpEmbeddings:
		body, emb, perr = buildEmbed(req, call.Model)
		method = "batchEmbedContents"
	default:
		perr = &provider.Error{Kind: provider.KindStatus, Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest,
			Code: "unsupported_operation", Message: "The /v1/" + req.Op.String() + " operation is not supported by this model's provider (Google Gemini)."}
	}
	if perr != nil {
		perr.Provider = p.cfg.Name
		return nil, perr
	}
	x, err := p.send(ctx, p.URL(call.Model, method), body, req.Stream)
	if err != nil {
		return nil, err
	}
	if req.Stream {
		if ct := x.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			x.Close()
			return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "expected an event stream"}
		}
		return &provider.Response{Stream: newStream(x.Body, x, p.cfg.Name, call.Model, time.Now().Unix(), randSeed())}, nil
	}
	defer x.Close()
	b, err := x.ReadAll()
	if err != nil {
		return nil, err
	}
	var out []byte
	if req.Op == openai.OpEmbeddings {
		out, perr = translateEmbeddings(b, call.Model, emb)
	} else {
		out, perr = translateChat(b, call.Model, time.Now().Unix(), randSeed())
	}
	if perr != nil {
		perr.Provider = p.cfg.Name
		return nil, perr
	}
	return &provider.Response{Body: out}, nil
}

// send posts body and returns the exchange of a 2xx answer.
func (p *Provider) send(ctx context.Context, u string, body []byte, stream bool) (*provider.Exchange, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindConnect}
	}
	h := hr.Header
	provider.SetJSONHeaders(h, p.cfg.Headers, stream)
	if p.cfg.APIKey != "" {
		h.Set("X-Goog-Api-Key", p.cfg.APIKey)
	}
	// provider.HTTP.Send overwrites RetryAfter with the Retry-After header
	// (0 when absent) after the parser ran: keep Google's RetryInfo delay
	// aside and restore it when no header gave one.
	var (
		parsed     *provider.Error
		delay      time.Duration
		keyInvalid bool
	)
	x, err := p.http.Send(ctx, hr, func(status int, b []byte) *provider.Error {
		parsed, delay, keyInvalid = parseError(status, b)
		return parsed
	})
	if err != nil {
		if pe, ok := err.(*provider.Error); ok && pe == parsed {
			if pe.RetryAfter <= 0 {
				pe.RetryAfter = delay
			}
			if keyInvalid {
				// Google answers a bad key with 400 INVALID_ARGUMENT
				// (reason API_KEY_INVALID): it is the gateway's credential
				// that failed, not the client's request.
				pe.Status, pe.Type = http.StatusUnauthorized, openai.TypeAuthentication
			}
		}
		return nil, err
	}
	return x, nil
}

// invalid is a 400 invalid_request_error about param.
func (p *Provider) invalid(param, code, msg string) *provider.Error {
	return &provider.Error{Provider: p.cfg.Name, Kind: provider.KindStatus, Status: http.StatusBadRequest,
		Type: openai.TypeInvalidRequest, Param: param, Code: code, Message: msg}
}
