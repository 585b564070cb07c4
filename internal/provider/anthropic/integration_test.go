package anthropic_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
)

func setup(t *testing.T, cfg anthropic.Config) (*fakellm.Server, *anthropic.Provider) {
	t.Helper()
	fake := fakellm.New(fakellm.Options{})
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	h := provider.NewHTTP("claude", provider.Timeouts{Idle: 5 * time.Second})
	t.Cleanup(h.Close)
	cfg.Name = "claude"
	if cfg.BaseURL == "" {
		cfg.BaseURL = ts.URL
	} else {
		cfg.BaseURL = ts.URL + cfg.BaseURL
	}
	p, err := anthropic.New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
}

func call(t *testing.T, op openai.Op, body string, maxTokens int64) *provider.Call {
	t.Helper()
	req, oe := openai.ParseRequest(op, []byte(body), 0)
	if oe != nil {
		t.Fatal(oe)
	}
	return &provider.Call{Req: req, Model: "claude-sonnet-4-5", MaxTokens: maxTokens}
}

// drain reads a stream to its end and returns the chunks and the error
// (nil for io.EOF).
func drain(t *testing.T, st provider.Stream) ([]gjson.Result, error) {
	t.Helper()
	defer st.Close()
	var out []gjson.Result
	for {
		ev, err := st.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if !json.Valid(ev.Data) {
			t.Fatalf("invalid chunk %s", ev.Data)
		}
		out = append(out, gjson.ParseBytes(append([]byte(nil), ev.Data...)))
	}
}

func TestDoNonStream(t *testing.T) {
	fake, p := setup(t, anthropic.Config{APIKey: "sk-ant-1", BaseURL: "/v1/"})
	resp, err := p.Do(context.Background(), call(t, openai.OpChat,
		`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there friend"}]}`, 321))
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(resp.Body)
	if !strings.HasPrefix(r.Get("id").Str, "chatcmpl-msg_") || r.Get("object").Str != "chat.completion" || r.Get("model").Str != "claude-sonnet-4-5" ||
		r.Get("choices.0.message.content").Str != "Hello from fakellm word3 word4" || r.Get("choices.0.finish_reason").Str != "stop" ||
		r.Get("usage.prompt_tokens").Int() != 8 || r.Get("usage.completion_tokens").Int() != 5 || r.Get("usage.total_tokens").Int() != 13 {
		t.Errorf("answer %s", resp.Body)
	}
	st := fake.Stats()
	if st.Paths[0] != "/v1/messages" || st.Headers[0].Get("X-Api-Key") != "sk-ant-1" || st.Headers[0].Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("request %v %v", st.Paths, st.Headers[0])
	}
	if got := string(st.Bodies[0]); got != `{"model":"claude-sonnet-4-5","max_tokens":321,"system":"be brief","messages":[{"role":"user","content":"hello there friend"}]}` {
		t.Errorf("upstream body %s", got)
	}
}

