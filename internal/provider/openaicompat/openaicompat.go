// Package openaicompat is the translator of OpenAI's API and of every
// server that speaks it (Azure OpenAI, Mistral, Groq, Together, DeepSeek,
// OpenRouter, Ollama, vLLM, llama.cpp). Requests and answers pass through
// untouched except for the model name and stream_options.include_usage; the
// provider.Transport does the rest.
//
// API reference:
//
//	https://platform.openai.com/docs/api-reference
//	https://learn.microsoft.com/en-us/azure/ai-services/openai/reference (Azure's URLs and api-key header)
package openaicompat

import (
	"net/http"
	"net/url"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// DefaultAzureVersion is Azure's api-version when none is configured.
const DefaultAzureVersion = "2024-10-21"

// Translator maps OpenAI's API onto itself: it names the operation's path
// (Azure's deployment URLs when Azure is set) and rewrites the model.
type Translator struct {
	azure bool
	query string // Azure's "?api-version=..."
}

var _ provider.Translator = (*Translator)(nil)

// Speaks implements provider.Speaker: OpenAI's format, so the client's
// OpenAI-Beta header is sent on.
func (t *Translator) Speaks(f provider.Format) bool { return f == provider.FormatOpenAI }

// NewTranslator returns the translator of OpenAI's URL scheme, or of
// Azure OpenAI's with apiVersion (default [DefaultAzureVersion]).
func NewTranslator(azure bool, apiVersion string) *Translator {
	if !azure {
		return &Translator{}
	}
	if apiVersion == "" {
		apiVersion = DefaultAzureVersion
	}
	return &Translator{azure: true, query: "?api-version=" + url.QueryEscape(apiVersion)}
}

// Endpoint implements provider.Translator: paths follow the base URL.
func (t *Translator) Endpoint(base string, _ http.Header) string { return base }

// Path is the request path of an operation and model (Azure: deployment).
func (t *Translator) Path(op openai.Op, model string) string {
	if !t.azure {
		return op.String()
	}
	if op == openai.OpResponses {
		return "openai/responses" + t.query
	}
	return "openai/deployments/" + url.PathEscape(model) + "/" + op.String() + t.query
}

// Request implements provider.Translator.
func (t *Translator) Request(call *provider.Call) (provider.Request, error) {
	body, err := call.Req.UpstreamBody(call.Model)
	if err != nil {
		return provider.Request{}, provider.Protocol("could not rewrite request")
	}
	return provider.Request{Path: t.Path(call.Req.Op, call.Model), Body: body, Stream: call.Req.Stream}, nil
}

// ParseError implements provider.Translator with OpenAI's error envelope.
func (t *Translator) ParseError(status int, body []byte) *provider.Error {
	return provider.ParseOpenAIError(status, body)
}

// Config configures one provider.
type Config struct {
	Name    string
	BaseURL string
	APIKey  string
	Headers http.Header
	// Azure switches to Azure OpenAI's URL scheme and api-key header.
	Azure      bool
	APIVersion string
}

// Provider is an OpenAI-compatible upstream.
type Provider struct {
	*provider.Transport
	tr *Translator
}

// New checks cfg and returns the provider; h is its pooled client.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	tr := NewTranslator(cfg.Azure, cfg.APIVersion)
	auth := provider.BearerAuth
	if cfg.Azure {
		auth = provider.KeyHeader("Api-Key")
	}
	t, err := provider.New(provider.Config{Name: cfg.Name, BaseURL: cfg.BaseURL, AllowQuery: true,
		APIKey: cfg.APIKey, Auth: auth, Headers: cfg.Headers, HTTP: h}, tr)
	if err != nil {
		return nil, err
	}
	return &Provider{Transport: t, tr: tr}, nil
}

// URL returns the upstream URL for an operation and model.
func (p *Provider) URL(op openai.Op, model string) string {
	return p.Transport.URL(p.tr.Path(op, model))
}
