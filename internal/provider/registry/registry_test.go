package registry

import (
	"slices"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// TestTypes checks each type's preset, key variables and key header
// against the README's provider table.
func TestTypes(t *testing.T) {
	tests := []struct {
		typ, base string
		env       []string
		header    string
		url       string // the chat URL with the preset
	}{
		{"openai", "https://api.openai.com/v1", []string{"OPENAI_API_KEY"}, "Authorization", "https://api.openai.com/v1/chat/completions"},
		{"azure", "", []string{"AZURE_OPENAI_API_KEY"}, "Api-Key", ""},
		{"mistral", "https://api.mistral.ai/v1", []string{"MISTRAL_API_KEY"}, "Authorization", "https://api.mistral.ai/v1/chat/completions"},
		{"groq", "https://api.groq.com/openai/v1", []string{"GROQ_API_KEY"}, "Authorization", "https://api.groq.com/openai/v1/chat/completions"},
		{"together", "https://api.together.xyz/v1", []string{"TOGETHER_API_KEY"}, "Authorization", "https://api.together.xyz/v1/chat/completions"},
		{"deepseek", "https://api.deepseek.com/v1", []string{"DEEPSEEK_API_KEY"}, "Authorization", "https://api.deepseek.com/v1/chat/completions"},
		{"openrouter", "https://openrouter.ai/api/v1", []string{"OPENROUTER_API_KEY"}, "Authorization", "https://openrouter.ai/api/v1/chat/completions"},
		{"ollama", "http://127.0.0.1:11434/v1", nil, "Authorization", "http://127.0.0.1:11434/v1/chat/completions"},
		{"vllm", "http://127.0.0.1:8000/v1", nil, "Authorization", "http://127.0.0.1:8000/v1/chat/completions"},
		{"anthropic", "https://api.anthropic.com", []string{"ANTHROPIC_API_KEY"}, "X-Api-Key", "https://api.anthropic.com/v1/messages"},
		{"gemini", "https://generativelanguage.googleapis.com", []string{"GEMINI_API_KEY", "GOOGLE_API_KEY"}, "X-Goog-Api-Key", ""},
		{"cohere", "https://api.cohere.com", []string{"COHERE_API_KEY", "CO_API_KEY"}, "Authorization", "https://api.cohere.com/v2/chat"},
	}
	if len(tests) != len(Types) {
		t.Errorf("%d types, %d tested", len(Types), len(tests))
	}
	for _, tt := range tests {
		ty, ok := Lookup(tt.typ)
		if !ok || ty.BaseURL != tt.base || !slices.Equal(ty.KeyEnv, tt.env) || ty.Auth.Header != tt.header {
			t.Errorf("%s: %+v", tt.typ, ty)
			continue
		}
		p, tr, err := ty.Build(tt.typ, &Settings{Name: "p"})
		if tt.base == "" {
			if err == nil {
				t.Errorf("%s: built without base_url", tt.typ)
			}
			continue
		}
		if err != nil || p.Name() != "p" {
			t.Fatalf("%s: %v", tt.typ, err)
		}
		tr.HTTP().Close()
		if tt.url == "" {
			continue
		}
		r, err := tr.Translator().Request(&provider.Call{Req: &openai.Request{Op: openai.OpChat, Body: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)}, Model: "m"})
		if err != nil {
			t.Fatalf("%s: %v", tt.typ, err)
		}
		if got := tr.URL(r.Path); got != tt.url {
			t.Errorf("%s: URL %s, want %s", tt.typ, got, tt.url)
		}
	}
	if _, ok := Lookup("anthropic"); ok {
		p, _, _ := Types["anthropic"].Build("anthropic", &Settings{Name: "a"})
		if _, ok := p.(provider.MessagesProvider); !ok {
			t.Error("anthropic is not a MessagesProvider")
		}
	}
}

// TestH2CNeedsHTTP: h2c is HTTP/2 over cleartext; over https HTTP/2 comes
// from TLS, so the switch there is a configuration error.
func TestH2CNeedsHTTP(t *testing.T) {
	if _, _, err := Types["openai"].Build("openai", &Settings{Name: "p", H2C: true}); err == nil || !strings.Contains(err.Error(), "h2c needs an http:// base_url") {
		t.Fatalf("h2c over the https preset: %v", err)
	}
	_, tr, err := Types["openai"].Build("openai", &Settings{Name: "p", BaseURL: "http://127.0.0.1:1/v1", H2C: true})
	if err != nil {
		t.Fatal(err)
	}
	tr.HTTP().Close()
}
