// Package gemini is the translator of the Google Gemini API (Google AI Studio,
// generativelanguage) behind OpenAI's API: Chat Completions (streamed or
// not) become generateContent / streamGenerateContent calls and Embeddings
// become batchEmbedContents calls; the answers are turned back into OpenAI's
// shapes, so the rest of the gateway only ever sees OpenAI's format. The
// provider.Transport sends the requests and reads the answers.
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
// which are refused) are documented on [Translator.Request] and in request.go,
// response.go, stream.go and schema.go.
package gemini

import (
	"cmp"
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

// Auth is how Gemini takes the API key: the x-goog-api-key header, never
// the URL (URLs end up in logs).
var Auth = provider.KeyHeader("X-Goog-Api-Key")

// Translator maps OpenAI chat completions and embeddings to Gemini's
// generateContent, streamGenerateContent and batchEmbedContents.
type Translator struct {
	dropUnsupported bool
}

var _ provider.Translator = (*Translator)(nil)

// DropsUnsupported implements provider.UnsupportedDropper.
func (t *Translator) DropsUnsupported() bool { return t.dropUnsupported }

// NewTranslator returns the translator; see [Config.DropUnsupported].
func NewTranslator(dropUnsupported bool) *Translator {
	return &Translator{dropUnsupported: dropUnsupported}
}

// Endpoint implements provider.Translator: [APIVersion] is appended unless
// the base URL already ends with an API version.
func (t *Translator) Endpoint(base string, _ http.Header) string {
	if !strings.HasSuffix(base, "/"+APIVersion) && !strings.HasSuffix(base, "/v1") {
		base += "/" + APIVersion
	}
	return base
}

// Provider is a Gemini upstream. It implements provider.Provider.
type Provider struct{ *provider.Transport }

var _ provider.Provider = (*Provider)(nil)

// New checks cfg and returns the provider; h is its pooled client.
func New(cfg Config, h *provider.HTTP) (*Provider, error) {
	t, err := provider.New(provider.Config{Name: cfg.Name, BaseURL: cmp.Or(cfg.BaseURL, DefaultBaseURL), APIKey: cfg.APIKey,
		Auth: Auth, Headers: cfg.Headers, HTTP: h}, NewTranslator(cfg.DropUnsupported))
	if err != nil {
		return nil, err
	}
	return &Provider{t}, nil
}

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
	return p.Transport.URL(resourceName(model) + ":" + method)
}

// Request implements provider.Translator.
//
//   - Chat completions go to models/{model}:generateContent, or
//     :streamGenerateContent?alt=sse for streams (without alt=sse Google
//     streams a JSON array instead of events). The request is translated by
//     the rules of request.go; parameters Gemini cannot honour are refused
//     with a 400 unsupported_parameter naming them, unless
//     Config.DropUnsupported is set.
//   - Embeddings go to models/{model}:batchEmbedContents (embeddings.go).
//   - Completions and Responses are refused with a 400 unsupported_operation.
func (t *Translator) Request(call *provider.Call) (provider.Request, error) {
	req := call.Req
	name := resourceName(call.Model)
	if name == "" {
		return provider.Request{}, invalid("model", "invalid_value", "The model name "+quote(call.Model)+" cannot be used with the Gemini API.")
	}
	a := &answer{op: req.Op, model: call.Model}
	var (
		body   []byte
		method string
		perr   *provider.Error
	)
	switch req.Op {
	case openai.OpChat:
		body, perr = buildChat(req, t.dropUnsupported)
		method = "generateContent"
		if req.Stream {
			method = "streamGenerateContent?alt=sse"
		}
	case openai.OpEmbeddings:
		body, a.emb, perr = buildEmbed(req, call.Model)
		method = "batchEmbedContents"
	default:
		perr = provider.Unsupported(req.Op, "the Google Gemini API", openai.OpChat, openai.OpEmbeddings)
	}
	if perr != nil {
		return provider.Request{}, perr
	}
	return provider.Request{Path: name + ":" + method, Body: body, Stream: req.Stream, Answer: a}, nil
}

// answer translates the answer to one call.
type answer struct {
	op    openai.Op
	model string
	emb   embedInfo
}

// Body implements provider.Answer.
func (a *answer) Body(native []byte) ([]byte, error) {
	if a.op == openai.OpEmbeddings {
		return provider.Answered(translateEmbeddings(native, a.model, a.emb))
	}
	return provider.Answered(translateChat(native, a.model, time.Now().Unix(), randSeed()))
}

// Decoder implements provider.Answer.
func (a *answer) Decoder() provider.Decoder {
	return newDecoder(a.model, time.Now().Unix(), randSeed())
}

// ParseError implements provider.Translator with [ParseError]. Google
// answers a bad key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID): it
// is the gateway's credential that failed, not the client's request, so it
// becomes a 401.
func (t *Translator) ParseError(status int, body []byte) *provider.Error {
	e, delay, keyInvalid := parseError(status, body)
	e.RetryAfter = delay
	if keyInvalid {
		e.Status, e.Type = http.StatusUnauthorized, openai.TypeAuthentication
	}
	return e
}

// invalid is a 400 invalid_request_error about param.
func invalid(param, code, msg string) *provider.Error {
	return &provider.Error{Kind: provider.KindStatus, Status: http.StatusBadRequest,
		Type: openai.TypeInvalidRequest, Param: param, Code: code, Message: msg}
}
