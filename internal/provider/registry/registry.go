// Package registry is the table of provider types: for each type name its
// preset base URL, the environment variables that conventionally hold its
// key, how the key is sent and its translator. Adding a provider is adding
// its translator package and one row here.
package registry

import (
	"fmt"
	"net/http"
	"os"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/cohere"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/gemini"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
)

// Settings configure one provider beyond its type's defaults.
type Settings struct {
	Name string
	// BaseURL overrides the type's preset.
	BaseURL string
	// APIKey is sent upstream (see [Type.DefaultKey]); empty sends none.
	APIKey string
	// APIVersion is Azure's api-version or Anthropic's anthropic-version.
	APIVersion string
	// DropUnsupported makes translated types drop OpenAI parameters they
	// cannot honour instead of refusing the request.
	DropUnsupported bool
	Headers         http.Header
	Timeouts        provider.Timeouts
	// H2C speaks HTTP/2 without TLS to an http:// base URL.
	H2C bool
}

// Type is one provider type.
type Type struct {
	// BaseURL is the preset endpoint; empty means base_url is required.
	BaseURL string
	// KeyEnv are the environment variables conventionally holding the key,
	// tried in order.
	KeyEnv []string
	// Auth is where the key is sent.
	Auth provider.Auth
	// AllowQuery accepts a query and fragment in the base URL.
	AllowQuery bool
	// Translator builds the type's translator.
	Translator func(s *Settings) provider.Translator
	// Provider wraps the transport when the type offers more than
	// provider.Provider (Anthropic's native Messages); nil uses it as is.
	Provider func(*provider.Transport) provider.Provider
}

func openAI(s *Settings) provider.Translator { return openaicompat.NewTranslator(false, "") }

// Types are the provider types by name.
var Types = map[string]Type{
	"openai":     {BaseURL: "https://api.openai.com/v1", KeyEnv: []string{"OPENAI_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"azure":      {KeyEnv: []string{"AZURE_OPENAI_API_KEY"}, Auth: provider.KeyHeader("Api-Key"), AllowQuery: true, Translator: azure},
	"mistral":    {BaseURL: "https://api.mistral.ai/v1", KeyEnv: []string{"MISTRAL_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"groq":       {BaseURL: "https://api.groq.com/openai/v1", KeyEnv: []string{"GROQ_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"together":   {BaseURL: "https://api.together.xyz/v1", KeyEnv: []string{"TOGETHER_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"deepseek":   {BaseURL: "https://api.deepseek.com/v1", KeyEnv: []string{"DEEPSEEK_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"openrouter": {BaseURL: "https://openrouter.ai/api/v1", KeyEnv: []string{"OPENROUTER_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"ollama":     {BaseURL: "http://127.0.0.1:11434/v1", Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"vllm":       {BaseURL: "http://127.0.0.1:8000/v1", Auth: provider.BearerAuth, AllowQuery: true, Translator: openAI},
	"anthropic": {BaseURL: anthropic.DefaultBaseURL, KeyEnv: []string{"ANTHROPIC_API_KEY"}, Auth: anthropic.Auth,
		Translator: func(s *Settings) provider.Translator {
			return anthropic.NewTranslator(s.APIVersion, s.DropUnsupported, 0)
		},
		Provider: func(t *provider.Transport) provider.Provider { return &anthropic.Provider{Transport: t} }},
	"gemini": {BaseURL: gemini.DefaultBaseURL, KeyEnv: []string{"GEMINI_API_KEY", "GOOGLE_API_KEY"}, Auth: gemini.Auth,
		Translator: func(s *Settings) provider.Translator { return gemini.NewTranslator(s.DropUnsupported) }},
	"cohere": {BaseURL: cohere.DefaultBaseURL, KeyEnv: []string{"COHERE_API_KEY", "CO_API_KEY"}, Auth: provider.BearerAuth, AllowQuery: true,
		Translator: func(s *Settings) provider.Translator { return cohere.NewTranslator(s.DropUnsupported, "") }},
}

func azure(s *Settings) provider.Translator { return openaicompat.NewTranslator(true, s.APIVersion) }

// Lookup returns the type named typ.
func Lookup(typ string) (Type, bool) {
	t, ok := Types[typ]
	return t, ok
}

// DefaultKey is the key of a provider configured without one: the value of
// the first set variable of KeyEnv.
func (t Type) DefaultKey() string {
	for _, env := range t.KeyEnv {
		if key := os.Getenv(env); key != "" {
			return key
		}
	}
	return ""
}

// Build returns the provider of type typ (named typName in errors) with
// settings s, and its transport.
func (t Type) Build(typName string, s *Settings) (provider.Provider, *provider.Transport, error) {
	base := s.BaseURL
	if base == "" {
		base = t.BaseURL
	}
	if base == "" {
		return nil, nil, fmt.Errorf("provider %q: base_url is required for type %s", s.Name, typName)
	}
	tr, err := provider.New(provider.Config{Name: s.Name, BaseURL: base, AllowQuery: t.AllowQuery, APIKey: s.APIKey,
		Auth: t.Auth, Headers: s.Headers, Timeouts: s.Timeouts, H2C: s.H2C}, t.Translator(s))
	if err != nil {
		return nil, nil, err
	}
	if t.Provider != nil {
		return t.Provider(tr), tr, nil
	}
	return tr, tr, nil
}
