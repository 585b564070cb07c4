package anthropic

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

type sink []string

func (s *sink) Event(name, data []byte) { *s = append(*s, string(name)) }

func TestParse(t *testing.T) {
	h := http.Header{}
	h.Set("anthropic-beta", "mcp-client-2025-04-04")
	h.Set("anthropic-version", "2023-06-01")
	h.Set("x-api-key", "secret")
	body := `{"model":"claude","max_tokens":5,"api_base":"http://x","messages":[{"role":"user","content":"hi"}],"stream":true}`
	var r dialect.Request
	if oe := (Dialect{}).Parse(&r, openai.OpChat, []byte(body), h, 0); oe != nil {
		t.Fatal(oe)
	}
	if r.Format != provider.FormatAnthropic || len(r.Header) != 2 || r.Header.Get("Anthropic-Beta") == "" {
		t.Fatalf("format %v header %v", r.Format, r.Header)
	}
	if gjson.GetBytes(r.Native, "api_base").Exists() || gjson.GetBytes(r.Native, "max_tokens").Int() != 5 {
		t.Fatalf("native body: %s", r.Native)
	}
	if r.OpenAI.Model != "claude" || !r.OpenAI.Stream || r.OpenAI.Messages != 1 {
		t.Fatalf("openai view: %+v", r.OpenAI)
	}
	for _, bad := range []string{`{"model":"a","model":"b","max_tokens":1,"messages":[]}`, `{"model":"a","messages":[]}`, strings.Repeat("[", 200)} {
		if oe := (Dialect{}).Parse(&r, openai.OpChat, []byte(bad), nil, 0); oe == nil || oe.Status != 400 {
			t.Errorf("%.40s: %v", bad, oe)
		}
	}
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	Dialect{}.WriteError(w, &openai.Error{Status: 429, Message: "slow down", RetryAfter: 3})
	b := w.Body.String()
	if w.Code != 429 || w.Header().Get("Retry-After") != "3" || gjson.Get(b, "type").Str != "error" || gjson.Get(b, "error.type").Str != "rate_limit_error" {
		t.Fatalf("%d %v %s", w.Code, w.Header(), b)
	}
}

func TestAnswers(t *testing.T) {
	var r dialect.Request
	if oe := (Dialect{}).Parse(&r, openai.OpChat, []byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`), nil, 0); oe != nil {
		t.Fatal(oe)
	}
	native := []byte(`{"type":"message"}`)
	if b, oe := (Dialect{}).Body(&r, native, provider.FormatAnthropic); oe != nil || string(b) != string(native) {
		t.Fatal("Anthropic answers pass")
	}
	b, oe := Dialect{}.Body(&r, []byte(`{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`), provider.FormatOpenAI)
	if oe != nil || gjson.GetBytes(b, "content.0.text").Str != "hi" {
		t.Fatalf("translated: %s %v", b, oe)
	}
	if _, oe := (Dialect{}).Body(&r, []byte(`nope`), provider.FormatOpenAI); oe == nil || oe.Status != 502 {
		t.Fatal("an untranslatable answer is a 502")
	}
	// Streams: OpenAI chunks become Anthropic's events.
	var out sink
	w := Dialect{}.Stream(&r, provider.FormatOpenAI)
	if err := w.Event(&dialect.Event{Event: sse.Event{Data: []byte(`{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}`)}}, &out); err != nil {
		t.Fatal(err)
	}
	w.End(&out)
	if got := strings.Join(out, " "); !strings.HasPrefix(got, "message_start content_block_start content_block_delta") || !strings.HasSuffix(got, "message_stop") {
		t.Fatalf("events %q", got)
	}
	out = nil
	n := Dialect{}.Stream(&r, provider.FormatAnthropic)
	n.Event(&dialect.Event{Event: sse.Event{Name: []byte("ping"), Data: []byte(`{"type":"ping"}`)}}, &out)
	n.End(&out)
	n.Fail(&openai.Error{Status: 502, Message: "x"}, &out)
	if strings.Join(out, " ") != "ping error" {
		t.Fatalf("native: %q", out)
	}
}
