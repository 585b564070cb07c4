// Package openaicompat talks to OpenAI and to every server that speaks its
// API (Azure OpenAI, Mistral, Groq, Together, DeepSeek, OpenRouter, Ollama,
// vLLM, llama.cpp). Requests and answers pass through untouched except for
// the model name and stream_options.include_usage.
// API reference: https://platform.openai.com/docs/api-reference
package openaicompat

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Preset is a known OpenAI-compatible service.
type Preset struct {
	BaseURL string
	// KeyEnv is the environment variable conventionally holding its key.
	KeyEnv string
}

// Presets maps a provider type (or name) to its public endpoint.
var Presets = map[string]Preset{
	"openai":     {"https://api.openai.com/v1", "OPENAI_API_KEY"},
	"azure":      {"", "AZURE_OPENAI_API_KEY"},
	"mistral":    {"https://api.mistral.ai/v1", "MISTRAL_API_KEY"},
	"groq":       {"https://api.groq.com/openai/v1", "GROQ_API_KEY"},
	"together":   {"https://api.together.xyz/v1", "TOGETHER_API_KEY"},
	"deepseek":   {"https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"},
	"openrouter": {"https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"},
	"ollama":     {"http://127.0.0.1:11434/v1", ""},
	"vllm":       {"http://127.0.0.1:8000/v1", ""},
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
	cfg  Config
	base string // without trailing slash
	http *provider.HTTP

	// tmpl holds the request templates (URL and headers, see provider.HTTP.Post)
	// by operation and stream mode, built once; nil where the URL depends on
	// the model (Azure deployments), which azure caches.
	tmpl  [numOps][2]*http.Request
	hdr   [2]http.Header // the request headers by stream mode
	azure azureCache
}

// numOps bounds the openai.Op values.
const numOps = int(openai.OpResponses) + 1

// New validates cfg.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	if _, err := provider.CheckBaseURLAllowQuery(cfg.Name, cfg.BaseURL); err != nil {
		return nil, err
	}
	if cfg.Azure && cfg.APIVersion == "" {
		cfg.APIVersion = "2024-10-21"
	}
	p := &Provider{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), http: h}
	for stream := range 2 {
		p.hdr[stream] = p.header(stream == 1)
		for op := range openai.Op(numOps) {
			if !cfg.Azure || op == openai.OpResponses {
				// A URL that does not parse leaves nil: Do then fails as it
				// did when it built each request.
				p.tmpl[op][stream], _ = p.template(op, "", stream == 1)
			}
		}
	}
	return p, nil
}

// header builds the headers every request carries: the configured ones, then
// the content type, Accept and the credentials.
func (p *Provider) header(stream bool) http.Header {
	h := make(http.Header, len(p.cfg.Headers)+3)
	provider.SetJSONHeaders(h, p.cfg.Headers, stream)
	if p.cfg.APIKey != "" {
		if p.cfg.Azure {
			h.Set("Api-Key", p.cfg.APIKey)
		} else {
			h.Set("Authorization", "Bearer "+p.cfg.APIKey)
		}
	}
	return h
}

// template builds the request template for an operation and model.
func (p *Provider) template(op openai.Op, model string, stream bool) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, p.URL(op, model), nil)
	if err != nil {
		return nil, err
	}
	req.Header = p.hdr[b2i(stream)]
	// An empty Host sends the URL's (NewRequest copied it, port cleaned
	// alike), and spares http.Client.send a copy of the URL per request.
	req.Host = ""
	return req, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// azureCache holds Azure request templates by operation, stream mode and
// deployment. Deployments may come from clients (a target without a model
// passes the requested name through), so it stops growing at maxAzure and
// later ones are built per request.
type azureCache struct {
	mu sync.RWMutex
	m  map[azureKey]*http.Request
}

type azureKey struct {
	op     openai.Op
	stream bool
	model  string
}

const maxAzure = 256

// requestTemplate returns the template for a call.
func (p *Provider) requestTemplate(op openai.Op, model string, stream bool) (*http.Request, error) {
	if int(op) < numOps {
		if t := p.tmpl[op][b2i(stream)]; t != nil {
			return t, nil
		}
	}
	if !p.cfg.Azure {
		return p.template(op, model, stream)
	}
	key := azureKey{op, stream, model}
	c := &p.azure
	c.mu.RLock()
	t := c.m[key]
	c.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	t, err := p.template(op, model, stream)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[azureKey]*http.Request)
	}
	if len(c.m) < maxAzure {
		c.m[key] = t
	}
	c.mu.Unlock()
	return t, nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return p.cfg.Name }

// URL returns the upstream URL for an operation and model.
func (p *Provider) URL(op openai.Op, model string) string {
	if !p.cfg.Azure {
		return p.base + "/" + op.String()
	}
	// https://learn.microsoft.com/en-us/azure/ai-services/openai/reference
	q := "?api-version=" + url.QueryEscape(p.cfg.APIVersion)
	if op == openai.OpResponses {
		return p.base + "/openai/responses" + q
	}
	return p.base + "/openai/deployments/" + url.PathEscape(model) + "/" + op.String() + q
}

// Do implements provider.Provider.
func (p *Provider) Do(ctx context.Context, call *provider.Call) (*provider.Response, error) {
	body, err := call.Req.UpstreamBody(call.Model)
	if err != nil {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "could not rewrite request"}
	}
	tmpl, err := p.requestTemplate(call.Req.Op, call.Model, call.Req.Stream)
	if err != nil {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindConnect}
	}
	if len(call.Header) > 0 {
		// The client's OpenAI-Beta: a copy of the template with it (the
		// template is shared and never changes).
		t := *tmpl
		t.Header = tmpl.Header.Clone()
		for k, v := range call.Header {
			t.Header[k] = v
		}
		tmpl = &t
	}
	x, err := p.http.Post(ctx, tmpl, body, provider.ParseOpenAIError)
	if err != nil {
		return nil, err
	}
	if call.Req.Stream {
		if ct := x.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			x.Close()
			return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "expected an event stream"}
		}
		return &provider.Response{Stream: provider.NewSSEStream(x, call.Req.Op != openai.OpResponses)}, nil
	}
	defer x.Close()
	b, err := x.ReadAll()
	if err != nil {
		return nil, err
	}
	if !jsonraw.Valid(b) {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "answer is not JSON"}
	}
	return &provider.Response{Body: b}, nil
}