func TestDoStream(t *testing.T) {
	_, p := setup(t, anthropic.Config{APIKey: "k"})
	resp, err := p.Do(context.Background(), call(t, openai.OpChat,
		`{"model":"gpt-4o","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, 0))
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := drain(t, resp.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var content strings.Builder
	id := chunks[0].Get("id").Str
	for _, c := range chunks {
		if c.Get("id").Str != id || c.Get("object").Str != "chat.completion.chunk" || c.Get("model").Str != "claude-sonnet-4-5" || c.Get("created").Int() == 0 {
			t.Errorf("chunk head %s", c.Raw)
		}
		content.WriteString(c.Get("choices.0.delta.content").Str)
	}
	n := len(chunks)
	if content.String() != "Hello from fakellm word3" || chunks[0].Get("choices.0.delta.role").Str != "assistant" ||
		chunks[n-2].Get("choices.0.finish_reason").Str != "length" || chunks[n-1].Get("choices.#").Int() != 0 ||
		chunks[n-1].Get("usage.prompt_tokens").Int() != 4 || chunks[n-1].Get("usage.completion_tokens").Int() != 4 {
		t.Errorf("content %q, chunks %v", content.String(), chunks)
	}
}

func TestDoToolCall(t *testing.T) {
	fake, p := setup(t, anthropic.Config{APIKey: "k"})
	fake.Script("claude-sonnet-4-5", fakellm.Behavior{ToolCall: true, Chunks: 4})
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}}]}`
	resp, err := p.Do(context.Background(), call(t, openai.OpChat, body, 0))
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(resp.Body)
	if r.Get("choices.0.finish_reason").Str != "tool_calls" || r.Get("choices.0.message.content").Type != gjson.Null ||
		r.Get("choices.0.message.tool_calls.0.function.name").Str != "get_weather" ||
		r.Get("choices.0.message.tool_calls.0.function.arguments").Str != `{"city":"Paris","days":1}` ||
		!strings.HasPrefix(r.Get("choices.0.message.tool_calls.0.id").Str, "toolu_") {
		t.Errorf("answer %s", resp.Body)
	}

	resp, err = p.Do(context.Background(), call(t, openai.OpChat, strings.Replace(body, `"messages"`, `"stream":true,"messages"`, 1), 0))
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := drain(t, resp.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var args strings.Builder
	for _, c := range chunks {
		tc := c.Get("choices.0.delta.tool_calls.0")
		if tc.Exists() && tc.Get("index").Int() != 0 {
			t.Errorf("tool index %s", c.Raw)
		}
		args.WriteString(tc.Get("function.arguments").Str)
	}
	if args.String() != `{"city":"Paris","days":1}` || chunks[1].Get("choices.0.delta.tool_calls.0.function.name").Str != "get_weather" ||
		chunks[len(chunks)-2].Get("choices.0.finish_reason").Str != "tool_calls" {
		t.Errorf("arguments %q, chunks %v", args.String(), chunks)
	}
}

func TestDoCachedTokens(t *testing.T) {
	fake, p := setup(t, anthropic.Config{APIKey: "k"})
	body := `{"model":"gpt-4o","messages":[{"role":"system","content":[{"type":"text","text":"long shared context","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":"hi"}]}`
	resp, err := p.Do(context.Background(), call(t, openai.OpChat, body, 0))
	if err != nil {
		t.Fatal(err)
	}
	// fakellm: input_tokens 7 (3+1 for the message, 3 for system), cache
	// read 10; prompt_tokens counts both.
	u := openai.UsageOf(resp.Body)
	if u.InputTokens != 17 || u.CachedTokens != fakellm.AnthropicCacheReadTokens || u.OutputTokens != 5 {
		t.Errorf("usage %+v: %s", u, resp.Body)
	}
	if !strings.Contains(string(fake.Stats().Bodies[0]), `"system":[{"type":"text","text":"long shared context","cache_control":{"type":"ephemeral"}}]`) {
		t.Errorf("upstream body %s", fake.Stats().Bodies[0])
	}
	resp, err = p.Do(context.Background(), call(t, openai.OpChat, strings.Replace(body, `"messages"`, `"stream":true,"messages"`, 1), 0))
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := drain(t, resp.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if u := openai.ParseUsage(chunks[len(chunks)-1].Get("usage")); u.InputTokens != 17 || u.CachedTokens != 10 || u.OutputTokens != 5 {
		t.Errorf("stream usage %+v", u)
	}
}

func TestDoOverloaded(t *testing.T) {
	fake, p := setup(t, anthropic.Config{APIKey: "k"})
	fake.Enqueue(fakellm.Behavior{Status: 529, RetryAfter: "3"})
	_, err := p.Do(context.Background(), call(t, openai.OpChat, `{"model":"x","messages":[{"role":"user","content":"hi"}]}`, 0))
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("err %v", err)
	}
	if pe.Provider != "claude" || pe.Kind != provider.KindStatus || pe.Status != 529 || !pe.Retryable() || pe.RetryAfter != 3*time.Second ||
		pe.Message != "Overloaded" || pe.Code != "overloaded" {
		t.Errorf("error %+v", pe)
	}
	if ce := pe.ClientError(); ce.Status != 503 || ce.Code != "upstream_overloaded" {
		t.Errorf("client error %+v", ce)
	}
	// Credentials refused: not retryable, hidden from the client.
	_, p2 := setup(t, anthropic.Config{})
	_, err = p2.Do(context.Background(), call(t, openai.OpChat, `{"model":"x","messages":[{"role":"user","content":"hi"}]}`, 0))
	if !errors.As(err, &pe) || pe.Status != 401 || pe.Retryable() || pe.ClientError().Code != "upstream_auth_failed" {
		t.Errorf("no key: %v", err)
	}
}

func TestDoStreamCut(t *testing.T) {
	fake, p := setup(t, anthropic.Config{APIKey: "k"})
	fake.Script("claude-sonnet-4-5", fakellm.Behavior{FailAfter: 2})
	resp, err := p.Do(context.Background(), call(t, openai.OpChat, `{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 0))
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := drain(t, resp.Stream)
	var pe *provider.Error
	if !errors.As(err, &pe) || !pe.StreamStarted || !pe.Retryable() || (pe.Kind != provider.KindProtocol && pe.Kind != provider.KindConnect) {
		t.Fatalf("err %#v", err)
	}
	if len(chunks) != 3 || chunks[2].Get("choices.0.delta.content").Str != " from" {
		t.Errorf("chunks %v", chunks)
	}
}

func TestDoRejectsEarly(t *testing.T) {
	fake, p := setup(t, anthropic.Config{APIKey: "k"})
	_, err := p.Do(context.Background(), call(t, openai.OpEmbeddings, `{"model":"x","input":"hi"}`, 0))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Code != "unsupported_operation" || !strings.Contains(pe.Message, "embeddings") || pe.Retryable() {
		t.Errorf("embeddings: %v", err)
	}
	_, err = p.Do(context.Background(), call(t, openai.OpChat, `{"model":"x","n":3,"messages":[{"role":"user","content":"hi"}]}`, 0))
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Param != "n" || pe.Provider != "claude" {
		t.Errorf("n: %v", err)
	}
	if n := fake.Stats().Total; n != 0 {
		t.Errorf("%d upstream requests", n)
	}

	fake, p = setup(t, anthropic.Config{APIKey: "k", DropUnsupported: true})
	if _, err := p.Do(context.Background(), call(t, openai.OpChat, `{"model":"x","n":1,"seed":7,"temperature":2,"messages":[{"role":"user","content":"hi"}]}`, 0)); err != nil {
		t.Fatal(err)
	}
	if got := string(fake.Stats().Bodies[0]); got != `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":"hi"}],"temperature":1}` {
		t.Errorf("upstream body %s", got)
	}
}

func TestNew(t *testing.T) {
	h := provider.NewHTTP("a", provider.Timeouts{})
	defer h.Close()
	p, err := anthropic.New(anthropic.Config{Name: "a"}, h)
	if err != nil || p.URL() != "https://api.anthropic.com/v1/messages" || p.Name() != "a" {
		t.Errorf("%v %v", p, err)
	}
	for _, bad := range []string{"ftp://x", "https://user:pw@x", "/relative", "https://x?q=1"} {
		if _, err := anthropic.New(anthropic.Config{Name: "a", BaseURL: bad}, h); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
