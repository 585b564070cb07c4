package guardrails

import (
	"strings"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/glob"
)

// contextWindows are the context windows (prompt plus answer, in tokens)
// of common models, by glob on the lower-cased upstream model name with
// any provider prefix ("openai/", "models/") removed; the most specific
// match wins. A routing entry's context_window overrides them.
var contextWindows = []struct {
	pattern string
	window  int
}{
	// OpenAI
	{"gpt-5*", 400000},
	{"gpt-4.1*", 1047576},
	{"gpt-4.5*", 128000},
	{"gpt-4o*", 128000},
	{"chatgpt-4o*", 128000},
	{"gpt-4-turbo*", 128000},
	{"gpt-4-*preview*", 128000},
	{"gpt-4-32k*", 32768},
	{"gpt-4", 8192},
	{"gpt-4-0613", 8192},
	{"gpt-3.5-turbo*", 16385},
	{"gpt-35-turbo*", 16385},
	{"gpt-3.5-turbo-instruct*", 4096},
	{"o1*", 200000},
	{"o1-mini*", 128000},
	{"o1-preview*", 128000},
	{"o3*", 200000},
	{"o4-mini*", 200000},
	{"gpt-oss*", 131072},
	// Anthropic
	{"claude-*", 200000},
	{"claude-2*", 100000},
	{"claude-instant*", 100000},
	// Google
	{"gemini-*", 1048576},
	{"gemini-1.5-pro*", 2097152},
	{"gemini-1.0*", 32760},
	{"gemini-pro", 32760},
	{"gemma-3*", 131072},
	{"gemma*", 8192},
	// Mistral
	{"mistral-large*", 131072},
	{"mistral-medium*", 131072},
	{"mistral-small*", 131072},
	{"mistral-tiny*", 32768},
	{"open-mistral-7b", 32768},
	{"open-mixtral-8x7b", 32768},
	{"open-mixtral-8x22b", 65536},
	{"open-mistral-nemo*", 131072},
	{"mistral-nemo*", 131072},
	{"ministral*", 131072},
	{"mixtral*", 32768},
	{"codestral*", 262144},
	{"devstral*", 131072},
	{"magistral*", 40960},
	{"pixtral*", 131072},
	{"mistral", 32768},
	{"mistral:*", 32768},
	// Meta Llama (as served by Ollama, vLLM, Groq, Together)
	{"llama-2*", 4096},
	{"llama2*", 4096},
	{"llama-3-*", 8192},
	{"llama3", 8192},
	{"llama3:*", 8192},
	{"llama-3.1*", 131072},
	{"llama-3.2*", 131072},
	{"llama-3.3*", 131072},
	{"llama3.1*", 131072},
	{"llama3.2*", 131072},
	{"llama3.3*", 131072},
	{"llama-4*", 1048576},
	{"llama4*", 1048576},
	{"meta-llama-3.1*", 131072},
	{"meta-llama-3.3*", 131072},
}

// Window returns the shipped context window of model, 0 when unknown.
func Window(model string) int {
	m := strings.ToLower(model)
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	best, spec := 0, -1
	for _, w := range contextWindows {
		if glob.Match(w.pattern, m) {
			if s := glob.Specificity(w.pattern); s > spec {
				best, spec = w.window, s
			}
		}
	}
	return best
}
